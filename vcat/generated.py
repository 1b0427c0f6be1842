"""Folders whose every file is generated: write them whole, or tell how they differ."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def write_folder(target: Path, files: dict[str, str]) -> None:
    """Replace ``target`` with exactly ``files`` (name -> text).

    The new folder is written beside the old one and swapped in by rename, so a reader never
    sees a half-written set and an interrupted run leaves the old folder in place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        if target.exists():
            retired = staging.with_name(staging.name + ".old")
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def stale_files(target: Path, files: dict[str, str]) -> list[str]:
    """Names in ``target`` that are missing, differ from ``files``, or should not be there."""
    present = {p.name for p in target.iterdir() if p.is_file()} if target.is_dir() else set()
    stale = sorted(present - files.keys())
    for name, text in sorted(files.items()):
        path = target / name
        if name not in present or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
