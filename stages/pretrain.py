"""Stage ``pretrain``: CroCo's cross-view completion on crop pairs, giving a backbone checkpoint.

The pairs are a shard folder of the ``croco-crops`` stage (samples with ``1.jpg`` and
``2.jpg``), read through :mod:`vcat.data`. The network is the model entry MODEL's timm
architecture (a ViT without class token); :mod:`vcat.training.crossview` adds the decoder and
the loss. Every pair is resized to ``imsize`` and normalised with the entry's mean and std.
Training is :func:`vcat.training.loop.train`: seeded, and resumable from the file
``<OUTPUT>.resume.pt`` that it rewrites after every epoch (a stopped run, or a ``dvc repro``
stopped half-way, continues there and ends with the same weights). OUTPUT receives only the
encoder's weights, the backbone that the model entry's ``produced_by.checkpoint`` names;
dvclive writes the loss per epoch to ``--live DIR`` (``metrics.json`` and ``plots/``).

``schedule`` gives the epochs, warm-up and cosine length as published; with
``equivalent_to_published`` naming catalog subsets (``entry:subset``), their counts as
published and as released stretch it to the same number of iterations
(:func:`vcat.training.schedule.iteration_equivalent`). ``device: auto`` takes CUDA when torch
sees it, where the steps run under bf16 autocast.

Under ``torchrun`` or ``srun`` with several tasks (:mod:`vcat.training.distributed`) the
processes train one model with DistributedDataParallel: ``batch_size`` stays the global batch,
of which each of W ranks takes batch_size/W pairs (it must divide) and the matching rows of
the step's masks, so the run takes the steps one process would, up to the rounding of the
gradient sums; rank 0 alone writes OUTPUT, the resume file, ``--live``, ``--metrics`` and
``--steps`` (every step's loss, averaged over the ranks).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vcat.console import stderr
from vcat.devices import resolve_device
from vcat.stage import MetricsOption, OverwriteOption, ParamsOption, StageError, write_json
from vcat.stage_cli import folder_argument, run_stage, settings

if TYPE_CHECKING:
    from vcat.training.distributed import Ranks

NAME = "pretrain"
default_conf: dict[str, Any] = {
    "imsize": 64,  # side of the square pairs fed to the network (the crops are 256)
    "batch_size": 16,
    "schedule": {"epochs": 12, "warmup_epochs": 2, "cosine_epochs": 12},
    "equivalent_to_published": [],  # "entry:subset" whose released counts stretch the schedule
    "lr": 1.0e-3,
    "min_lr": 1.0e-5,
    "weight_decay": 0.05,
    "mask_ratio": 0.9,  # CroCo's
    "decoder": {"dim": 128, "depth": 2, "heads": 4},
    "seed": 0,
    "workers": 0,  # DataLoader processes; 0 reads in the training process
    "device": "auto",  # auto, cpu or cuda
}
pipeline_keys = ("runs",)


class PretrainError(StageError):
    """The model entry or the pairs cannot be used as given."""


def main(
    conf: Mapping[str, Any] | None,
    pairs: Path,
    model_name: str,
    output: Path,
    live: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    steps: Path | None = None,
) -> Path:
    """Pre-train MODEL's encoder on the pairs of ``pairs``; its weights go to ``output``."""
    from vcat.training.distributed import DistributedError, process_group

    conf = settings(NAME, default_conf, conf)
    try:
        with process_group(resolve_device(str(conf.device))) as ranks:
            return _pretrain(
                conf, pairs, model_name, output, live, overwrite, metrics, steps, ranks
            )
    except DistributedError as exc:
        raise PretrainError(str(exc)) from None


