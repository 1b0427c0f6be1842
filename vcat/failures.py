"""Why a file is not what the catalog says, and what the user should do about it.

One vocabulary for downloads, archives, manual trees and manifests, so ``vcat status``,
``vcat fetch`` and ``vcat verify`` report the same class for the same fault.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

_HTML_START = re.compile(rb"^\s*(<!doctype\s+html|<html|<head|<body)", re.IGNORECASE)
_SNIFF_BYTES = 1024


class FailureClass(StrEnum):
    UNREACHABLE = "unreachable"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    QUOTA_EXCEEDED = "quota_exceeded"
    HTML_INSTEAD_OF_FILE = "html_instead_of_file"
    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    UPSTREAM_CHANGED = "upstream_changed"
    CORRUPT_ARCHIVE = "corrupt_archive"
    UNSAFE_ARCHIVE = "unsafe_archive"
    MISSING = "missing"
    UNEXPECTED = "unexpected"
    NOT_A_FILE = "not_a_file"


ADVICE: dict[FailureClass, str] = {
    FailureClass.UNREACHABLE: (
        "check the network and the URL, then run the same command again; finished bytes are kept"
    ),
    FailureClass.NOT_FOUND: (
        "the file is gone from this URL: look for a new link on the dataset's homepage and "
        "update the catalog entry"
    ),
    FailureClass.FORBIDDEN: (
        "the server wants credentials or a granted permission: log in or request access as the "
        "entry's access instructions say, or set the S3 credentials in the environment"
    ),
    FailureClass.QUOTA_EXCEEDED: (
        "Google Drive's download quota for this file is spent: wait (usually 24 h) and retry, or "
        "copy the file into your own Drive and point a local catalog override at the copy"
    ),
    FailureClass.HTML_INSTEAD_OF_FILE: (
        "the server answered with a web page (a login, interstitial or error page) instead of "
        "the file: open the URL in a browser to see what it asks for; the page is quarantined"
    ),
    FailureClass.TRUNCATED: (
        "fewer bytes arrived than expected: run the same command again to resume"
    ),
    FailureClass.OVERSIZED: (
        "more bytes arrived than the catalog's size: the link serves another file; compare it "
        "with the guide and fix the entry"
    ),
    FailureClass.CHECKSUM_MISMATCH: (
        "the size is right but the content differs: fetch again; if it fails the same way the "
        "upstream file changed silently or the catalog's checksum is wrong — report it"
    ),
    FailureClass.UPSTREAM_CHANGED: (
        "the server now serves a different file (size or ETag changed since the entry was "
        "written): check the upstream release notes and update the entry's size and checksum"
    ),
    FailureClass.CORRUPT_ARCHIVE: (
        "the archive cannot be read to the end: delete it and fetch again; if it fails again the "
        "upstream file is damaged"
    ),
    FailureClass.UNSAFE_ARCHIVE: (
        "the archive holds entries that would escape the destination or expand beyond the "
        "limits; nothing was extracted — inspect it by hand before trusting it"
    ),
    FailureClass.MISSING: "the file is not there: fetch or copy it, then verify again",
    FailureClass.NOT_A_FILE: (
        "a symbolic link, FIFO, socket or device stands where a file belongs (or a file where a "
        "link belongs); it was not opened: remove it, then fetch or copy the file again"
    ),
    FailureClass.UNEXPECTED: (
        "the file is not in the manifest or layout: remove it, or rebuild the manifest if it "
        "belongs there"
    ),
}


class FetchFailure(Exception):
    """A classified failure of one file; ``str()`` gives the reason and what to do next."""

    def __init__(self, failure: FailureClass, reason: str) -> None:
        self.failure = FailureClass(failure)
        self.reason = reason
        super().__init__(f"{self.failure}: {reason}")

    @property
    def advice(self) -> str:
        return ADVICE[self.failure]

    def describe(self) -> str:
        """The class, the reason and the advice, as one message for a person."""
        return f"{self.failure}: {self.reason} — {self.advice}"


def looks_like_html(head: bytes) -> bool:
    """True when the first bytes of a file or body start an HTML document (a web page saved
    or served where data was expected)."""
    return bool(_HTML_START.match(head.removeprefix(b"\xef\xbb\xbf")[:_SNIFF_BYTES]))


def file_is_html(path: Path) -> bool:
    """``looks_like_html`` of the file's first bytes (``OSError`` when it cannot be read)."""
    with path.open("rb") as stream:
        return looks_like_html(stream.read(_SNIFF_BYTES))
