"""Stage ``train-overlap``: VOP's overlap head trained on the overlap ground truth.

FEATURES is VOP's feature dump (an HDF5 file, or a folder of them: one group per image with
``keypoints``, ``descriptors``, ``global_descriptor``, ``image_size``); OVERLAPS is the
``overlap`` stage's folder of ``<scene>.npz``. The scenes trained on are those of the catalog
entry's split ``split`` (or ``scenes``, when given); a scene of any split the entry marks
``held_out`` is refused, so the held-out scene is never trained on. Each epoch draws, per
scene, ``pairs_per_scene.positives`` pairs spread over the overlap bins and
``pairs_per_scene.negatives`` pairs without overlap (:mod:`vcat.training.overlap_pairs`), and
the head (:mod:`vcat.training.overlap_head`) learns from them with AdamW and a cosine decay
from ``lr`` to ``min_lr``. Training is :func:`vcat.training.loop.train`: seeded, resumable from
``.<OUTPUT>.resume.pt`` beside the output, the loss per epoch to dvclive (``--live DIR``).
OUTPUT receives the head's weights and the config that rebuilds it
(:func:`vcat.training.overlap_head.head_from_checkpoint`), written atomically.

Under ``torchrun`` or ``srun`` with several tasks (:mod:`vcat.training.distributed`) the
processes train one head with DistributedDataParallel: ``batch_size`` stays the global batch,
of which each of W ranks takes batch_size/W pairs (it must divide). An epoch's last batch may
be smaller; it is split as evenly as it goes and each rank's loss weighted by its share of
the pairs, so the gradient is still the batch's mean (a last batch of fewer pairs than ranks
is an error). The ranks draw their own dropout masks, so unlike pre-training the run does not
take the steps of one process unless ``dropout`` is 0. Rank 0 alone writes OUTPUT, the resume
file, ``--live``, ``--metrics`` and ``--steps`` (every step's loss, averaged over the ranks).
"""

from __future__ import annotations

import hashlib
import json
import math
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

NAME = "train-overlap"
default_conf: dict[str, Any] = {
    "entry": "demo-megadepth",  # the dataset entry whose splits name the scenes
    "split": "train",  # the split trained on
    "scenes": [],  # scenes to train on instead of the split's (held-out ones are refused)
    "embedding_dim": 256,
    "dropout": 0.5,
    "lr": 1.0e-4,
    "min_lr": 1.0e-6,
    "weight_decay": 0.01,
    "epochs": 30,
    "batch_size": 32,
    "overlap_bins": {"low": 0.1, "high": 0.7, "count": 3},
    "pairs_per_scene": {"positives": 200, "negatives": 200},
    "seed": 0,
    "workers": 0,  # DataLoader processes; 0 reads in the training process
    "device": "auto",  # auto, cpu or cuda
}

# params.yaml keys that only dvc.yaml reads: the heads to train (model name -> {})
pipeline_keys = ("runs",)


class TrainOverlapError(StageError):
    """The scenes, the overlap files or the features cannot be used as given."""


def main(
    conf: Mapping[str, Any] | None,
    features: Path,
    overlaps: Path,
    output: Path,
    live: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    steps: Path | None = None,
) -> Path:
    """Train the overlap head on the train scenes' pairs; its checkpoint goes to ``output``."""
    from vcat.training.distributed import DistributedError, process_group

    conf = settings(NAME, default_conf, conf)
    try:
        with process_group(resolve_device(str(conf.device))) as ranks:
            return _train(conf, features, overlaps, output, live, overwrite, metrics, steps, ranks)
    except DistributedError as exc:
        raise TrainOverlapError(str(exc)) from None


