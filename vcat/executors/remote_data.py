"""``data: remote``: shards that need no copy of the checkout's data.

The submitter records every file the stage's command reads (its input files and the files
under its input folders, with their MD5 and size) in a *run record*, sends the files the DVC
remote lacks (:mod:`vcat.executors.store`), and starts each shard as ``vcat executor shard``
(:mod:`vcat.executors.worker`). The submitter also writes, for each shard, the list of the
input files its block reads: the stage names them (``block_inputs``), else a shard gets every
input file. A shard recreates the inputs' folders in a scratch folder of its node, fetches its
list, runs the stage's own command there, sends its part back to the remote and, last, a
marker saying the part is whole. The merge fetches the parts and combines them as it
combines local ones.

A run is named by a digest of its command line, number of shards and inputs, so a submitter
started again after a kill finds the parts its shards already sent, and a run whose inputs
changed starts anew.

Remote layout, under the remote's URL::

    files/md5/ab/cdef...                     inputs, as dvc push stores them
    vcat/runs/<run>/run.json                 the run record, written last
    vcat/runs/<run>/inputs/00001-of-00004.json  what shard 1 fetches (all.json: every shard)
    vcat/runs/<run>/inputs/listing.json      every input file (when shards fetch their own)
    vcat/runs/<run>/parts/00001-of-00004/... a shard's part, file by file
    vcat/runs/<run>/parts/00001-of-00004.json  written last: the part is whole
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vcat.console import stderr, stderr_bars
from vcat.executors.store import RemoteDataError, RunStore
from vcat.hashing import hash_file, kind_of
from vcat.parts import PartsError, ShardSpec, part_folder
from vcat.processes import usable_cores

RUN_FORMAT = "vcat.executor.run/1"


@dataclass(frozen=True)
class InputFile:
    md5: str
    size: int


@dataclass(frozen=True)
class RunRecord:
    """What every shard of a ``data: remote`` run needs to know, as stored in ``run.json``.

    ``command``: the stage's command line after the Python interpreter (``-m vcat stage NAME
    ...``), its paths relative to the folder it runs in; ``arguments``: the input paths the
    command names; ``folders``: every input folder (empty ones too); ``by_block``: each shard
    has its own list of input files to fetch (else one list, ``all``, for every shard).
    """

    run: str
    command: tuple[str, ...]
    shards: int
    output: str
    arguments: tuple[str, ...]
    folders: tuple[str, ...]
    by_block: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "run": self.run,
            "command": list(self.command),
            "shards": self.shards,
            "output": self.output,
            "arguments": list(self.arguments),
            "folders": list(self.folders),
            "by_block": self.by_block,
        }

    @classmethod
    def from_json(cls, record: Any, where: str) -> RunRecord:
        try:
            if record["format"] != RUN_FORMAT:
                raise ValueError(f"format {record['format']!r}, not {RUN_FORMAT}")
            return cls(
                run=str(record["run"]),
                command=tuple(str(word) for word in record["command"]),
                shards=int(record["shards"]),
                output=str(record["output"]),
                arguments=tuple(str(path) for path in record["arguments"]),
                folders=tuple(str(path) for path in record["folders"]),
                by_block=bool(record["by_block"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RemoteDataError(
                f"{where} is not a run record this vcat reads ({error}); run the stage again "
                "from its checkout"
            ) from None

    def part_name(self, spec: ShardSpec) -> str:
        return part_folder(Path(self.output), spec).name

    def inputs_name(self, spec: ShardSpec) -> str:
        """The name of the list of files shard ``spec`` fetches."""
        return f"{self.part_name(spec)}.json" if self.by_block else "all.json"


def files_json(files: dict[str, InputFile]) -> dict[str, list[Any]]:
    return {name: [file.md5, file.size] for name, file in sorted(files.items())}


def files_from_json(record: Any, where: str) -> dict[str, InputFile]:
    if record is None:
        raise RemoteDataError(f"{where} is not on the remote; run the stage again")
    try:
        return {str(name): InputFile(str(md5), int(size)) for name, (md5, size) in record.items()}
    except (AttributeError, TypeError, ValueError) as error:
        raise RemoteDataError(f"{where} is not a list of input files ({error})") from None


# --- the submitter ----------------------------------------------------------------------------


def relative_input(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` as a POSIX path; RemoteDataError when it lies outside
    (a shard recreates the inputs under its scratch folder by these paths)."""
    absolute = Path(os.path.abspath(base / path))
    try:
        relative = absolute.relative_to(base)
    except ValueError:
        raise RemoteDataError(
            f"{path} lies outside {base}, where the stage runs: with executor data: remote a "
            "shard recreates the stage's inputs under its scratch folder by their paths inside "
            "it; give a path inside it, or use data: shared"
        ) from None
    return relative.as_posix() or "."


