"""One shard of a ``data: remote`` run, on a node that has the code but none of the data.

``vcat executor shard RUN --shard I/N`` (what each task of such a run executes) reads the run
record from the DVC remote, recreates the stage's input folders in a scratch folder, fetches
the input files of its list (what its block reads, and the files the command names), and runs
the stage's command there with ``--shard I/N``. The part it writes goes to the remote file by
file, then the marker that says it is whole. A shard whose marker is there
already does nothing; a shard started again on the same node keeps what its scratch folder
holds (the inputs fetched, the stage's own resumable part).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from vcat.console import stderr
from vcat.executors.listing import LISTING_ENV, LISTING_NAME
from vcat.executors.remote_data import RunRecord, dvc_root, fetch_inputs, files_from_json
from vcat.executors.runners import end_with_parent
from vcat.executors.store import RemoteDataError, RunStore
from vcat.parts import ShardSpec, part_folder
from vcat.stage import write_text_atomic


def default_scratch() -> Path:
    """``$TMPDIR`` (SLURM sites point it at the node's local disk), else the system's."""
    return Path(tempfile.gettempdir())


def run_remote_shard(run: str, spec: ShardSpec, remote: str, scratch: Path) -> int:
    """Do shard ``spec`` of run ``run``; the stage's exit code (0: its part is on the
    remote, whole)."""
    project = dvc_root(Path.cwd())
    store = RunStore.open(project, remote)
    where = store.run_path(run, "run.json")
    saved = store.read_json(where)
    if saved is None:
        raise RemoteDataError(
            f"remote {store.name!r} holds no run {run} ({where}); it was removed, or the "
            "remote is another one than the submitter's: run the stage again"
        )
    record = RunRecord.from_json(saved, where)
    if spec.count != record.shards:
        raise RemoteDataError(f"run {run} has {record.shards} shards, not {spec.count}")
    name = record.part_name(spec)
    marker = store.run_path(run, "parts", f"{name}.json")
    if store.exists(marker):
        stderr.print(f"run {run}: part {name} is on the remote already", highlight=False)
        return 0
    listed = store.run_path(run, "inputs", record.inputs_name(spec))
    files = files_from_json(store.read_json(listed), listed)
    work = scratch / f"vcat-{run}" / name
    for folder in record.folders:
        (work / folder).mkdir(parents=True, exist_ok=True)
    fetch_inputs(store, files, work)
    environment = {
        **os.environ,
        # the stage's code comes from the checkout, whatever folder it runs in
        "PYTHONPATH": os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])),
    }
    if record.by_block:  # the stage walks its folders in the run's listing, not in scratch
        listing = store.read_json(store.run_path(run, "inputs", "listing.json"))
        if not isinstance(listing, list):
            raise RemoteDataError(f"run {run} has no listing of its inputs; run the stage again")
        write_text_atomic(work / LISTING_NAME, json.dumps(listing) + "\n")
        environment[LISTING_ENV] = str(work / LISTING_NAME)
    command = [sys.executable, *record.command, "--shard", str(spec)]
    returncode = subprocess.run(
        command, cwd=work, env=environment, check=False, preexec_fn=end_with_parent()
    ).returncode
    if returncode != 0:
        return returncode
    part = work / part_folder(Path(record.output), spec)
    sizes = store.put_folder(part, store.run_path(run, "parts", name))
    store.write_json(marker, {"files": sizes})
    stderr.print(
        f"run {run}: part {name} sent to remote {store.name!r} ({len(sizes)} files, "
        f"{sum(sizes.values()):,} bytes)",
        highlight=False,
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0
