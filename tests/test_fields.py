"""Field conventions: checksums, published sizes, references, paths and download identity."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from vcat.catalog.fields import (
    MAX_FILE_SIZE,
    Amount,
    ByteSize,
    ChecksumText,
    FileName,
    IsoDate,
    Reference,
    RelativePath,
    SourceUrl,
    approximate_bytes,
    normalised_path,
    parse_checksum,
)
from vcat.catalog.values import unsafe_values
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


@pytest.mark.parametrize(
    "text", ["9" * 400 + "T", "1025TiB", "1" + "0" * 16, "1" + "0" * 20 + " B"]
)
def test_absurd_published_sizes_are_value_errors(text: str) -> None:
    # a float overflowed on 400 digits: every catalog command crashed on such an entry
    with pytest.raises(ValueError, match="larger than any single file"):
        approximate_bytes(text)


def test_the_largest_published_size_is_exact() -> None:
    assert approximate_bytes("1024 TiB") == MAX_FILE_SIZE
    assert approximate_bytes("0.0000001 B") == 0
    assert approximate_bytes("1.5" + "0" * 5000 + "1 TB") == 1_500_000_000_000


file_name = TypeAdapter(FileName)
whole = TypeAdapter(Amount)
size = TypeAdapter(ByteSize)
day = TypeAdapter(IsoDate)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (".", "names a folder"),
        ("..", "must not contain '..'"),
        ("/etc/passwd", "relative path"),
        ("a/b", "without directories"),
        ("a\x00b", "control character '\\x00'"),
        ("a\nb", "control character '\\n'"),
        ("a\x1b[31m", "control character '\\x1b'"),
        ("a\\b", "'/' as separator"),
        ("x" * 256, "at most 255 bytes"),
        ("€" * 86, "258 bytes long"),
        ("", "relative path"),
    ],
)
def test_file_names_that_cannot_be_files(bad: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(fragment)):
        file_name.validate_python(bad)


@pytest.mark.parametrize("good", ["a.zip", ".hidden", "x" * 255, "é" * 127, "name with space"])
def test_file_names_accepted(good: str) -> None:
    assert file_name.validate_python(good) == good


@pytest.mark.parametrize("bad", ["a/" + "b" * 256, "/".join(["d" * 250] * 5), "a/\tb"])
def test_relative_paths_within_file_system_limits(bad: str) -> None:
    with pytest.raises(ValidationError):
        relative_path.validate_python(bad)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("12", "'12' is a string, not a whole number; write it without quotes"),
        (True, "True is a boolean"),
        (1.0, "1.0 is a decimal number"),
        ([1], "is a list"),
        (-1, "greater than or equal to 0"),
        (2**63, "less than or equal to"),
    ],
)
def test_numbers_are_numbers(value: object, fragment: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(fragment)):
        whole.validate_python(value)


def test_sizes_are_positive_and_at_most_one_pebibyte() -> None:
    assert size.validate_python(MAX_FILE_SIZE) == MAX_FILE_SIZE
    for bad in (0, MAX_FILE_SIZE + 1, "1"):
        with pytest.raises(ValidationError):
            size.validate_python(bad)


@pytest.mark.parametrize("bad", ["2024-02-30", "24-02-01", "2024-2-1", "yesterday", ""])
def test_dates(bad: str) -> None:
    assert day.validate_python("2024-02-29") == "2024-02-29"
    with pytest.raises(ValidationError, match="is not a date"):
        day.validate_python(bad)


def test_normalised_paths() -> None:
    assert normalised_path("a/./b/") == "a/b"
    assert normalised_path(".") == ""
    assert normalised_path("./lists") == "lists"


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"title": "a\x1b[31m"}, ("title",)),
        ({"sources": [{"name": "x"}, {"notes": "ring\x07"}]}, ("sources", 1, "notes")),
        ({"params": {"k\x9bey": 1}}, ("params", "k\x9bey")),
        ({"note": "over\rwrite"}, ("note",)),
        ({"note": "\u202eexe.txt"}, ("note",)),
        ({"note": "line\u2028break"}, ("note",)),
        ({"value": float("inf")}, ("value",)),
        ({"value": float("nan")}, ("value",)),
    ],
)
def test_unsafe_values_are_found_where_they_are(value: dict, where: tuple) -> None:
    [(loc, _)] = list(unsafe_values(value))
    assert loc == where


@pytest.mark.parametrize(
    "value", ["lines\nand\ttabs", "[red]markup[/red]", "\\u001b spelt out", "NaN in prose", 1e308]
)
def test_safe_values(value: object) -> None:
    assert list(unsafe_values({"text": value, "list": [value]})) == []