def describe_inputs(
    paths: Sequence[Path], base: Path, jobs: int
) -> tuple[dict[str, InputFile], list[str]]:
    """Every file under ``paths`` (files, or folders walked) with its MD5 and size, and
    every folder; keys relative to ``base``. A link to a file counts as that file (DVC's
    link cache types); any other special file is refused, naming it."""
    found: dict[str, Path] = {}
    folders: set[str] = set()
    for given in paths:
        top = relative_input(given, base)
        path = base / top
        if path.is_dir():
            folders.add(top)
            above: dict[str, Path] = {}  # a link back to a folder it is in would never end
            for directory, subfolders, names in os.walk(path, followlinks=True):
                here = Path(directory)
                real = os.path.realpath(here)
                if real in above and here != above[real] and above[real] in here.parents:
                    raise RemoteDataError(
                        f"{relative_input(here, base)} leads back to "
                        f"{relative_input(above[real], base)} (a link): a folder of inputs "
                        "cannot hold itself; remove the link"
                    )
                above.setdefault(real, here)
                for name in subfolders:
                    folders.add(relative_input(here / name, base))
                for name in names:
                    found[relative_input(here / name, base)] = here / name
        else:
            found[top] = path
    sizes: dict[str, int] = {}
    for name, path in found.items():
        try:
            status = path.stat()  # follows links: their target is what is sent
        except OSError as error:
            raise RemoteDataError(
                f"{name} cannot be read ({error.strerror}): executor data: remote sends every "
                "input file; restore it or remove it from the stage's inputs"
            ) from None
        kind = kind_of(status.st_mode)
        if kind != "file":
            raise RemoteDataError(
                f"{name} is a {kind}: executor data: remote sends regular files only; "
                "remove it from the stage's inputs, or use data: shared"
            )
        sizes[name] = status.st_size
    names = sorted(found)
    with _bytes_bar(f"hashing {len(names):,} input files", sum(sizes.values())) as advance:

        def digest(name: str) -> InputFile:
            md5 = hash_file(Path(os.path.realpath(found[name])))["md5"]
            advance(sizes[name])
            return InputFile(md5, sizes[name])

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            described = dict(zip(names, pool.map(digest, names), strict=True))
    return described, sorted(folders)


def send_inputs(store: RunStore, files: dict[str, InputFile], base: Path) -> int:
    """Send the inputs the remote lacks (one object per content); the bytes sent."""
    by_md5 = {file.md5: (name, file.size) for name, file in files.items()}
    missing = sorted(store.missing(by_md5))
    total = sum(by_md5[md5][1] for md5 in missing)
    if not missing:
        return 0
    what = f"sending {len(missing):,} input files to remote {store.name!r}"
    with _bytes_bar(what, total) as advance:

        def send(md5: str) -> None:
            name, size = by_md5[md5]
            store.upload(base / name, store.object_path(md5))
            advance(size)

        store.each(send, missing)
    return total


def dvc_root(start: Path) -> Path:
    """The DVC repository at or above ``start`` (a folder with ``.dvc/``)."""
    here = start.absolute()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    raise RemoteDataError(
        f"{here} is not inside a DVC repository: executor data: remote keeps the inputs and "
        "parts in the repository's DVC remote; run the stage in its checkout, or use data: shared"
    )


#: ``block_inputs(N)``: for each of N shards, the input files its block reads (paths as the
#: stage's command names them).
BlockInputs = Callable[[int], Sequence[Iterable[Path]]]


