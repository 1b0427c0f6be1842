"""Stage ``croco-crops``: CroCo v2's pre-training pairs from a ``crops_release.txt``.

Every crop line of the list (:mod:`vcat.croco.crops_file`) is one pair, cut from the two images
of its pair header under the dataset root with CroCo's own Pillow operations, so the JPEG bytes
are those of CroCo's ``extract_crops_from_images.py`` (:mod:`vcat.croco.extract`); each source
image is decoded once for all the pairs of consecutive headers that use it, on ``jobs``
processes. The pairs go into WebDataset shards in the folder OUTPUT, one sample per pair keyed
by its stem (:mod:`vcat.croco.layout`, e.g. ``b/41/1e240``) with members ``1.jpg`` and
``2.jpg``; beside them ``listing.txt`` (``# pair_path`` then the stems of the pairs written, in
index order), ``provenance.tsv`` (each pair's stem and the two source images it was cut from,
as the list names them: :mod:`vcat.croco.provenance`) and ``failures.tsv``. ``--tree DIR``
also writes CroCo's folder tree (``<stem>_1.jpg``, ``<stem>_2.jpg``, ``listing.txt``) that its
``PairsDataset`` reads.

Indices are global and fixed by the list: a pair that fails or is excluded still takes its
index, so the other pairs keep their names whatever fails, which scenes are excluded and how
the run is sharded.

- A source image that cannot be read (missing, not an image, truncated) fails every pair that
  needs it, and a crop box that reaches past its image fails its pair (CroCo would pad it with
  black). Each failed pair is a line of ``failures.tsv`` (index, line, image, failure class,
  message); the stage exits 1 when more than ``max_failed_fraction`` of the pairs to make
  failed, after writing everything else.
- ``exclude_scenes`` keeps pairs out when either image lies in one of those scenes (a scene is
  component ``scene_path_component`` of an image path: 0 for MegaDepth's
  ``<scene>/images/...``); the metrics count the pairs removed, by scene. Scene ids are strings:
  quote them in YAML (``'0015'``; a bare 0015 is a number).
- ``--shard I/N`` makes the pairs of the contiguous index block I of N into a part beside
  OUTPUT; ``--merge N`` combines the N parts into OUTPUT, byte-identical to a single run. The
  parts stay until removed.
- A stopped run resumes where its last sealed shard ended; a finished output is only checked.
  An output is made afresh when the list, a setting that changes the pairs, or the size of
  any source image changed (sizes, not times: a checkout or copy of the same files keeps them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vcat.console import stderr, stderr_bars
from vcat.croco.crops_file import CropsFormatError, PairHeader, read_headers, summarize
from vcat.croco.extract import ExtractSettings, PairFailure, Task, planned_decodes
from vcat.croco.layout import StemLayout
from vcat.croco.provenance import PROVENANCE_NAME, provenance_text
from vcat.croco.tasks import group_headers, run_tasks, task_size
from vcat.croco.tree import LISTING_NAME, listing_text, write_atomic, write_tree
from vcat.executors.run import run_sharded
from vcat.parts import (
    WHOLE,
    MergeOption,
    PartsError,
    ShardOption,
    ShardSpec,
    finished_parts,
    merge_samples,
    part_folder,
)
from vcat.processes import usable_cores
from vcat.shards import INDEX_NAME, ShardWriter
from vcat.stage import (
    MetricsOption,
    OverwriteOption,
    ParamsOption,
    StageError,
    merge_conf,
    write_json,
)
from vcat.stage_cli import StageFailed, run_stage, shard_or_merge

NAME = "croco-crops"
default_conf: dict[str, Any] = {
    "imsize": 256,  # side of the square crops
    "max_subdir_levels": 5,
    "ideal_number_pairs_in_dir": 500,
    "jobs": 0,  # processes; 0: one per available core
    "task_pairs": 256,  # pairs per task handed to a process (fewer in short runs)
    "cache_images": 8,  # decoded images a process keeps for the next headers
    "reduced_decode": False,  # faster JPEG decoding at reduced scale; not CroCo's pixels
    "exclude_scenes": [],  # scene ids (strings) whose pairs are not made: held-out test scenes
    "scene_path_component": 0,  # which component of an image path is its scene id
    "max_failed_fraction": 0.0,
    "shard_max_count": 10_000,
    "shard_max_bytes": 1 << 30,
}
# params.yaml keys that only dvc.yaml reads: which crop list and which image tree
pipeline_keys = ("lists",)

FAILURES_NAME = "failures.tsv"
FAILURES_HEADER = "index\tline\timage\tfailure\tmessage\n"
JOURNAL_NAME = ".failures.journal"  # failures of a run in progress, appended as they come
RUN_NAME = ".run.json"  # what the folder is made from
PART_NAME = "part.json"  # written last in a part: it is finished; what it decoded
PAIR_MEMBERS = ("1.jpg", "2.jpg")


class TooManyFailed(StageFailed):
    """More pairs failed than the stage allows."""


@dataclass
class Counts:
    """What a run (or one part) counted."""

    listed: int  # crop lines of the list
    in_run: int  # crop lines of this run's block
    excluded_by_scene: Counter[str] = field(default_factory=Counter)
    failed_by_class: Counter[str] = field(default_factory=Counter)
    written: int = 0
    decodes: int = 0  # a merge counts those of a single run of the list

    @property
    def excluded(self) -> int:
        return sum(self.excluded_by_scene.values())

    @property
    def failed(self) -> int:
        return sum(self.failed_by_class.values())

    @property
    def to_make(self) -> int:
        return self.in_run - self.excluded

    def metrics(self, headers: int, layout: StemLayout, scenes: list[str]) -> dict[str, Any]:
        reuse = 2 * self.to_make / self.decodes if self.decodes else 0.0
        return {
            "pair_headers": headers,
            "pairs_listed": self.listed,
            "pairs_in_run": self.in_run,
            "pairs_excluded": self.excluded,
            "excluded_by_scene": {scene: self.excluded_by_scene[scene] for scene in scenes},
            "pairs_failed": self.failed,
            "failures_by_class": dict(sorted(self.failed_by_class.items())),
            "pairs_written": self.written,
            "images_decoded": self.decodes,
            "reuse_factor": round(reuse, 3),  # crops cut per image decoded
            "subdir_levels": layout.levels,
            "pairs_per_dir": layout.per_dir,
        }


@dataclass(frozen=True)
class Exclusion:
    """Which pairs are kept out: those with an image in one of ``scenes``."""

    scenes: frozenset[str]
    component: int

    def scene_of(self, crops: Path, header: PairHeader) -> str | None:
        """The excluded scene of either image of ``header``, or None."""
        if not self.scenes:
            return None
        for image in (header.image1, header.image2):
            parts = PurePosixPath(image).parts
            if len(parts) <= self.component:
                raise StageError(
                    f"{crops}:{header.line}: image path {image!r} has no component "
                    f"{self.component} to take a scene id from; set "
                    f"{NAME}.scene_path_component to where the scene lies in these paths"
                )
            if parts[self.component] in self.scenes:
                return parts[self.component]
        return None


def _settings(conf: Mapping[str, Any] | None) -> Any:
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    for key in ("imsize", "task_pairs", "cache_images", "max_subdir_levels"):
        if int(settings[key]) < 1:
            raise StageError(f"{NAME}.{key} must be at least 1, not {settings[key]}")
    if int(settings.ideal_number_pairs_in_dir) < 2:
        raise StageError(f"{NAME}.ideal_number_pairs_in_dir must be at least 2")
    if int(settings.jobs) < 0 or int(settings.scene_path_component) < 0:
        raise StageError(f"{NAME}.jobs and {NAME}.scene_path_component cannot be negative")
    if not 0.0 <= float(settings.max_failed_fraction) <= 1.0:
        raise StageError(f"{NAME}.max_failed_fraction must lie in [0, 1]")
    for scene in settings.exclude_scenes:
        if not isinstance(scene, str) or not scene:
            raise StageError(
                f"{NAME}.exclude_scenes holds {scene!r}: scene ids are strings; quote them in "
                "YAML ('0015': a bare 0015 is read as a number)"
            )
    return settings


def _jobs(settings: Any) -> int:
    return int(settings.jobs) or usable_cores()


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _sizes_md5(root: Path, images: set[str]) -> str:
    """A digest of the size of every image (-1: cannot be read): a replaced image almost always
    changes size, and sizes, unlike times, survive copies and checkouts of the same files."""
    digest = hashlib.md5()
    base = os.fspath(root)
    for name in sorted(images):
        try:
            size = os.stat(os.path.join(base, name)).st_size
        except OSError:
            size = -1
        digest.update(f"{name}\t{size}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _block_images(crops: Path, blocks: Sequence[range]) -> list[set[str]]:
    """The source images each of ``blocks`` (ascending, contiguous) needs, in one read of
    the list: those of every header with a crop in the block."""
    images: list[set[str]] = [set() for _ in blocks]
    first = 0
    for header in read_headers(crops):
        if not header.crops:
            continue
        low, high = header.crops[0].index, header.crops[-1].index
        while first < len(blocks) and blocks[first].stop <= low:
            first += 1
        for number in range(first, len(blocks)):
            if blocks[number].start > high:
                break
            images[number] |= {header.image1, header.image2}
    return images


def _signature(crops: Path, settings: Any, total: int, sizes: str) -> dict[str, Any]:
    keys = (
        "imsize",
        "max_subdir_levels",
        "ideal_number_pairs_in_dir",
        "scene_path_component",
        "reduced_decode",
        "shard_max_count",
        "shard_max_bytes",
    )
    return {
        "crops_md5": _file_md5(crops),
        "image_sizes_md5": sizes,
        "pairs": total,
        "exclude_scenes": sorted(settings.exclude_scenes),
        **{key: settings[key] for key in keys},
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none, or cut short by a kill
        return None


def _prepare_folder(folder: Path, signature: dict[str, Any], overwrite: bool) -> None:
    """Empty ``folder`` unless it holds work made from the same list and settings; a folder
    that holds other files than a run of this stage is refused, never emptied."""
    if folder.is_dir() and not (folder / RUN_NAME).is_file():
        others = [path.name for path in folder.iterdir() if path.name != f".{RUN_NAME}.partial"]
        if others:
            raise StageError(
                f"{folder} holds files that no {NAME} run made ({', '.join(sorted(others)[:3])}"
                f"{', ...' if len(others) > 3 else ''}); give a new or empty folder"
            )
    if overwrite or _read_json(folder / RUN_NAME) != signature:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(signature, sort_keys=True) + "\n"
    if not (folder / RUN_NAME).is_file():
        write_atomic(folder / RUN_NAME, text.encode())


def _selected(
    crops: Path, block: range, exclusion: Exclusion, counts: Counts
) -> Iterator[PairHeader]:
    """The headers with crops in ``block``, those crops only, excluded ones counted out."""
    for header in read_headers(crops):
        if not header.crops:
            continue
        if header.crops[0].index >= block.stop:
            break
        inside = tuple(crop for crop in header.crops if crop.index in block)
        if not inside:
            continue
        scene = exclusion.scene_of(crops, header)
        if scene is not None:
            counts.excluded_by_scene[scene] += len(inside)
            continue
        yield replace(header, crops=inside)


def _failure_record(failure: PairFailure) -> str:
    message = " ".join(failure.message.split())
    return f"{failure.index}\t{failure.line}\t{failure.image}\t{failure.failure}\t{message}"


def _recorded_failures(folder: Path) -> dict[int, str]:
    """Failures recorded by earlier runs into ``folder`` (finished or not), by pair index."""
    records: dict[int, str] = {}
    for name in (FAILURES_NAME, JOURNAL_NAME):
        path = folder / name
        if not path.is_file():
            continue
        for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = text.split("\t")
            if len(fields) == 5 and fields[0].isdigit():  # else a header or cut by a kill
                records[int(fields[0])] = text
    return records


def _class_of(record: str) -> str:
    return record.split("\t")[3]


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return
    write_atomic(path, data)


def _progress() -> Progress:
    return stderr_bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeRemainingColumn(),
    )


def _already_sealed() -> dict[str, bytes]:
    raise AssertionError("a pair of a sealed shard was asked for again")


class _Run:
    """One run into one folder (the output or a part): replay what earlier runs sealed, make
    the rest, record failures."""

    def __init__(self, folder: Path, layout: StemLayout, settings: Any) -> None:
        self.folder = folder
        self.layout = layout
        self.settings = settings
        self.recorded = _recorded_failures(folder)
        self.records: list[str] = []  # failures of this folder, in index order
        self.journal: Any = None
        self.replaying = True

    def tasks(
        self, headers: Iterator[PairHeader], writer: ShardWriter, counts: Counts, advance: Any
    ) -> Iterator[Task]:
        """The work still to do, as tasks; pairs sealed by an earlier run are replayed into
        ``writer`` (without being made) and their failures kept, on the way."""
        resumed = writer.resumed_samples
        # the writer keeps index.json only when every shard it names is there, whole
        complete = (self.folder / INDEX_NAME).is_file()
        sealed = 0
        capacity = int(self.settings.cache_images)
        size = task_size(counts.in_run, int(self.settings.task_pairs))
        for run in group_headers(headers, size):
            counts.decodes += planned_decodes(run, capacity)
            todo: list[PairHeader] = []
            for header in run:
                left = []
                for crop in header.crops:
                    if self.replaying and (sealed < resumed or complete):
                        if crop.index in self.recorded:
                            self._keep(self.recorded[crop.index], counts)
                        else:
                            writer.add(self.layout.stem(crop.index), _already_sealed)
                            sealed += 1
                            counts.written += 1
                        advance()
                        continue
                    if self.replaying:
                        self._start_journal()
                    left.append(crop)
                if left:
                    todo.append(replace(header, crops=tuple(left)))
            if todo:
                yield Task(tuple(todo))

    def _keep(self, record: str, counts: Counts) -> None:
        self.records.append(record)
        counts.failed_by_class[_class_of(record)] += 1

    def _start_journal(self) -> None:
        """From here on pairs are made: the journal keeps only the failures before here
        (those after are tried again), written whole before anything is appended."""
        self.replaying = False
        text = "".join(f"{record}\n" for record in self.records)
        write_atomic(self.folder / JOURNAL_NAME, text.encode("utf-8"))
        self.journal = (self.folder / JOURNAL_NAME).open("a", encoding="utf-8")

    def fail(self, failure: PairFailure, counts: Counts) -> None:
        record = _failure_record(failure)
        self.journal.write(f"{record}\n")
        self.journal.flush()
        self._keep(record, counts)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()

    def finish(self, crops: Path, stems: list[str]) -> None:
        """The folder's listing, provenance and failures; the journal goes last."""
        failures = FAILURES_HEADER + "".join(f"{record}\n" for record in self.records)
        _write_if_changed(self.folder / FAILURES_NAME, failures)
        _write_if_changed(self.folder / LISTING_NAME, listing_text(stems))
        _write_if_changed(self.folder / PROVENANCE_NAME, provenance_text(crops, self.layout, stems))
        (self.folder / JOURNAL_NAME).unlink(missing_ok=True)