def _train(
    conf: Any,
    features: Path,
    overlaps: Path,
    output: Path,
    live: Path,
    overwrite: bool,
    metrics: Path | None,
    steps: Path | None,
    ranks: Ranks,
) -> Path:
    import torch

    from vcat.training.distributed import shuffled_batches
    from vcat.training.loop import LoopConfig, save_atomic, seed_of, train
    from vcat.training.overlap_data import PairDataset, epoch_pairs, read_scene
    from vcat.training.overlap_features import FeatureError, FeatureStore
    from vcat.training.overlap_head import (
        HeadConfig,
        OverlapHead,
        PairHead,
        head_checkpoint,
        overlap_loss,
    )
    from vcat.training.overlap_pairs import OverlapBins
    from vcat.training.schedule import Schedule

    say = stderr.print if ranks.is_main else _quiet
    names = training_scenes(conf)
    held_out_image = _held_out_images(conf)
    files = [overlaps / f"{scene}.npz" for scene in names]
    missing = [str(file) for file in files if not file.is_file()]
    if missing:
        raise TrainOverlapError(f"no overlap file {', '.join(missing)}; run the overlap stage")
    fingerprint = _fingerprint(conf, files, features)
    if output.is_file() and not overwrite and _made_from(output) == fingerprint:
        say(f"{output} is up to date")
        return output
    try:
        bins = OverlapBins(**{k: v for k, v in dict(conf.overlap_bins).items()})
        schedule = Schedule(int(conf.epochs), 0, int(conf.epochs))
    except ValueError as exc:
        raise TrainOverlapError(str(exc)) from None
    try:
        store = FeatureStore(features)
        scenes = [read_scene(file, store, held_out_image) for file in files]
        width = store.read(scenes[0].keys[0]).descriptors.shape[1]
        head_config = HeadConfig(width, int(conf.embedding_dim), float(conf.dropout))
    except (FeatureError, ValueError) as exc:
        raise TrainOverlapError(str(exc)) from None
    positives, negatives = (int(conf.pairs_per_scene[k]) for k in ("positives", "negatives"))
    seed, batch_size = int(conf.seed), int(conf.batch_size)

    def pairs_of(epoch: int) -> list[tuple[str, str, float]]:
        return epoch_pairs(scenes, bins, positives, negatives, seed, epoch)

    count = len(pairs_of(0))  # the same every epoch: each bin gives min(its pairs, its share)
    if count == 0:
        raise TrainOverlapError(
            f"scenes {', '.join(names)} give no pair in the overlap bins {bins} and none "
            "without overlap"
        )
    ranks.local_batch(batch_size, f"{NAME}.batch_size")
    if 0 < count % batch_size < ranks.world_size:
        raise TrainOverlapError(
            f"each epoch's last batch holds {count % batch_size} of the {count} pairs "
            f"({NAME}.batch_size {batch_size}), fewer than the {ranks.world_size} processes: "
            "change batch_size or pairs_per_scene"
        )
    device = ranks.device
    torch.manual_seed(seed_of(seed, "init"))  # the initial weights
    head = OverlapHead(head_config).to(device)
    pair_head = ranks.wrap(PairHead(head))

    def batches(generator: torch.Generator) -> Any:
        # the loop asks once per epoch, in order, from the epoch it resumes at
        epoch = next(epoch_counter)
        return shuffled_batches(
            PairDataset(store, pairs_of(epoch)),
            batch_size,
            generator,
            ranks,
            num_workers=int(conf.workers),
            pin_memory=device.type == "cuda",
        )

    def step(batch: Mapping[str, Any], generator: torch.Generator) -> torch.Tensor:
        del generator  # the head's only randomness is dropout, seeded per epoch by the loop
        on = {key: value.to(device) for key, value in batch.items()}
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            first, second = pair_head(on)
        loss = overlap_loss(first.float(), second.float(), on["overlap"])
        if not ranks.distributed:
            return loss
        # the mean over ranks of share-weighted means is the batch's mean, also when the
        # last batch does not split evenly
        pairs = torch.tensor(float(len(on["overlap"])), device=device)
        return loss * (pairs * ranks.world_size / ranks.total(pairs))

    resume = _resume_file(output)
    epoch_counter = iter(range(_resumed_epoch(resume, fingerprint), schedule.epochs))
    started = time.perf_counter()
    history = train(
        head,
        step,
        batches,
        math.ceil(count / batch_size),
        LoopConfig(schedule, float(conf.lr), float(conf.min_lr), float(conf.weight_decay), seed),
        resume,
        live,
        fingerprint,
        on_epoch=lambda epoch, loss: say(f"epoch {epoch}/{schedule.epochs}: loss {loss:.4f}"),
        ranks=ranks,
        steps_file=steps,
    )
    store.close()
    if not ranks.is_main:
        return output
    save_atomic(head_checkpoint(head, made_from=fingerprint, scenes=list(names)), output)
    resume.unlink(missing_ok=True)
    if metrics is not None:
        write_json(
            metrics,
            {
                "scenes": list(names),
                "pairs_per_epoch": count,
                "epochs": schedule.epochs,
                "loss_first_epoch": round(history[0], 6),
                "loss_last_epoch": round(history[-1], 6),
                "loss_fell": history[-1] < history[0],
            },
        )
    processes = f" by {ranks.world_size} processes" if ranks.distributed else ""
    say(
        f"{output}: {schedule.epochs} epochs of {count} pairs from {', '.join(names)}"
        f"{processes} in {time.perf_counter() - started:.0f} s, loss {history[0]:.4f} -> "
        f"{history[-1]:.4f}"
    )
    return output