def _pretrain(
    conf: Any,
    pairs: Path,
    model_name: str,
    output: Path,
    live: Path,
    overwrite: bool,
    metrics: Path | None,
    steps: Path | None,
    ranks: Ranks,
) -> Path:
    import torch

    from vcat.data.shards import ShardDataset
    from vcat.training.crossview import CrossViewCompletion, DecoderConfig
    from vcat.training.distributed import shuffled_batches
    from vcat.training.loop import LoopConfig, save_atomic, seed_of, train

    say = stderr.print if ranks.is_main else _quiet
    torch.manual_seed(seed_of(int(conf.seed), "init"))  # the initial weights
    entry, encoder = _encoder(model_name)
    schedule = _schedule(conf)
    fingerprint = _fingerprint(conf, pairs, entry.name)
    if output.is_file() and not overwrite and _made_from(output) == fingerprint:
        say(f"{output} is up to date")
        return output
    device = ranks.device
    batch_size = int(conf.batch_size)
    ranks.local_batch(batch_size, f"{NAME}.batch_size")
    dataset = ShardDataset(pairs, transform=_PairTransform(entry, int(conf.imsize)))
    if len(dataset) < batch_size:
        raise PretrainError(f"{pairs} holds {len(dataset)} pairs, fewer than one batch")
    model = CrossViewCompletion(
        encoder, DecoderConfig(**dict(conf.decoder)), mask_ratio=float(conf.mask_ratio)
    ).to(device)
    net = ranks.wrap(model)
    rows = ranks.part(batch_size)

    def batches(generator: torch.Generator) -> Any:
        return shuffled_batches(
            dataset,
            batch_size,
            generator,
            ranks,
            drop_last=True,
            num_workers=int(conf.workers),
            pin_memory=device.type == "cuda",
        )

    def step(batch: Any, generator: torch.Generator) -> torch.Tensor:
        first, second = batch
        # the masks of the whole global batch, drawn as one process draws them; ours are its rows
        masks = model.random_masks(batch_size, generator)[rows].to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            return net(first.to(device), second.to(device), masks)

    started = time.perf_counter()
    history = train(
        model,
        step,
        batches,
        len(dataset) // batch_size,
        LoopConfig(
            schedule, float(conf.lr), float(conf.min_lr), float(conf.weight_decay), int(conf.seed)
        ),
        _resume_file(output),
        live,
        fingerprint,
        on_epoch=lambda epoch, loss: say(f"epoch {epoch}/{schedule.epochs}: loss {loss:.4f}"),
        ranks=ranks,
        steps_file=steps,
    )
    if not ranks.is_main:
        return output
    weights = {k: v.detach().to("cpu") for k, v in model.encoder.state_dict().items()}
    save_atomic({"model": weights, "made_from": fingerprint}, output)
    _resume_file(output).unlink(missing_ok=True)
    if metrics is not None:
        write_json(
            metrics,
            {
                "pairs": len(dataset),
                "epochs": schedule.epochs,
                "loss_first_epoch": round(history[0], 6),
                "loss_last_epoch": round(history[-1], 6),
                "loss_fell": history[-1] < history[0],
            },
        )
    processes = f" by {ranks.world_size} processes" if ranks.distributed else ""
    say(
        f"{output}: {schedule.epochs} epochs over {len(dataset)} pairs{processes} in "
        f"{time.perf_counter() - started:.0f} s, loss {history[0]:.4f} -> {history[-1]:.4f}"
    )
    return output


def _quiet(*_: object) -> None:
    """What a rank other than 0 prints: nothing."""


class _PairTransform:
    """A sample's two JPEGs -> two normalised ``3 x imsize x imsize`` tensors (picklable, so
    DataLoader workers receive it)."""

    def __init__(self, entry: Any, imsize: int) -> None:
        from vcat.models.factory import input_config

        config = input_config(entry)
        self.imsize = imsize
        self.mean, self.std = config.mean, config.std

    def __call__(self, item: Mapping[str, Any]) -> tuple[Any, Any]:
        return self._image(item["1.jpg"]), self._image(item["2.jpg"])

    def _image(self, data: bytes) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB").resize((self.imsize, self.imsize), Image.BICUBIC)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        return (pixels - mean) / torch.tensor(self.std).view(3, 1, 1)


