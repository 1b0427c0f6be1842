"""Handing fetched data to DVC: ``dvc add`` of the dataset root, reusing our checksums.

DVC hashes every file it tracks with md5. The fetch has just computed that md5 while
verifying, so it is written into DVC's hash cache (keyed by inode, mtime and size) before
``dvc add``, which then finds it there instead of reading the file again.
"""

from __future__ import annotations

from pathlib import Path


def dvc_repo_root(path: Path) -> Path | None:
    """The DVC repository (a folder holding ``.dvc/``) that encloses ``path``, if any."""
    here = path.resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


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
