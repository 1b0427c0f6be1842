"""Generating a copy-detection training set: classes of an original and its augmented copies.

Class ``cls`` is the ``cls``-th selected source image. It becomes ``K + 1`` WebDataset samples
(one per image, so that unpacking gives the guide's flat folder of ``<cls>_<j>.jpg``):

``<cls>_0``
    the source resized to ``size`` x ``size`` (bicubic, as the guide's ``image.resize``);
``<cls>_<j>``, j = 1..K
    an augmented copy: k transforms (k uniform in ``k_min..k_max``) drawn without repetition,
    in a random order, from the pool (:mod:`vcat.copydetect.pool`), then a bilinear resize to
    ``size`` x ``size``.

Each sample holds ``jpg`` (RGB, or greyscale with ``grayscale``, at JPEG ``quality``) and
``json``: class, copy, reference key, source name, the transforms applied, and the attempts
that failed before. Every random choice of copy j of class cls comes from the generator keyed
(seed, cls, j, attempt) (:mod:`vcat.copydetect.seeds`); other images for blends, overlays and
stacks are drawn from the ``others`` list by that generator. A transform that raises ends the
attempt: the copy is made again from attempt + 1's generator, and the failed attempt is
recorded in the sample. A copy whose ``max_attempts`` attempts all fail, or a source that
cannot be read, fails its whole class: it is written to ``failures.tsv`` (class, source,
failure, reason) instead, and the run stops with an error once more classes failed than
allowed.

The folder is resumable like any shard folder: a stopped run (a kill, Ctrl-C) keeps its
sealed shards and its failure lines, and the next run goes on from the first class not
wholly sealed; since every image depends only on its key, the result is byte-identical to an
uninterrupted run. Finished, the folder also holds ``ground_truth.csv`` (DISC21's
``query_id,reference_id``: every copy is a query of its ``<cls>_0``) and ``retries.tsv``
(image, attempt, transform, error), both derived from the samples' records.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from vcat.copydetect import groundtruth
from vcat.copydetect.names import GUIDE_POOL, USES_OTHER_IMAGES
from vcat.copydetect.overlays import Assets
from vcat.copydetect.seeds import copy_rng
from vcat.executors.listing import listed_files
from vcat.processes import ordered_map
from vcat.regular import open_regular
from vcat.stage_cli import StageFailed

RUN_NAME = ".run.json"
FAILURES_NAME = "failures.tsv"
RETRIES_NAME = "retries.tsv"
GROUND_TRUTH_NAME = "ground_truth.csv"
FAILURES_HEADER = "class\tsource\tfailure\treason\n"
RETRIES_HEADER = "image\tattempt\ttransform\terror\n"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class GenerateError(ValueError):
    """Settings or inputs that cannot make a training set; the message says what to fix."""


class TooManyFailed(StageFailed):
    """More classes failed than allowed."""


class Source(Protocol):
    """A source image: a name for the records, and its pixels on demand."""

    @property
    def name(self) -> str: ...

    def load(self, draft: int | None = None) -> Image.Image:
        """The image in RGB; ``draft``: JPEGs may be decoded at a reduced scale that keeps
        both sides at least ``draft``."""
        ...

    def signature(self) -> str:
        """A line that changes when the source does (its name and size)."""
        ...


@dataclass(frozen=True)
class ImageFile:
    """An image file, named by its path relative to the folder it was listed from."""

    name: str
    path: Path

    def load(self, draft: int | None = None) -> Image.Image:
        with open_regular(self.path) as stream, Image.open(stream) as image:
            if draft is not None:
                image.draft("RGB", (draft, draft))
            return image.convert("RGB")

    def signature(self) -> str:
        return f"{self.name}\t{self.path.stat().st_size}"


def list_images(folder: Path) -> list[ImageFile]:
    """Every image file under ``folder`` (by suffix), sorted by relative path; GenerateError
    when ``folder`` is not a folder."""
    if not folder.is_dir():
        raise GenerateError(f"{folder}: not a folder of images")
    listed = listed_files(folder)  # a shard that fetched only its block's images
    files = []
    for path in folder.rglob("*") if listed is None else listed:
        # a FIFO or device named like an image is listed, then refused (never waited on) when
        # it is opened, so it is counted as a failure instead of being skipped in silence
        if path.suffix.lower() in IMAGE_SUFFIXES and (listed is not None or not path.is_dir()):
            files.append(ImageFile(path.relative_to(folder).as_posix(), path))
    return sorted(files, key=lambda image: image.name)


def every(items: Sequence[Any], step: int, offset: int) -> list[Any]:
    """Items ``offset``, ``offset + step``, ... (the guide's ``i % 10 == 0`` is step 10,
    offset 0; its blend images, the names ending in 9, are step 10, offset 9)."""
    if step < 1 or not 0 <= offset < step:
        raise GenerateError(f"a selection needs step >= 1 and 0 <= offset < step: {step}, {offset}")
    return list(items[offset::step])


@dataclass(frozen=True)
class Recipe:
    """How each class is made (everything that changes the bytes of a sample)."""

    seed: int = 0
    copies: int = 19
    k_min: int = 2
    k_max: int = 7
    transforms: tuple[str, ...] = ()
    size: int = 256
    quality: int = 100
    grayscale: bool = False
    max_attempts: int = 10

    def check(self) -> None:
        if self.copies < 0:
            raise GenerateError(f"copies must be 0 or more, not {self.copies}")
        if self.size < 8:
            raise GenerateError(f"size must be at least 8 pixels, not {self.size}")
        if not 0 <= self.quality <= 100:
            raise GenerateError(f"quality must be in 0..100, not {self.quality}")
        if self.max_attempts < 1:
            raise GenerateError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.seed < 0:
            raise GenerateError(f"seed must be 0 or more, not {self.seed}")
        try:
            if set(self.transforms) <= set(GUIDE_POOL):  # no need to load the libraries
                repeated = sorted({n for n in self.transforms if self.transforms.count(n) > 1})
                if repeated:
                    raise ValueError(f"transforms named more than once: {', '.join(repeated)}")
            else:
                from vcat.copydetect import pool

                pool.check_names(self.transforms)
        except (KeyError, ValueError) as exc:
            raise GenerateError(f"transforms: {exc}") from None
        if self.copies and not 1 <= self.k_min <= self.k_max <= len(self.transforms):
            raise GenerateError(
                f"k_min and k_max must satisfy 1 <= k_min <= k_max <= {len(self.transforms)} "
                f"(the number of transforms): {self.k_min}, {self.k_max}"
            )

    def keys(self, cls: int) -> list[str]:
        return [f"{cls}_{copy}" for copy in range(self.copies + 1)]


@dataclass(frozen=True)
class Job:
    """What every worker needs: the sources, the other images, the assets and the recipe."""

    sources: Sequence[Source]
    others: Sequence[Source]
    recipe: Recipe
    assets: Assets = field(default_factory=Assets)

    def check(self) -> None:
        self.recipe.check()
        mixing = sorted(USES_OTHER_IMAGES.intersection(self.recipe.transforms))
        if self.recipe.copies and self.sources and mixing and not self.others:
            raise GenerateError(
                f"the transforms {', '.join(mixing)} need other images, and the selection of "
                "other images is empty: select some, or take these transforms out of the pool"
            )

    def signature(self, classes: range) -> dict[str, Any]:
        """What the samples of ``classes`` are made from; a folder made from another is
        started afresh."""

        def digest(lines: Iterator[str]) -> str:
            md5 = hashlib.md5()
            for line in lines:
                md5.update(line.encode("utf-8", "surrogateescape") + b"\n")
            return md5.hexdigest()

        return {
            "format": "vcat.copydetect/1",
            "classes": [classes.start, classes.stop],
            "sources": digest(self.sources[cls].signature() for cls in classes),
            "others": digest(other.signature() for other in self.others),
            "fonts": digest(f"{p.name}\t{p.stat().st_size}" for p in self.assets.fonts),
            "emoji": digest(f"{p.name}\t{p.stat().st_size}" for p in self.assets.emoji),
            "recipe": {**self.recipe.__dict__, "transforms": list(self.recipe.transforms)},
        }


@dataclass
class ClassOutcome:
    """The samples of one class, or why it failed."""

    cls: int
    samples: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)
    failure: tuple[str, str] | None = None  # (failure class, reason)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _encode(image: np.ndarray | Image.Image, recipe: Recipe) -> bytes:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    picture = picture.convert("L" if recipe.grayscale else "RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=recipe.quality)
    return buffer.getvalue()


def _record(cls: int, copy: int, source: str, **extra: Any) -> bytes:
    values = {"class": cls, "copy": copy, "reference": f"{cls}_0", "source": source, **extra}
    return json.dumps(values, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _context(job: Job) -> Any:
    from vcat.copydetect.pool import Context

    def other(rng: np.random.Generator) -> np.ndarray:
        if not job.others:
            raise GenerateError("no other images to draw from")
        chosen = job.others[int(rng.integers(len(job.others)))]
        return np.asarray(chosen.load(draft=job.recipe.size))

    return Context(job.recipe.size, other, job.assets)


def make_copy(
    job: Job, original: np.ndarray, cls: int, copy: int, context: Any
) -> tuple[bytes, int, list[str], list[list[Any]]] | list[list[Any]]:
    """Copy ``copy`` of class ``cls``: (JPEG, attempt, transforms, failed attempts), or only
    the failed attempts when every attempt failed."""
    from vcat.copydetect.pool import apply

    recipe = job.recipe
    retries: list[list[Any]] = []
    for attempt in range(recipe.max_attempts):
        rng = copy_rng(recipe.seed, cls, copy, attempt)
        count = int(rng.integers(recipe.k_min, recipe.k_max + 1))
        names = [
            recipe.transforms[int(i)] for i in rng.choice(len(recipe.transforms), count, False)
        ]
        image = original
        current = names[0]
        try:
            for current in names:
                image = apply(current, image, rng, context)
            picture = Image.fromarray(image).resize(
                (recipe.size, recipe.size), Image.Resampling.BILINEAR
            )
            return _encode(picture, recipe), attempt, names, retries
        except Exception as error:  # any transform may fail; the copy is made again
            retries.append([attempt, current, _one_line(error)])
    return retries


def make_class(job: Job, cls: int, context: Any | None = None) -> ClassOutcome:
    """The original and the copies of class ``cls``, or the failure of the class."""
    recipe = job.recipe
    source = job.sources[cls]
    context = context if context is not None else _context(job)
    try:
        picture = source.load()
    except Exception as error:  # a file that does not decode, whatever the decoder raises
        return ClassOutcome(cls, failure=("unreadable", _one_line(error)))
    original = np.asarray(picture)
    original.setflags(write=False)  # every copy starts from the same pixels
    resized = picture.resize((recipe.size, recipe.size), Image.Resampling.BICUBIC)
    record = _record(cls, 0, source.name, attempt=0, transforms=[], retries=[])
    outcome = ClassOutcome(cls, [(f"{cls}_0", {"jpg": _encode(resized, recipe), "json": record})])
    for copy in range(1, recipe.copies + 1):
        made = make_copy(job, original, cls, copy, context)
        if isinstance(made, list):
            attempt, transform, error = made[-1]
            reason = (
                f"copy {copy}: all {recipe.max_attempts} attempts failed; the last in "
                f"{transform}: {error}"
            )
            return ClassOutcome(cls, failure=("attempts", reason))
        jpg, attempt, names, retries = made
        record = _record(cls, copy, source.name, attempt=attempt, transforms=names, retries=retries)
        outcome.samples.append((f"{cls}_{copy}", {"jpg": jpg, "json": record}))
    return outcome


# --- running many classes -----------------------------------------------------------------

_WORKER_JOB: Job | None = None
_WORKER_CONTEXT: Any = None


def _work(cls: int) -> ClassOutcome:
    global _WORKER_CONTEXT
    assert _WORKER_JOB is not None
    if _WORKER_CONTEXT is None:
        _WORKER_CONTEXT = _context(_WORKER_JOB)
    return make_class(_WORKER_JOB, cls, _WORKER_CONTEXT)


def outcomes(job: Job, classes: Sequence[int], jobs: int) -> Iterator[ClassOutcome]:
    """``make_class`` of each class, in order, on ``jobs`` processes (forked, so the job is
    shared without pickling; 1: in this process). A worker that dies raises ``WorkerDied``."""
    global _WORKER_JOB, _WORKER_CONTEXT
    if not classes:
        return
    if jobs <= 1 or len(classes) <= 1:
        context = _context(job)
        for cls in classes:
            yield make_class(job, cls, context)
        return
    import cv2

    # one process per core already; and OpenCV's thread pool does not survive a fork (a child
    # that touches it waits forever), so it is stopped before forking
    cv2.setNumThreads(1)
    _WORKER_JOB, _WORKER_CONTEXT = job, None
    try:
        advice = "lower jobs; what was sealed is kept, run the stage again to resume"
        yield from ordered_map(_work, classes, jobs, start_method="fork", advice=advice)
    finally:
        _WORKER_JOB = None


# --- the output folder ------------------------------------------------------------------


def prepare_folder(folder: Path, signature: dict[str, Any], overwrite: bool) -> None:
    """Empty ``folder`` unless it was made from the same ``signature``; then record it."""
    run_file = folder / RUN_NAME
    try:
        same = json.loads(run_file.read_text(encoding="utf-8")) == signature
    except (FileNotFoundError, ValueError):
        same = False
    if overwrite or not same:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(run_file, json.dumps(signature, sort_keys=True) + "\n")


def write_text(path: Path, text: str) -> None:
    """``text`` at ``path`` through a temporary name; left alone when it already holds it."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def recorded_failures(folder: Path) -> dict[int, str]:
    """Classes listed in ``failures.tsv`` by an earlier run, with their line."""
    path = folder / FAILURES_NAME
    if not path.is_file():
        return {}
    records = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) == 4 and fields[0].isdigit():  # a line cut by a kill is made again
            records[int(fields[0])] = line
    return records