def publish_run(
    command: Sequence[str],
    inputs: Sequence[Path],
    output: Path,
    shards: int,
    remote: str,
    block_inputs: BlockInputs | None = None,
) -> tuple[RunStore, RunRecord]:
    """Record the run of ``command`` (``python -m vcat stage ...``) split in ``shards``: send
    the inputs the remote lacks, each shard's list of files, and the record, last."""
    base = Path.cwd()
    store = RunStore.open(dvc_root(base), remote)
    files, folders = describe_inputs(inputs, base, usable_cores())
    relative = {str(path): relative_input(path, base) for path in (*inputs, output)}
    # each node runs the command with its own interpreter, in its own scratch folder
    words = [relative.get(word, word) for word in command[1:]]
    arguments = [relative_input(path, base) for path in inputs]
    identity = [words, shards, relative_input(output, base), arguments, folders, files_json(files)]
    run = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20]
    record = RunRecord(
        run=run,
        command=tuple(words),
        shards=shards,
        output=relative_input(output, base),
        arguments=tuple(arguments),
        folders=tuple(folders),
        by_block=block_inputs is not None,
    )
    sent = send_inputs(store, files, base)
    if store.read_json(store.run_path(run, "run.json")) is None:
        for name, listed in _shard_lists(record, files, base, block_inputs).items():
            store.write_json(store.run_path(run, "inputs", name), files_json(listed))
        if record.by_block:  # for the stages that walk a folder (vcat.executors.listing)
            store.write_json(store.run_path(run, "inputs", "listing.json"), sorted(files))
        store.write_json(store.run_path(run, "run.json"), record.to_json())
    stderr.print(
        f"{output}: run {run} on remote {store.name!r}: {len(files):,} input files, "
        f"{sent:,} bytes sent",
        highlight=False,
    )
    return store, record


def _shard_lists(
    record: RunRecord, files: dict[str, InputFile], base: Path, block_inputs: BlockInputs | None
) -> dict[str, dict[str, InputFile]]:
    """The files each shard fetches, by list name: the input files the command names, and
    those of its block (every input file without ``block_inputs``). A file the stage names
    that is not an input (an image its list names but the dataset lacks) is not fetched: the
    shard finds it missing, as the stage would here."""
    if block_inputs is None:
        return {"all.json": files}
    named = {name: files[name] for name in record.arguments if name in files}
    lists = {}
    for index, paths in enumerate(block_inputs(record.shards)):
        wanted = {relative_input(path, base) for path in paths}
        listed = {**named, **{name: files[name] for name in wanted if name in files}}
        lists[record.inputs_name(ShardSpec(index, record.shards))] = listed
    return lists


def fetch_parts(store: RunStore, record: RunRecord, output: Path) -> None:
    """Every part of the run from the remote into the parts folder beside ``output``;
    PartsError naming the parts the remote does not hold whole."""
    specs = [ShardSpec(index, record.shards) for index in range(record.shards)]
    paths = [store.run_path(record.run, "parts", f"{record.part_name(s)}.json") for s in specs]
    markers = dict(zip(specs, store.each(store.read_json, paths), strict=True))
    absent = [str(spec.index) for spec, marker in markers.items() if not isinstance(marker, dict)]
    if absent:
        raise PartsError(
            f"{output}: remote {store.name!r} does not hold part(s) {', '.join(absent[:10])} "
            f"of run {record.run}; run the stage again to make them"
        )
    total = sum(int(size) for marker in markers.values() for size in marker["files"].values())
    with _bytes_bar(f"fetching {record.shards} parts of {output.name}", total) as advance:
        for spec, marker in markers.items():
            local = part_folder(output, spec)
            shutil.rmtree(local, ignore_errors=True)
            remote = store.run_path(record.run, "parts", record.part_name(spec))
            store.get_folder(remote, marker["files"], local, advance)


def fetch_inputs(store: RunStore, files: dict[str, InputFile], base: Path) -> None:
    """``files`` from the remote to their paths under ``base``, each checked against its
    MD5; a file already there with its size is kept (a shard started again on its node)."""
    names = sorted(
        name
        for name, file in files.items()
        if not ((base / name).is_file() and (base / name).stat().st_size == file.size)
    )
    total = sum(files[name].size for name in names)
    with _bytes_bar(f"fetching {len(names):,} input files", total) as advance:

        def fetch(name: str) -> None:
            file = files[name]
            store.download(store.object_path(file.md5), base / name, file.md5)
            advance(file.size)

        store.each(fetch, names)


@contextmanager
def _bytes_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar of ``total`` bytes; yields what advances it. Says "done" when the block
    ends without an error."""
    bars = stderr_bars(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with bars:
        bar = bars.add_task(description, total=total)
        yield lambda count: bars.advance(bar, count)
    stderr.print(f"{description}: done", highlight=False)
