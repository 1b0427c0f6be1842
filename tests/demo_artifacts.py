"""The demo pipeline's prepared artifacts, for tests that check real outputs of the stages.

``demo_root()`` is this checkout when its ``data/prepared`` holds every artifact listed in
``PREPARED`` (after ``vcat demo build && dvc repro``), else a copy of the checkout, built
once per test session: the demo world, then ``dvc repro`` of the stages that write them.
``VCAT_TEST_BUILD_DEMO=1`` always builds the copy (what a clean clone does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: The artifacts tests read, and the stages (with their upstream) that write them.
PREPARED = (
    "data/prepared/flickr-images/demo-flickr/0.5k",
    "data/prepared/flickr-memmap/demo-flickr/flickr-0.1k.memmap",
    "data/prepared/croco-crops/demo-megadepth",
    "data/prepared/video-frames/demo-video",
    "data/prepared/path-list/demo-video-frame-paths",
    "data/prepared/copydetect-train/demo-copydetect",
    "data/prepared/overlap/demo-megadepth",
    "data/prepared/overlap/demo-matterport",
    "data/prepared/locus-precompute/demo-matterport",
)
STAGES = (
    "flickr-images",
    "flickr-memmap",
    "croco-crops",
    "video-frames",
    "path-list",
    "copydetect-train",
    "overlap",
    "locus-precompute",
)


def has_artifacts(root: Path) -> bool:
    return all((root / relative).exists() for relative in PREPARED)


def _run(args: list[str], cwd: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("VCAT_CATALOG", "VCAT_SETTINGS")},
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "GIT_AUTHOR_NAME": "vcat tests",
        "GIT_AUTHOR_EMAIL": "tests@vcat.invalid",
        "GIT_COMMITTER_NAME": "vcat tests",
        "GIT_COMMITTER_EMAIL": "tests@vcat.invalid",
    }
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")


def copy_files(destination: Path, source: Path = REPO) -> Path:
    """The files of checkout ``source`` as git sees them (tracked, and new but not ignored),
    copied to ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (source / name).is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target)
    return destination


def build_copy(destination: Path) -> Path:
    """A copy of the checkout with the artifacts built."""
    copy_files(destination)
    _run(["git", "init", "-q"], destination)
    _run(["vcat", "demo", "build"], destination)
    _run(["dvc", "repro", *STAGES], destination)
    return destination


def demo_root(scratch: Path) -> Path:
    """This checkout, or a copy built under ``scratch``, with every artifact of PREPARED."""
    if os.environ.get("VCAT_TEST_BUILD_DEMO") != "1" and has_artifacts(REPO):
        return REPO
    return build_copy(scratch)


#: What `vcat run` adds to the prepared artifacts: the checkpoints and the evaluations.
TRAINED = (
    "models/demo-croco-vit/checkpoint.pt",
    "models/vop-overlap-head-demo/checkpoint.pt",
    "metrics/eval/overlap/vop-overlap-head-demo.json",
    "metrics/eval/copydetect/demo-copydetect.json",
)


def run_chain(root: Path) -> None:
    """`vcat run --device cpu` in ``root``: the whole training and evaluation chain."""
    _run(["vcat", "run", "--device", "cpu"], root)


def trained_root(prepared: Path, scratch: Path) -> Path:
    """This checkout when it holds the TRAINED artifacts (and the prepared ones), else
    ``prepared`` (a copy, or a fresh one when ``prepared`` is this checkout, which a test
    must not change) after `vcat run`."""
    if prepared == REPO and all((REPO / relative).exists() for relative in TRAINED):
        return REPO
    root = build_copy(scratch) if prepared == REPO else prepared
    run_chain(root)
    return root


def copy_project(source: Path, destination: Path) -> Path:
    """A copy of the built project ``source`` that a test may change: its files as git sees
    them, the DVC cache and every output (data/, models/, metrics/), committed in a new git
    repository."""
    copy_files(destination, source)
    for folder in ("data", "models", "metrics", ".dvc/cache", ".vcat"):
        if (source / folder).is_dir():
            shutil.copytree(
                source / folder, destination / folder, dirs_exist_ok=True, symlinks=True
            )
    _run(["git", "init", "-q"], destination)
    _run(["git", "add", "-A"], destination)
    _run(["git", "commit", "-q", "-m", "built demo"], destination)
    return destination
