"""Handing fetched data to DVC: ``dvc add`` of the dataset root, reusing our checksums.

DVC hashes every file it tracks with md5. The fetch has just computed that md5 while
verifying, so it is written into DVC's hash cache (keyed by inode, mtime and size) before
``dvc add``, which then finds it there instead of reading the file again.

A root can be tracked one way only: by its own ``.dvc`` file (``vcat fetch``) or as the
output of a ``dvc.yaml`` stage (``fetch@NAME``). DVC refuses both at once, so the fetch asks
which stage, if any, owns the root before it adds anything.
"""

from __future__ import annotations

from pathlib import Path

from vcat.problems import display_path


class TrackingConflict(Exception):
    """The root cannot be tracked as asked; the message says what to do instead."""


def dvc_repo_root(path: Path) -> Path | None:
    """The DVC repository (a folder holding ``.dvc/``) that encloses ``path``, if any."""
    here = path.resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def owning_stage(root: Path, repo_root: Path) -> str | None:
    """The ``dvc.yaml`` stage (e.g. ``fetch@demo-flickr``) whose outputs are ``root``, lie
    inside it or contain it; None when no pipeline stage writes there.

    Raises ``TrackingConflict`` when a ``.dvc`` file tracks the same data too: DVC then
    refuses every command on the pipeline until one of the two goes.
    """
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    target = root.resolve()
    owners: list[str] = []
    dvc_files: list[str] = []
    with Repo(str(repo_root)) as repo:
        for stage in repo.index.stages:
            if any(_overlaps(Path(out.fs_path), target) for out in stage.outs):
                if isinstance(stage, PipelineStage):
                    owners.append(stage.addressing)
                else:
                    dvc_files.append(display_path(Path(stage.path)))
    if owners and dvc_files:
        raise TrackingConflict(
            f"{root.name} is both the output of stage {owners[0]} (dvc.yaml) and tracked by "
            f"{dvc_files[0]}, so DVC refuses the pipeline: stop tracking it on its own with "
            f"`dvc remove {dvc_files[0]}` (the data stays), then run `dvc repro {owners[0]}`"
        )
    return owners[0] if owners else None


def track(root: Path, md5s: dict[Path, str], repo_root: Path) -> Path:
    """``dvc add`` the folder ``root`` inside ``repo_root``; returns the ``.dvc`` file.

    ``md5s`` maps files under ``root`` to md5 digests computed from their current content.
    """
    from dvc.fs import LocalFileSystem
    from dvc.repo import Repo
    from dvc_data.hashfile.hash_info import HashInfo

    with Repo(str(repo_root)) as repo:
        known = [
            (str(path.resolve()), HashInfo("md5", digest), None)
            for path, digest in md5s.items()
            if path.exists()
        ]
        if known:
            repo.state.save_many(known, LocalFileSystem())
        repo.add([str(root.resolve())])
    return root.with_name(root.name + ".dvc")
