"""vcat.images: real broken files are classified; nothing leaks a warning or hangs."""

from __future__ import annotations

import os
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from tests.bad_images import broken_images, jpeg, png, png_bomb
from vcat.images import ImageLimits, ImageProblem, check_image, check_image_file


def failure_of(data: bytes, suffix: str, limits: ImageLimits | None = None) -> str:
    with pytest.raises(ImageProblem) as raised:
        check_image(data, suffix, limits)
    return str(raised.value.failure)


@pytest.mark.parametrize("name", sorted(broken_images()))
def test_each_broken_image_has_its_class(name: str) -> None:
    data, expected = broken_images()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Pillow warning would fail the test
        assert failure_of(data, name.rsplit(".", 1)[1]) == expected


def test_good_images_decode_with_their_size() -> None:
    info = check_image(jpeg(0, (320, 240)), "jpg")
    assert (info.format, info.width, info.height) == ("JPEG", 320, 240)
    assert check_image(png(0, (33, 17)), ".PNG").width == 33
    assert check_image(png(0), None).format == "PNG"  # no suffix: no format promised


def test_limits_bound_bytes_and_pixels() -> None:
    data = jpeg(0, (320, 240))
    assert failure_of(data, "jpg", ImageLimits(max_bytes=len(data) - 1)) == "oversized"
    assert check_image(data, "jpg", ImageLimits(max_bytes=len(data))).width == 320
    assert failure_of(data, "jpg", ImageLimits(max_pixels=320 * 240 - 1)) == "decompression_bomb"


def test_pillow_global_limit_is_left_alone() -> None:
    before = Image.MAX_IMAGE_PIXELS
    failure_of(png_bomb(), "png")
    assert before == Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_image(jpeg(0), "jpg")
        warnings.warn("a later warning still warns", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a later warning still warns"]


def test_threads_checking_bombs_together_all_report_them() -> None:
    bombs = [png_bomb(10_000 + index, 10_000) for index in range(16)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ThreadPoolExecutor(8) as pool:
            failures = list(pool.map(lambda data: failure_of(data, "png"), bombs))
    assert failures == ["decompression_bomb"] * 16


def test_files_that_are_not_regular_are_refused_unopened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it for reading would wait for ever
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")  # reading it would never end
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere")
    (tmp_path / "folder.jpg").mkdir()
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "socket.jpg"))
    for name, expected in [
        ("socket.jpg", "not_a_regular_file"),
        ("pipe.jpg", "not_a_regular_file"),
        ("zero.jpg", "not_a_regular_file"),
        ("folder.jpg", "not_a_regular_file"),
        ("dangling.jpg", "unreadable"),
    ]:
        with pytest.raises(ImageProblem) as raised:
            check_image_file(tmp_path / name)
        assert raised.value.failure == expected, name
    listening.close()


def test_a_file_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg(0) + bytes(10_000))
    with pytest.raises(ImageProblem, match="larger than 1,000 bytes"):
        check_image_file(path, ImageLimits(max_bytes=1000))
    for name, (data, expected) in broken_images().items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageProblem) as raised:
            check_image_file(tmp_path / name)
        assert raised.value.failure == expected, name