def _encoder(model_name: str) -> tuple[Any, Any]:
    from vcat.catalog.loader import load_around
    from vcat.models.factory import ModelError, build_model
    from vcat.project import default_catalog_dir

    catalog = load_around(default_catalog_dir(), model_name)
    try:
        entry = catalog.get(model_name)
    except KeyError as exc:
        raise PretrainError(str(exc.args[0])) from None
    try:
        encoder = build_model(entry, load_weights=False).train()
    except ModelError as exc:
        raise PretrainError(str(exc)) from None
    if getattr(encoder, "num_prefix_tokens", None) != 0:
        raise PretrainError(
            f"{model_name}: cross-view completion needs a timm ViT without class token "
            "(architecture.kwargs: class_token: false, global_pool: avg)"
        )
    return entry, encoder


def _schedule(conf: Any) -> Any:
    from vcat.training.schedule import Schedule, iteration_equivalent

    schedule = Schedule(**{k: int(v) for k, v in dict(conf.schedule).items()})
    refs: Sequence[str] = list(conf.equivalent_to_published)
    if not refs:
        return schedule
    published, released = _counts(refs)
    return iteration_equivalent(schedule, published, released)


def _counts(refs: Sequence[str]) -> tuple[int, int]:
    """The summed published and released counts of the catalog subsets ``refs``."""
    from vcat.catalog.loader import load_around
    from vcat.catalog.schema import DatasetEntry
    from vcat.project import default_catalog_dir

    published = released = 0
    for ref in refs:
        name, _, subset_name = ref.partition(":")
        try:
            entry = load_around(default_catalog_dir(), name).get(name)
        except KeyError as exc:
            raise PretrainError(f"equivalent_to_published: {exc.args[0]}") from None
        subsets = entry.spec.subsets if isinstance(entry.spec, DatasetEntry) else []
        subset = next((s for s in subsets if s.name == subset_name), None)
        if subset is None or subset.count is None or subset.count.published is None:
            raise PretrainError(
                f"equivalent_to_published names {ref!r}: it must be 'entry:subset' of a "
                "dataset subset whose count gives 'published' (and 'released')"
            )
        published += subset.count.published
        released += (
            subset.count.released if subset.count.released is not None else subset.count.published
        )
    return published, released


def _fingerprint(conf: Any, pairs: Path, model_name: str) -> str:
    """What the weights depend on: the settings, the model and the pairs' index."""
    index = (pairs / "index.json").read_bytes() if (pairs / "index.json").is_file() else b""
    text = json.dumps(
        {"conf": _plain(conf), "model": model_name, "pairs": hashlib.md5(index).hexdigest()},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(conf: Any) -> Any:
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(conf, resolve=True)
    assert isinstance(plain, dict)
    return {k: v for k, v in plain.items() if k not in ("workers", "device")}


def _resume_file(output: Path) -> Path:
    return output.with_name(f".{output.name}.resume.pt")


def _made_from(output: Path) -> str | None:
    import torch

    try:
        return torch.load(output, map_location="cpu", weights_only=True).get("made_from")
    except Exception:  # not a checkpoint of ours: make it again
        return None


StepsOption = Annotated[
    Path | None,
    typer.Option("--steps", help="Also write every step's loss (over all processes) as TSV."),
]
PairsArgument = folder_argument("The crop pairs: a croco-crops shard folder.", metavar="PAIRS")


def command(
    pairs: PairsArgument,
    model: Annotated[str, typer.Argument(help="The model entry whose encoder is trained.")],
    output: Annotated[Path, typer.Argument(help="The checkpoint file to write (the encoder).")],
    live: Annotated[
        Path, typer.Option("--live", help="dvclive folder: the loss per epoch, its plot.")
    ],
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    steps: StepsOption = None,
    params: ParamsOption = None,
) -> None:
    """Pre-train a model entry's ViT with CroCo's cross-view completion on crop pairs."""
    run_stage(
        NAME,
        default_conf,
        params,
        lambda conf: main(conf, pairs, model, output, live, overwrite, metrics, steps),
        pipeline_keys,
        input_errors=(PretrainError,),
    )