def _make(
    crops: Path,
    root: Path,
    folder: Path,
    block: range,
    layout: StemLayout,
    settings: Any,
    exclusion: Exclusion,
    counts: Counts,
) -> None:
    """Make the pairs of ``block`` into ``folder`` (prepared), resuming an earlier run."""
    extract = ExtractSettings(
        root=root,
        imsize=int(settings.imsize),
        cache_images=int(settings.cache_images),
        reduced_decode=bool(settings.reduced_decode),
    )
    run = _Run(folder, layout, settings)
    try:
        with (
            ShardWriter(
                folder,
                max_count=int(settings.shard_max_count),
                max_bytes=int(settings.shard_max_bytes),
            ) as writer,
            _progress() as progress,
        ):
            bar = progress.add_task(crops.name, total=len(block), failed=0)

            def advance(steps: int = 1) -> None:
                progress.update(bar, advance=steps, failed=counts.failed)

            headers = _selected(crops, block, exclusion, counts)
            tasks = run.tasks(headers, writer, counts, advance)
            for _, results in run_tasks(tasks, extract, _jobs(settings)):
                for index, result in results:
                    if isinstance(result, PairFailure):
                        run.fail(result, counts)
                    else:
                        writer.add(layout.stem(index), dict(zip(PAIR_MEMBERS, result, strict=True)))
                        counts.written += 1
                    advance()
            advance(counts.excluded)
    finally:
        run.close()
    run.finish(crops, list(writer.index.samples))


