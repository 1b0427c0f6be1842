"""FIFOs, devices and bombs where lists and images are read outside a walked tree: refused by
name at once, never waited on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.bad_images import jpeg, png_bomb
from tests.no_hang import no_hang
from vcat.lists.dataset import ImagePathDataset, ImageReadError

VCAT = str(Path(sys.executable).with_name("vcat"))


@pytest.mark.parametrize(("stage", "output"), [("flickr-memmap", "x.mm"), ("flickr-images", "out")])
def test_a_list_stage_refuses_a_fifo_list_without_waiting(
    tmp_path: Path, stage: str, output: str
) -> None:
    os.mkfifo(tmp_path / "flickr-x.tsv")
    done = subprocess.run(
        [VCAT, "stage", stage, str(tmp_path / "flickr-x.tsv"), str(tmp_path / output)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {tmp_path}/flickr-x.tsv: a FIFO (named pipe), not a regular file; put a "
        "regular file there or remove it"
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "flickr-x.tsv"]


def test_the_image_dataset_names_what_it_cannot_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "good.jpg").write_bytes(jpeg(0))
    os.mkfifo(root / "pipe.jpg")
    (root / "zero.jpg").symlink_to("/dev/zero")
    (root / "bomb.png").write_bytes(png_bomb())
    names = ["good.jpg", "pipe.jpg", "zero.jpg", "bomb.png"]
    np.array(names, dtype="S120").tofile(tmp_path / "list.memmap")
    dataset = ImagePathDataset(tmp_path / "list.memmap", root)
    assert dataset[0].size == (64, 48)
    for index, (name, reason) in enumerate(
        [("pipe.jpg", "a FIFO"), ("zero.jpg", "a character device"), ("bomb.png", "exceeds")],
        start=1,
    ):
        with no_hang(), pytest.raises(ImageReadError, match=rf"{name}: cannot decode .*{reason}"):
            dataset[index]
