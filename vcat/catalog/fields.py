"""Field types shared by catalog entries: names, references, URLs, checksums, sizes, paths.

Each type validates one textual convention and says, when it fails, what a valid value
looks like. They stay plain strings once validated so that entries round-trip unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import PurePosixPath
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from vcat.localfiles import LocalPathError, check_file_url

#: Longest source, subset or step name: it becomes part of file names in the work area.
MAX_PART_NAME = 128
PART_NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_PART_NAME - 1}}}$"
REF_PATTERN = r"^[a-z0-9][a-z0-9._-]*(:[A-Za-z0-9][A-Za-z0-9._-]*)?$"
CHECKSUM_PATTERN = r"^(md5:[0-9a-fA-F]{32}|sha256:[0-9a-fA-F]{64}|unpublished)$"
SIZE_TEXT_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)([Bb]?)\s*$"

UNPUBLISHED = "unpublished"
_HEX_LENGTHS = {"md5": 32, "sha256": 64}


def _pattern_text(pattern: str, what: str) -> Any:
    """A string type matching ``pattern``; a mismatch reads "'x' is not a valid <what>"."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{_shorten(value)!r} is not a valid {what}")
        return value

    return Annotated[
        str, AfterValidator(check), WithJsonSchema({"type": "string", "pattern": pattern})
    ]


PartName = _pattern_text(
    PART_NAME_PATTERN,
    "name: use up to 128 letters, digits, '.', '_' and '-', starting with a letter or digit",
)
Ref = _pattern_text(
    REF_PATTERN,
    "reference: write 'entry' or 'entry:part', where part names a source or subset of that entry",
)


@dataclass(frozen=True)
class Reference:
    """A parsed ``entry`` or ``entry:part`` reference."""

    entry: str
    part: str | None

    @classmethod
    def parse(cls, text: str) -> Reference:
        entry, _, part = text.partition(":")
        return cls(entry, part or None)


def _url_checker(schemes: frozenset[str]):
    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            allowed = ", ".join(sorted(schemes))
            raise ValueError(f"{value!r} is not a URL with one of the schemes {allowed}")
        if parts.scheme != "file" and not parts.netloc:
            raise ValueError(f"{value!r} has no host")
        if parts.scheme == "file":
            # decoded as the reader decodes it, so %2e%2e cannot pass for a name (see
            # vcat.localfiles, which also checks the allowed roots when the file is read)
            try:
                check_file_url(value)
            except LocalPathError as exc:
                raise ValueError(str(exc)) from None
        if any(ch.isspace() for ch in value):
            raise ValueError(f"{value!r} contains white space; percent-encode it")
        return value

    return check


WebUrl = Annotated[
    str,
    AfterValidator(_url_checker(frozenset({"http", "https"}))),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://"}),
]
SourceUrl = Annotated[
    str,
    AfterValidator(_url_checker(frozenset({"http", "https", "s3", "file"}))),
    WithJsonSchema({"type": "string", "pattern": "^((https?|s3)://|file:)"}),
]


@dataclass(frozen=True)
class Checksum:
    """A published digest: ``algorithm`` is ``md5`` or ``sha256``, ``hexdigest`` lowercase."""

    algorithm: str
    hexdigest: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


def parse_checksum(text: str) -> Checksum | None:
    """The digest written as ``md5:<hex>`` or ``sha256:<hex>``; None for ``unpublished``."""
    if text == UNPUBLISHED:
        return None
    algorithm, _, digest = text.partition(":")
    return Checksum(algorithm, digest.lower())


def _check_checksum(value: str) -> str:
    if value == UNPUBLISHED:
        return value
    algorithm, sep, digest = value.partition(":")
    expected = _HEX_LENGTHS.get(algorithm)
    if not sep or expected is None:
        raise ValueError(
            f"{value!r} is not a checksum: write 'md5:<32 hex digits>', "
            "'sha256:<64 hex digits>', or 'unpublished' when the source publishes none"
        )
    if len(digest) != expected or not re.fullmatch(r"[0-9a-fA-F]+", digest):
        raise ValueError(
            f"{algorithm} digest {digest!r} is malformed: expected {expected} hex digits, "
            f"got {len(digest)} characters"
        )
    return f"{algorithm}:{digest.lower()}"


ChecksumText = Annotated[
    str,
    AfterValidator(_check_checksum),
    WithJsonSchema({"type": "string", "pattern": CHECKSUM_PATTERN}),
]

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def _check_date(value: str) -> str:
    try:
        parsed = date.fromisoformat(value) if re.match(DATE_PATTERN, value) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"{_shorten(value)!r} is not a date: write YYYY-MM-DD, in quotes")
    return value


#: A calendar day written ``"YYYY-MM-DD"`` (quoted, so that YAML keeps it text).
IsoDate = Annotated[
    str,
    AfterValidator(_check_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]

_SIZE_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_BINARY_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}

#: No single file is larger (1 PiB): a bigger size is a typo, or bits read as bytes.
MAX_FILE_SIZE = 2**50
#: Counts, bounds and dimensions fit in a signed 64-bit integer, as every consumer expects.
MAX_COUNT = 2**63 - 1
#: Longest file or folder name most file systems accept (ext4, XFS, APFS, NTFS), in bytes.
MAX_NAME_BYTES = 255
#: Longest relative path an entry may name, in bytes (Linux's PATH_MAX is 4096 with the root).
MAX_PATH_BYTES = 1024