def _merge(
    crops: Path,
    root: Path,
    output: Path,
    count: int,
    layout: StemLayout,
    settings: Any,
    signature: dict[str, Any],
    exclusion: Exclusion,
    counts: Counts,
    overwrite: bool,
) -> None:
    """Combine the ``count`` finished parts of ``output`` into it."""
    parts = finished_parts(output, count)
    specs = [ShardSpec(number, count) for number in range(count)]
    blocks = [spec.block(signature["pairs"]) for spec in specs]
    records: list[str] = []
    for spec, part, block, images in zip(
        specs, parts, blocks, _block_images(crops, blocks), strict=True
    ):
        expected = _part_signature(signature, spec, block, _sizes_md5(root, images))
        if _read_json(part / RUN_NAME) != expected:
            raise PartsError(
                f"{part} was made from another crop list or other settings; run the stage "
                f"with --shard {spec} again, then merge"
            )
        done = _read_json(part / PART_NAME)
        if not isinstance(done, dict):
            raise PartsError(f"{part} is not finished; run the stage with --shard {spec} again")
        records += list(_recorded_failures(part).values())
    # the exclusions, and the decodes of a single run (the shards decoded the images at the
    # edges of their blocks once more each): metrics do not depend on how the run was split
    selected = _selected(crops, range(counts.in_run), exclusion, counts)
    size = task_size(counts.in_run, int(settings.task_pairs))
    capacity = int(settings.cache_images)
    counts.decodes = sum(planned_decodes(run, capacity) for run in group_headers(selected, size))
    _prepare_folder(output, signature, overwrite)
    index = merge_samples(
        parts,
        output,
        max_count=int(settings.shard_max_count),
        max_bytes=int(settings.shard_max_bytes),
    )
    for record in records:
        counts.failed_by_class[_class_of(record)] += 1
    counts.written = len(index.samples)
    failures = FAILURES_HEADER + "".join(f"{record}\n" for record in records)
    _write_if_changed(output / FAILURES_NAME, failures)
    _write_if_changed(output / LISTING_NAME, listing_text(index.samples))
    _write_if_changed(output / PROVENANCE_NAME, provenance_text(crops, layout, index.samples))
    (output / JOURNAL_NAME).unlink(missing_ok=True)  # left by a single run stopped there


