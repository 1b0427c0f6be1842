"""What a download URL points at, independent of how it is spelt."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

_DRIVE_HOSTS = frozenset({"drive.google.com", "docs.google.com", "drive.usercontent.google.com"})
_DRIVE_PATH_ID = re.compile(r"/file/d/([A-Za-z0-9_-]+)")


def drive_file_id(url: str) -> str | None:
    """The Google Drive file id of a share, ``uc`` or download link; None for other URLs."""
    parts = urlsplit(url)
    if parts.hostname not in _DRIVE_HOSTS:
        return None
    match = _DRIVE_PATH_ID.search(parts.path)
    if match:
        return match.group(1)
    ids = parse_qs(parts.query).get("id")
    return ids[0] if ids else None


def download_identity(url: str) -> str:
    """A key equal for two URLs that download the same file (Drive links by file id)."""
    file_id = drive_file_id(url)
    if file_id is not None:
        return f"gdrive:{file_id}"
    parts = urlsplit(url)
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()