def _quiet(*_: object) -> None:
    """What a rank other than 0 prints: nothing."""


def training_scenes(conf: Any) -> list[str]:
    """The scenes to train on: ``conf.scenes`` or the split ``conf.split`` of ``conf.entry``;
    TrainOverlapError when one of them is in a held-out split of the entry."""
    from vcat.catalog.splits import SplitError, entry_splits

    try:
        splits = entry_splits(str(conf.entry))
        if list(conf.scenes):
            scenes = sorted({str(scene) for scene in conf.scenes})
        else:
            if splits.split(str(conf.split)).held_out:
                raise SplitError(f"split {conf.split!r} of {conf.entry} is held out")
            scenes = splits.scenes(str(conf.split))
    except SplitError as exc:
        raise TrainOverlapError(str(exc)) from None
    held = splits.held_out_scenes()
    leaked = [f"{scene} (split {held[scene]})" for scene in scenes if scene in held]
    if leaked:
        raise TrainOverlapError(
            f"{', '.join(leaked)} of {conf.entry} is held out and must not be trained on; "
            "train on the entry's training split"
        )
    return scenes


def _held_out_images(conf: Any) -> Any:
    """Whether an image path (as the overlap files name it) is one of the entry's held-out
    ``images``; None when no held-out split lists images."""
    from vcat.catalog.splits import entry_splits
    from vcat.data.splits import SplitFilter

    images = entry_splits(str(conf.entry)).held_out_images()
    return SplitFilter.of("held-out", images=images).holds if images else None


def _digest(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(conf: Any, overlaps: Sequence[Path], features: Path) -> str:
    """What the weights depend on: the settings and the bytes of the overlap and feature files."""
    from omegaconf import OmegaConf

    from vcat.training.overlap_features import FeatureError, feature_files

    plain = OmegaConf.to_container(conf, resolve=True)
    assert isinstance(plain, dict)
    try:
        feature_list = feature_files(features)
    except FeatureError as exc:
        raise TrainOverlapError(str(exc)) from None
    text = json.dumps(
        {
            "conf": {k: v for k, v in plain.items() if k not in ("workers", "device")},
            "overlaps": {path.stem: _digest(path) for path in overlaps},
            "features": [_digest(path) for path in feature_list],
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _resume_file(output: Path) -> Path:
    return output.with_name(f".{output.name}.resume.pt")


def _resumed_epoch(resume: Path, fingerprint: str) -> int:
    """The epoch the loop will start at: the resume file's, when it is of this run."""
    import torch

    if not resume.is_file():
        return 0
    try:
        state = torch.load(resume, map_location="cpu", weights_only=True)
    except Exception:  # the loop starts over from an unreadable resume file too
        return 0
    return int(state["epoch"]) if state.get("fingerprint") == fingerprint else 0


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
OverlapsArgument = folder_argument("The overlap stage's folder of <scene>.npz.", metavar="OVERLAPS")


def command(
    features: Annotated[
        Path, typer.Argument(help="VOP features: an HDF5 file or a folder of them.", exists=True)
    ],
    overlaps: OverlapsArgument,
    output: Annotated[Path, typer.Argument(help="The checkpoint file to write (the head).")],
    live: Annotated[
        Path, typer.Option("--live", help="dvclive folder: the loss per epoch, its plot.")
    ],
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    steps: StepsOption = None,
    params: ParamsOption = None,
) -> None:
    """Train VOP's overlap head on the training scenes' overlap ground truth."""
    run_stage(
        NAME,
        default_conf,
        params,
        lambda conf: main(conf, features, overlaps, output, live, overwrite, metrics, steps),
        pipeline_keys,
        input_errors=(TrainOverlapError,),
    )