def approximate_bytes(size_text: str) -> int:
    """The byte count a published size such as ``2.3Mb``, ``5.6G`` or ``1.5 GiB`` stands for.

    Guides write "Mb" for megabytes, so a lowercase ``b`` is read as bytes, not bits. Raises
    ``ValueError`` (never another error) for text that is no size or is beyond ``MAX_FILE_SIZE``.
    """
    match = re.match(SIZE_TEXT_PATTERN, size_text)
    if match is None:
        raise ValueError(f"{size_text!r} is not a size such as '2.3Mb', '5.6G' or '1.5 GiB'")
    number, prefix, binary, _ = match.groups()
    scale = (_BINARY_UNITS if binary else _SIZE_UNITS)[prefix]
    # Decimal, not float: a thousand-digit number must be refused, not overflow
    value = Decimal(number) * scale
    if value > MAX_FILE_SIZE:
        raise ValueError(
            f"{_shorten(size_text)!r} is larger than any single file (at most 1 PiB); "
            "check the number and its unit"
        )
    return int(value.to_integral_value(ROUND_HALF_EVEN))


def _shorten(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text):,} characters)"


def _check_size_text(value: str) -> str:
    approximate_bytes(value)
    return value


SizeText = Annotated[
    str,
    AfterValidator(_check_size_text),
    WithJsonSchema({"type": "string", "pattern": SIZE_TEXT_PATTERN}),
]


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, list | tuple):
        return "a list"
    return "a mapping" if isinstance(value, dict) else type(value).__name__


def _whole_number(value: object) -> object:
    # pydantic's lax mode reads "12" and true as 12 and 1; a catalog states numbers exactly
    if type(value) is not int:
        quoted = isinstance(value, str) and value.strip().isdigit()
        raise ValueError(
            f"{_shorten(repr(value))} is {_type_name(value)}, not a whole number"
            + ("; write it without quotes" if quoted else "")
        )
    return value


def _real_number(value: object) -> object:
    if type(value) not in (int, float):
        raise ValueError(f"{_shorten(repr(value))} is {_type_name(value)}, not a number")
    return value


def whole_number(low: int, high: int = MAX_COUNT) -> Any:
    """An ``int`` written as a YAML integer (not text, not a boolean) in ``[low, high]``."""
    return Annotated[int, BeforeValidator(_whole_number), Field(ge=low, le=high)]


#: A file's exact size in bytes.
ByteSize = whole_number(1, MAX_FILE_SIZE)
#: A count, bound or dimension.
Amount = whole_number(0)
#: A positive dimension (pixels, tokens, patch size).
Positive = whole_number(1)
#: A finite number written as a YAML number.
Number = Annotated[float, BeforeValidator(_real_number), Field(allow_inf_nan=False)]

#: Characters a path may not hold: controls (NUL, ESC, tab, newline, DEL, C1) and backslash.
_PATH_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def _check_relative_path(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or value.startswith("~"):
        raise ValueError(f"{_shorten(value)!r} must be a relative path inside the dataset root")
    if ".." in path.parts:
        raise ValueError(f"{_shorten(value)!r} must not contain '..'")
    bad = _PATH_FORBIDDEN.search(value)
    if bad is not None and bad.group() == "\\":
        raise ValueError(f"{_shorten(value)!r} must use '/' as separator, not '\\'")
    if bad is not None:
        raise ValueError(
            f"{_shorten(value)!r} holds the control character {bad.group()!r}, "
            "which no portable file name holds"
        )
    if len(value.encode()) > MAX_PATH_BYTES:
        raise ValueError(
            f"{_shorten(value)!r} is {len(value.encode()):,} bytes long; "
            f"paths are limited to {MAX_PATH_BYTES:,} bytes"
        )
    for part in path.parts:
        if len(part.encode()) > MAX_NAME_BYTES:
            raise ValueError(
                f"{_shorten(part)!r} is {len(part.encode()):,} bytes long; file systems "
                f"accept names of at most {MAX_NAME_BYTES} bytes"
            )
    return value


RelativePath = Annotated[
    str,
    AfterValidator(_check_relative_path),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_PATH_BYTES,
            "pattern": r"^(?![/~])(?!.*(^|/)\.\.(/|$))[^\\\x00-\x1f\x7f-\x9f]+$",
        }
    ),
]


def _check_file_name(value: str) -> str:
    _check_relative_path(value)
    if "/" in value:
        raise ValueError(f"{_shorten(value)!r} must be a file name without directories")
    if value in (".", ".."):
        raise ValueError(f"{value!r} names a folder, not a file: write the file's name")
    return value


FileName = Annotated[
    str,
    AfterValidator(_check_file_name),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": MAX_NAME_BYTES,
            "pattern": r"^(?!\.\.?$)[^/\\~\x00-\x1f\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]*$",
        }
    ),
]


def normalised_path(text: str) -> str:
    """``text`` as the file system will see it: ``a/./b/`` -> ``a/b``, ``.`` -> ``""``."""
    return "/".join(part for part in PurePosixPath(text).parts if part != ".")
