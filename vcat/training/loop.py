"""A seeded, resumable training loop: one epoch at a time, a resume file after each.

What varies between epochs comes from the seed and the epoch alone (the data order, the
per-batch random draws, torch's own generator for dropout), and the resume file holds the
model, the optimiser and the epoch reached. So a run stopped at any point and started again
ends with the same weights, to the bit, as a run that was never stopped (on the same machine
and thread count). The per-epoch loss goes to dvclive (``metrics.json`` and the loss curve as
a DVC plot), from the first epoch also after a resume; every step's loss may go to a TSV file.

Several processes (:mod:`vcat.training.distributed`) run the same loop: the data order and
the per-step generators stay functions of the seed, epoch and step, never of the rank; the
loss each step records is the mean over the ranks; every rank reads the resume file, and only
rank 0 writes it, the curve and the step file. Torch's own generator (dropout) is seeded per
rank as well, so that the ranks do not drop the same units of their parts.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vcat.training.distributed import Ranks, single
from vcat.training.schedule import Schedule

#: One step: the batch and a generator seeded for it -> the loss to minimise.
StepLoss = Callable[[Any, torch.Generator], torch.Tensor]
#: The batches of one epoch, in an order drawn from the generator given.
EpochBatches = Callable[[torch.Generator], Iterable[Any]]


@dataclass(frozen=True)
class LoopConfig:
    schedule: Schedule
    lr: float
    min_lr: float = 0.0
    weight_decay: float = 0.05
    seed: int = 0


def seed_of(*keys: int | str) -> int:
    """A 63-bit seed mixed from ``keys`` (the run's seed, the epoch, the step, a purpose), the
    same in every process (unlike ``hash``, which salts strings per process)."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def seeded(*keys: int | str) -> torch.Generator:
    """A generator seeded by ``seed_of(*keys)``, independent of any other."""
    generator = torch.Generator()
    generator.manual_seed(seed_of(*keys))
    return generator


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, then rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def train(
    model: nn.Module,
    step_loss: StepLoss,
    epoch_batches: EpochBatches,
    steps_per_epoch: int,
    config: LoopConfig,
    resume_file: Path,
    live_dir: Path,
    fingerprint: str,
    on_epoch: Callable[[int, float], None] | None = None,
    ranks: Ranks | None = None,
    steps_file: Path | None = None,
) -> list[float]:
    """Train ``model`` for ``config.schedule.epochs``; the mean loss of every epoch.

    ``resume_file`` is read when it exists and was written for the same ``fingerprint``
    (the settings and inputs of the run; anything else starts afresh), and rewritten after
    every epoch. ``steps_file``: every step's loss, rewritten after every epoch
    (:func:`write_steps`). ``ranks``: this process's place in a distributed run (module doc;
    ``step_loss`` then calls the model's DistributedDataParallel wrapper); None is a single
    process on the model's device. Raises ``FloatingPointError`` when the loss stops being
    finite.
    """
    ranks = ranks or single(next(model.parameters()).device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )
    start, history, step_losses = 0, [], []
    state = _resume_state(resume_file, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = state["epoch"], list(state["history"])
        step_losses = [list(losses) for losses in state.get("steps", [[] for _ in history])]
    # the curve is written again from the resume file's history, so an epoch logged just
    # before a stop is neither lost nor repeated
    live = files_only_live(live_dir) if ranks.is_main else None

    def log(epoch: int, loss: float) -> None:
        if live is None:
            return
        live.step = epoch
        live.log_metric("loss", loss)
        live.log_metric("lr", config.schedule.learning_rate(epoch + 1, config.lr, config.min_lr))
        live.next_step()

    for epoch, loss in enumerate(history):
        log(epoch, loss)
    try:
        for epoch in range(start, config.schedule.epochs):
            rank_keys = ("rank", ranks.rank) if ranks.distributed else ()
            torch.manual_seed(seed_of(config.seed, epoch, "dropout", *rank_keys))
            model.train()
            total, count, losses = 0.0, 0, []
            for step, batch in enumerate(epoch_batches(seeded(config.seed, epoch))):
                rate = config.schedule.learning_rate(
                    epoch + step / steps_per_epoch, config.lr, config.min_lr
                )
                for group in optimizer.param_groups:
                    group["lr"] = rate
                loss = step_loss(batch, seeded(config.seed, epoch, step))
                value = ranks.mean(loss.detach())  # the same in every rank
                if not torch.isfinite(value):
                    raise FloatingPointError(f"the loss is {value.item()} at epoch {epoch + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(value.item())
                total, count = total + losses[-1], count + 1
            mean = total / max(count, 1)
            history.append(mean)
            step_losses.append(losses)
            log(epoch, mean)
            if ranks.is_main:
                save_atomic(
                    {
                        "fingerprint": fingerprint,
                        "epoch": epoch + 1,
                        "history": history,
                        "steps": step_losses,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                    },
                    resume_file,
                )
                if steps_file is not None:
                    write_steps(steps_file, step_losses)
            if on_epoch is not None:
                on_epoch(epoch + 1, mean)
    finally:
        if live is not None:
            live.end()
    if not all(math.isfinite(loss) for loss in history):
        raise FloatingPointError("a loss was not finite")
    return history


def write_steps(path: Path, step_losses: list[list[float]]) -> None:
    """``epoch``, ``step`` (both from 0) and ``loss`` of every step, as TSV written
    atomically; the losses exact (``repr``), so runs can be compared to the last bit."""
    from vcat.stage import write_text_atomic

    rows = ["epoch\tstep\tloss"]
    for epoch, losses in enumerate(step_losses):
        rows += [f"{epoch}\t{step}\t{loss!r}" for step, loss in enumerate(losses)]
    write_text_atomic(path, "\n".join(rows) + "\n")


def files_only_live(directory: Path) -> Any:
    """A dvclive ``Live`` that writes ``metrics.json`` and ``plots/`` in ``directory`` and does
    nothing else. Its git, DVC and Studio hooks are skipped: they fail in a repository without
    commits (scmrepo's "Empty git repo", e.g. a fresh clone's first ``dvc repro``), would run
    ``dvc init`` in a plain git repository, and may post to DVC Studio; the pipeline's
    ``dvc.yaml`` already declares the files as metrics and plots."""
    from dvclive import Live

    class FilesOnlyLive(Live):
        def _init_dvc(self) -> None:
            self._dvc_file = "dvc.yaml"

        def _init_studio(self) -> None:
            self._dvc_studio_config = {}
            self._studio_events_to_skip.update({"start", "data", "done"})

    return FilesOnlyLive(str(directory), resume=False, save_dvc_exp=False, dvcyaml=None)


def _resume_state(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a resume file that cannot be read is started over, not trusted
        return None
    return state if state.get("fingerprint") == fingerprint else None