def _part_signature(
    signature: dict[str, Any], spec: ShardSpec, block: range, block_sizes: str
) -> dict[str, Any]:
    """A part's signature: the run's, with the sizes of the images of its block only (a
    shard stats what it reads, not every image of the list; a shard on a node without the
    data has only those)."""
    return {
        **signature,
        "image_sizes_md5": block_sizes,
        "shard": str(spec),
        "block": [block.start, block.stop],
    }


def _block_inputs(crops: Path, root: Path, count: int) -> list[list[Path]]:
    """The source images each of ``count`` shards of the list reads (for executor data:
    remote)."""
    total = summarize(crops).crops
    blocks = [ShardSpec(index, count).block(total) for index in range(count)]
    return [[root / name for name in sorted(images)] for images in _block_images(crops, blocks)]


def main(
    conf: Mapping[str, Any] | None,
    crops: Path,
    root: Path,
    output: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    shard: ShardSpec | None = None,
    merge: int | None = None,
    tree: Path | None = None,
) -> Path:
    """Make the pairs of the crop list ``crops`` from the images under ``root`` into the
    shard folder ``output`` (or, with ``shard``, its part; with ``merge``, combine parts).

    ``shard`` (even 0/1) writes a part beside ``output``; None does the whole list into it.
    ``tree``: also write CroCo's folder tree there. ``metrics``: the counts as JSON. Raises
    TooManyFailed after writing everything when more pairs failed than allowed.
    Returns the folder written.
    """
    settings = _settings(conf)
    if merge is not None and shard is not None:
        raise StageError("--shard and --merge do not go together: merge once all parts are made")
    if tree is not None and shard is not None:
        raise StageError("--tree needs the whole output: give it with --merge or a single run")
    images: set[str] = set()
    summary = summarize(crops, images)
    layout = StemLayout.for_total(
        summary.crops, int(settings.max_subdir_levels), int(settings.ideal_number_pairs_in_dir)
    )
    exclusion = Exclusion(frozenset(settings.exclude_scenes), int(settings.scene_path_component))
    # a part's signature has the sizes of its own block's images only (see _part_signature)
    sizes = "" if shard is not None else _sizes_md5(root, images)
    signature = _signature(crops, settings, summary.crops, sizes)
    if merge is not None:
        counts = Counts(summary.crops, summary.crops)
        _merge(
            crops, root, output, merge, layout, settings, signature, exclusion, counts, overwrite
        )
        folder = output
    else:
        block = (shard or WHOLE).block(summary.crops)
        counts = Counts(summary.crops, len(block))
        folder = output if shard is None else part_folder(output, shard)
        own = signature
        if shard is not None:
            (block_images,) = _block_images(crops, [block])
            own = _part_signature(signature, shard, block, _sizes_md5(root, block_images))
        _prepare_folder(folder, own, overwrite)
        _make(crops, root, folder, block, layout, settings, exclusion, counts)
        if shard is not None:
            write_json(folder / PART_NAME, {"images_decoded": counts.decodes})
    if tree is not None:
        write_tree(output, tree, overwrite=overwrite)
    stderr.print(
        f"{folder}: {counts.written:,} of {counts.in_run:,} pairs written, "
        f"{counts.excluded:,} excluded, {counts.failed:,} failed"
        + (f"; see {folder / FAILURES_NAME}" if counts.failed else ""),
        highlight=False,
    )
    if metrics is not None:
        write_json(metrics, counts.metrics(summary.headers, layout, sorted(exclusion.scenes)))
    allowed = int(float(settings.max_failed_fraction) * counts.to_make)
    if counts.failed > allowed:
        hint = ""
        if counts.failed == counts.to_make and merge is None:
            hint = f"; none was made: is {root} the folder the list's image paths start from?"
        raise TooManyFailed(
            f"{crops}: {counts.failed} pairs failed, more than the {allowed} that "
            f"{NAME}.max_failed_fraction={settings.max_failed_fraction} allows; see "
            f"{folder / FAILURES_NAME}{hint}"
        )
    return folder