class FailureLog:
    """``failures.tsv``: the header, then a line per failed class, flushed as it is added."""

    def __init__(self, path: Path, kept: list[str]) -> None:
        self.path = path
        self.count = len(kept)
        write_text(path, FAILURES_HEADER + "".join(f"{line}\n" for line in kept))
        self._stream = path.open("a", encoding="utf-8")

    def add(self, cls: int, source: str, failure: tuple[str, str]) -> None:
        kind, reason = failure
        safe_source = " ".join(source.split())
        self._stream.write(f"{cls}\t{safe_source}\t{kind}\t{' '.join(reason.split())}\n")
        self._stream.flush()
        self.count += 1

    def __enter__(self) -> FailureLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stream.close()


def resume_point(classes: Sequence[int], sealed: int, failed: set[int], per_class: int) -> int:
    """The position in ``classes`` of the first class not wholly in the ``sealed`` samples an
    earlier run left (failed classes have none)."""
    done = 0
    for position, cls in enumerate(classes):
        if cls in failed:
            continue
        if done + per_class > sealed:
            return position
        done += per_class
    return len(classes)


def _never() -> dict[str, bytes]:
    raise AssertionError("a sample of a sealed shard was asked for again")


@dataclass(frozen=True)
class Limits:
    max_count: int
    max_bytes: int


