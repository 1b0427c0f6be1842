"""Field conventions: checksums, published sizes, references, paths and download identity."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from vcat.catalog.fields import (
    ChecksumText,
    Reference,
    RelativePath,
    SourceUrl,
    approximate_bytes,
    parse_checksum,
)
from vcat.urls import download_identity, drive_file_id

checksum = TypeAdapter(ChecksumText)
relative_path = TypeAdapter(RelativePath)
source_url = TypeAdapter(SourceUrl)


def test_checksums_are_normalised_to_lowercase() -> None:
    text = checksum.validate_python("md5:2DA381FFABA9B37F417B06FDC807E426")
    assert text == "md5:2da381ffaba9b37f417b06fdc807e426"
    parsed = parse_checksum(text)
    assert parsed is not None and parsed.algorithm == "md5"
    assert str(parsed) == text


def test_unpublished_is_an_explicit_checksum_value() -> None:
    assert checksum.validate_python("unpublished") == "unpublished"
    assert parse_checksum("unpublished") is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2da381ffaba9b37f417b06fdc807e426", "write 'md5:<32 hex digits>'"),
        ("md5:2da381ff", "expected 32 hex digits, got 8"),
        ("sha256:" + "g" * 64, "malformed"),
        ("sha1:" + "0" * 40, "write 'md5:<32 hex digits>'"),
        ("none", "write 'md5:<32 hex digits>'"),
    ],
)
def test_malformed_checksums_say_what_is_expected(text: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment.replace("'", ".").replace("<", ".")):
        checksum.validate_python(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.3Mb", 2_300_000),
        ("1.11Gb", 1_110_000_000),
        ("5.6G", 5_600_000_000),
        ("1 KiB", 1024),
        ("10.03Gb", 10_030_000_000),
        ("512", 512),
    ],
)
def test_published_sizes(text: str, expected: int) -> None:
    assert approximate_bytes(text) == expected


def test_unreadable_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a size"):
        approximate_bytes("big")


def test_references() -> None:
    assert Reference.parse("croco-crop-metadata:indoorvl") == Reference(
        "croco-crop-metadata", "indoorvl"
    )
    assert Reference.parse("dinov2-vitl14") == Reference("dinov2-vitl14", None)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../up", "a/../../b", "~/data", "a\\b", ""])
def test_relative_paths_stay_inside_the_root(bad: str) -> None:
    with pytest.raises(ValidationError):
        relative_path.validate_python(bad)


@pytest.mark.parametrize("good", ["lists", ".", "database/cutouts", "a/b.c"])
def test_relative_paths_accepted(good: str) -> None:
    assert relative_path.validate_python(good) == good


@pytest.mark.parametrize(
    "url",
    [
        "https://x.org/a.zip",
        "http://127.0.0.1:8000/f",
        "s3://bucket/key",
        "file:///tmp/f",
        "file:/tmp/f",
        "file:.vcat/demo-world/f.tar",
    ],
)
def test_source_url_schemes(url: str) -> None:
    assert source_url.validate_python(url) == url


@pytest.mark.parametrize(
    "url", ["ftp://x.org/a", "https:///nohost", "https://x.org/a b", "file:../outside/f"]
)
def test_bad_source_urls(url: str) -> None:
    with pytest.raises(ValidationError):
        source_url.validate_python(url)


def test_drive_links_are_identified_by_file_id() -> None:
    share = "https://drive.google.com/file/d/1M1NAxkDvlf0Lpxvq2FqrgNSeTMz0JL2Y/view?usp=sharing"
    direct = "https://drive.google.com/uc?export=download&id=1M1NAxkDvlf0Lpxvq2FqrgNSeTMz0JL2Y"
    assert drive_file_id(share) == "1M1NAxkDvlf0Lpxvq2FqrgNSeTMz0JL2Y"
    assert download_identity(share) == download_identity(direct)
    assert drive_file_id("https://example.org/file/d/abc") is None


def test_host_case_does_not_make_a_different_download() -> None:
    assert download_identity("HTTPS://Example.ORG/a/B.zip") == "https://example.org/a/B.zip"
