"""What a release must never carry: outputs outside the data folders, and bytes that came from
configuration, credentials or settings.

``vcat.localfiles`` keeps stages from reading such files through a ``file:`` URL; this is the
second line of defence, run by ``vcat release`` before anything is pushed:

- an output whose path is outside ``data/``, ``models/`` and ``metrics/`` (or inside a
  ``.dvc``, ``.git`` or ``.vcat`` folder anywhere) is refused by its path;
- every file the push would send is read once and refused when it holds a secret value
  (the credentials in ``.dvc/config.local``, ``.dvc/config`` and ``~/.aws/credentials``, and
  the AWS variables of the environment), or when it, or a member of a tar (a shard), is byte
  for byte one of the sensitive files: DVC's and git's config, vcat's settings, and the usual
  credential files of this machine (``~/.aws/credentials``, ``~/.netrc``, ``/etc/passwd``, ...).

Secrets are never printed: a finding names the output, the file (and tar member) and where
the secret or the file comes from.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from vcat.localfiles import DEMO_WORLD, never_read_part

#: The top-level folders whose outputs a release may push.
DATA_FOLDERS = ("data", "models", "metrics")
#: Config keys whose values are secrets, in DVC's config files.
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|access_key|credential|private_key|sas|account_key)",
    re.IGNORECASE,
)
_CONFIG_LINE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*(.+?)\s*$")
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON",
)
_HOST_FILES = (
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "~/.netrc",
    "~/.git-credentials",
    "~/.aws/credentials",
    "~/.aws/config",
    "~/.docker/config.json",
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ed25519",
    "~/.config/gcloud/application_default_credentials.json",
)
#: Shorter values and files match too much by chance to be evidence of anything.
_MIN_SECRET = 8
_MIN_FILE = 16
_MAX_FILE = 1 << 20
_CHUNK = 1 << 20


def path_refusal(output: str) -> str | None:
    """Why ``output`` (repository-relative, or absolute when outside the repository) may not
    be pushed at all; None when its path is fine."""
    path = PurePosixPath(output)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return "it lies outside the project"
    hidden = never_read_part(path.parts)
    if hidden is not None or path.parts[0] == ".vcat":
        where = hidden or ".vcat"
        return f"it lies inside {where}/, where configuration, credentials and settings live"
    if path.parts[0] not in DATA_FOLDERS:
        folders = ", ".join(f"{name}/" for name in DATA_FOLDERS)
        return f"it lies outside the data folders ({folders})"
    return None


@dataclass(frozen=True)
class Fingerprints:
    """What a pushed file must not hold: secret values and the digests of sensitive files,
    each with a description of where it comes from (never the secret itself)."""

    secrets: dict[bytes, str]
    files: dict[tuple[int, str], str]  # (size, md5) -> which file

    @property
    def sizes(self) -> frozenset[int]:
        return frozenset(size for size, _ in self.files)


@dataclass(frozen=True)
class Leak:
    """A pushed file that holds something it must not."""

    output: str
    name: str  # the file, with ``:member`` for a member of a tar
    what: str

    def describe(self) -> str:
        return f"{self.name} holds {self.what}"


def fingerprints(project_root: Path) -> Fingerprints:
    """The secrets and sensitive files of this checkout and machine."""
    secrets: dict[bytes, str] = {}
    configs = (
        project_root / ".dvc" / "config.local",
        project_root / ".dvc" / "config",
        Path(os.path.expanduser("~/.aws/credentials")),
    )
    for config in configs:
        for key, value in _config_values(config):
            if _SECRET_KEY.search(key) and len(value) >= _MIN_SECRET:
                secrets.setdefault(value.encode(), f"the {key} of {_shown(config, project_root)}")
    for name in _SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value) >= _MIN_SECRET:
            secrets.setdefault(value.encode(), f"the value of ${name}")
    files: dict[tuple[int, str], str] = {}
    for path in _sensitive_files(project_root):
        digest = _small_file_digest(path)
        if digest is not None:
            files.setdefault(digest, f"the bytes of {_shown(path, project_root)}")
    return Fingerprints(secrets, files)


def find_leaks(output: str, files: Iterable[tuple[str, str]], prints: Fingerprints) -> list[Leak]:
    """Every leak in ``files`` (``(name, path to read)`` pairs of one output)."""
    found = []
    for name, path in files:
        try:
            found.extend(
                Leak(output, where, what) for where, what in _file_leaks(name, path, prints)
            )
        except OSError as exc:
            found.append(Leak(output, name, f"nothing checkable: it cannot be read ({exc})"))
    return found


def _file_leaks(name: str, path: str, prints: Fingerprints) -> Iterator[tuple[str, str]]:
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size in prints.sizes:
            what = prints.files.get((size, _md5(stream)))
            if what is not None:
                yield name, what
            stream.seek(0)
        for what in _secrets_in(stream, prints.secrets):
            yield name, what
        if prints.files and tarfile.is_tarfile(path):
            stream.seek(0)
            yield from _member_leaks(name, stream, prints)


def _member_leaks(name: str, stream: BinaryIO, prints: Fingerprints) -> Iterator[tuple[str, str]]:
    sizes = prints.sizes
    try:
        with tarfile.open(fileobj=stream, mode="r:") as archive:
            for member in archive:
                if member.isfile() and member.size in sizes:
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    what = prints.files.get((member.size, _md5(extracted)))
                    if what is not None:
                        yield f"{name}:{member.name}", what
    except tarfile.TarError:
        return  # not a tar after all: its bytes were scanned as they are


def _secrets_in(stream: BinaryIO, secrets: dict[bytes, str]) -> Iterator[str]:
    """Each secret found in the stream (once), read in chunks that overlap by the longest
    secret so that none is missed across a boundary."""
    if not secrets:
        return
    overlap = max(map(len, secrets)) - 1
    remaining = dict(secrets)
    tail = b""
    while remaining and (chunk := stream.read(_CHUNK)):
        window = tail + chunk
        for secret in [s for s in remaining if s in window]:
            yield remaining.pop(secret)
        tail = window[-overlap:] if overlap else b""


def _md5(stream: BinaryIO) -> str:
    digest = hashlib.md5()
    while block := stream.read(_CHUNK):
        digest.update(block)
    return digest.hexdigest()


def _small_file_digest(path: Path) -> tuple[int, str] | None:
    try:
        if not path.is_file() or not _MIN_FILE <= path.stat().st_size <= _MAX_FILE:
            return None
        data = path.read_bytes()
    except OSError:
        return None  # unreadable here, so no stage could have read it either
    return len(data), hashlib.md5(data).hexdigest()


def _sensitive_files(project_root: Path) -> Iterator[Path]:
    dvc = project_root / ".dvc"
    if dvc.is_dir():
        yield from (p for p in dvc.iterdir() if p.is_file() and p.name != ".gitignore")
    git = project_root / ".git"
    yield git / "config"
    vcat = project_root / ".vcat"
    if vcat.is_dir():
        demo = project_root / DEMO_WORLD
        for folder, children, names in os.walk(vcat):
            children[:] = [c for c in children if Path(folder, c) != demo]
            yield from (Path(folder, name) for name in names)
    yield from (Path(os.path.expanduser(name)) for name in _HOST_FILES)


def _config_values(config: Path) -> Iterator[tuple[str, str]]:
    try:
        text = config.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        match = _CONFIG_LINE.match(line)
        if match:
            key, value = match.groups()
            yield key, value.strip("'\"")


def _shown(path: Path, project_root: Path) -> str:
    try:
        return str(path.relative_to(project_root))
    except ValueError:
        return str(path)