def command(
    context: typer.Context,
    crops: Annotated[
        Path,
        typer.Argument(
            help="CroCo crop list (crops_release.txt).",
            metavar="CROPS",
            exists=True,
            dir_okay=False,
        ),
    ],
    root: Annotated[
        Path,
        typer.Argument(
            help="Dataset root that the list's image paths are relative to.",
            metavar="ROOT",
            exists=True,
            file_okay=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Argument(
            help="Folder of shards to write (a sample per pair keyed by its stem, members 1.jpg "
            "and 2.jpg), with listing.txt, provenance.tsv and failures.tsv.",
            metavar="OUTPUT",
            file_okay=False,
        ),
    ],
    tree: Annotated[
        Path | None,
        typer.Option(
            "--tree",
            help="Also write CroCo's folder tree (<stem>_1.jpg, <stem>_2.jpg, listing.txt) here.",
            file_okay=False,
        ),
    ] = None,
    shard: ShardOption = None,
    merge: MergeOption = None,
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Cut CroCo's pre-training pairs from a crops_release.txt into WebDataset shards."""
    spec, merge = shard_or_merge(shard, merge)

    def work(conf: DictConfig) -> None:
        def run(spec: ShardSpec | None, merge: int | None) -> None:
            main(conf, crops, root, output, overwrite, metrics, spec, merge, tree)

        run_sharded(
            context,
            output,
            params,
            spec,
            merge,
            run,
            whole_only={"tree"},
            block_inputs=lambda count: _block_inputs(crops, root, count),
        )

    run_stage(NAME, default_conf, params, work, pipeline_keys, input_errors=(CropsFormatError,))