def fill(
    job: Job,
    folder: Path,
    classes: range,
    *,
    jobs: int,
    limits: Limits,
    allowed_failures: int,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Make the samples of ``classes`` into the shard folder ``folder`` (resuming it);
    returns the number of failed classes. TooManyFailed past ``allowed_failures``."""
    from vcat.shards import ShardWriter

    job.check()
    prepare_folder(folder, job.signature(classes), overwrite)
    recorded = recorded_failures(folder)
    per_class = job.recipe.copies + 1
    order = list(classes)
    with ShardWriter(folder, max_count=limits.max_count, max_bytes=limits.max_bytes) as writer:
        start = resume_point(order, writer.resumed_samples, set(recorded), per_class)
        kept = [recorded[cls] for cls in order[:start] if cls in recorded]
        for cls in order[:start]:
            if cls not in recorded:
                for key in job.recipe.keys(cls):
                    writer.add(key, _never)
        with FailureLog(folder / FAILURES_NAME, kept) as log:
            if progress is not None:
                progress(start, log.count)
            for outcome in outcomes(job, order[start:], jobs):
                if outcome.failure is not None:
                    log.add(outcome.cls, job.sources[outcome.cls].name, outcome.failure)
                    if log.count > allowed_failures:
                        raise TooManyFailed(
                            f"{log.count} classes failed, more than the {allowed_failures} "
                            f"allowed; see {log.path}. What was made is kept: fix the sources "
                            "(or raise max_failed_fraction) and run again"
                        )
                else:
                    for key, sample in outcome.samples:
                        writer.add(key, sample)
                if progress is not None:
                    progress(1, log.count)
        return log.count


# --- what a finished folder holds ---------------------------------------------------------


@dataclass
class Summary:
    """Counts over a finished folder's samples, for the metrics."""

    classes: int = 0
    images: int = 0
    copies: int = 0
    retries: int = 0
    retried_copies: int = 0
    failed_classes: int = 0
    shards: int = 0
    transforms: Counter[str] = field(default_factory=Counter)

    def metrics(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "images": self.images,
            "originals": self.images - self.copies,
            "copies": self.copies,
            "retries": self.retries,
            "retried_copies": self.retried_copies,
            "failed_classes": self.failed_classes,
            "shards": self.shards,
            "transforms": dict(sorted(self.transforms.items())),
        }


def finish(folder: Path) -> Summary:
    """``ground_truth.csv`` and ``retries.tsv`` of the finished shard folder ``folder``, from
    its samples' records; returns the counts."""
    from vcat.shards import ShardReader

    summary = Summary()
    rows: list[tuple[str, str | None]] = []
    retries = [RETRIES_HEADER]
    classes = set()
    with ShardReader(folder) as reader:
        summary.shards = len(reader.index.shards)
        for key in reader.index.samples:
            record = json.loads(reader.read_member(key, "json"))
            summary.images += 1
            classes.add(record["class"])
            if record["copy"] == 0:
                continue
            summary.copies += 1
            rows.append((key, record["reference"]))
            summary.transforms.update(record["transforms"])
            summary.retries += len(record["retries"])
            summary.retried_copies += bool(record["retries"])
            for attempt, transform, error in record["retries"]:
                retries.append(f"{key}\t{attempt}\t{transform}\t{' '.join(error.split())}\n")
    summary.classes = len(classes)
    summary.failed_classes = len(recorded_failures(folder))
    groundtruth.write(folder / GROUND_TRUTH_NAME, rows)
    write_text(folder / RETRIES_NAME, "".join(retries))
    return summary


def check_part(job: Job, part: Path, spec: Any) -> None:
    """PartsError unless ``part`` was made by shard ``spec`` from the same inputs and settings."""
    from vcat.parts import PartsError

    classes = spec.block(len(job.sources))
    try:
        made = json.loads((part / RUN_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        made = None
    if made != job.signature(classes):
        raise PartsError(
            f"{part} was made from other sources or settings than this merge has; run the "
            f"stage with --shard {spec} again, then merge"
        )


def merge_parts(
    parts: Sequence[Path],
    folder: Path,
    *,
    signature: dict[str, Any],
    limits: Limits,
    allowed_failures: int,
    overwrite: bool = False,
) -> Summary:
    """The finished part folders ``parts`` combined into ``folder``, byte-identical to a
    single run (samples copied in order, failure lines concatenated), then finished."""
    from vcat.parts import merge_samples

    prepare_folder(folder, signature, overwrite)
    merge_samples(
        parts, folder, max_count=limits.max_count, max_bytes=limits.max_bytes, overwrite=overwrite
    )
    lines: list[str] = []
    for part in parts:
        lines.extend(recorded_failures(part).values())
    write_text(folder / FAILURES_NAME, FAILURES_HEADER + "".join(f"{line}\n" for line in lines))
    if len(lines) > allowed_failures:
        raise TooManyFailed(
            f"{len(lines)} classes failed over all parts, more than the {allowed_failures} "
            f"allowed; see {folder / FAILURES_NAME}"
        )
    return finish(folder)
