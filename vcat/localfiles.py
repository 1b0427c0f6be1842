"""Which local files a ``file:`` URL may name: the one policy every reader of such URLs uses.

A ``file:`` URL in a catalog entry or a subset list is data, not a command: a list that names
``file:///etc/passwd`` or ``file:.dvc/config.local`` must not get those bytes packed into a
shard and released. So a ``file:`` URL is read only when the file it names, after
percent-decoding once and resolving ``..`` and symlinks, lies below an allowed local root:

- the project's demo world, ``<project>/.vcat/demo-world/``;
- the folders listed under ``local_roots:`` in ``<project>/.vcat/settings.yaml``
  (absolute paths, e.g. a NAS mount);
- the folders in ``$VCAT_LOCAL_ROOTS`` (separated by ``os.pathsep``), for tests and CI.

Even below an allowed root, nothing inside a ``.git``, ``.dvc``, ``.ssh``, ``.aws`` or
``.gnupg`` folder, nor inside a ``.vcat`` folder other than its ``demo-world``, is ever read
(DVC's config and credentials, git's data, vcat's settings). ``file:rel/path`` is relative to
the project root; ``file:///abs`` and ``file://localhost/abs`` are absolute; any other host
is refused. A refusal is a ``FetchFailure`` of class ``forbidden`` whose message names the
URL, the resolved path and how to allow it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import unquote_to_bytes, urlsplit

from vcat.failures import FailureClass, FetchFailure

LOCAL_ROOTS_ENV = "VCAT_LOCAL_ROOTS"
DEMO_WORLD = PurePosixPath(".vcat", "demo-world")
#: Folders whose files no URL may name, wherever they are.
NEVER_READ = frozenset({".git", ".dvc", ".ssh", ".aws", ".gnupg"})
SETTINGS_KEY = "local_roots"


class LocalPathError(ValueError):
    """A ``file:`` URL that cannot name an allowed file, whatever the allowed roots are."""


class LocalFileRefused(FetchFailure):
    """A ``file:`` URL the policy refuses: class ``forbidden``, with advice about local roots
    instead of the server credentials that ``forbidden`` means for remote files."""

    def __init__(self, reason: str) -> None:
        super().__init__(FailureClass.FORBIDDEN, reason)

    @property
    def advice(self) -> str:
        return (
            "vcat reads local files only below the demo world and the allowed local roots, "
            "and never from .dvc, .git or .vcat: if the list or entry is right, allow the "
            "folder with `vcat settings allow DIR`; otherwise fix or drop the line"
        )


def decoded_path(url: str) -> str:
    """The path of a ``file:`` URL, percent-decoded once (undecodable bytes kept as they are
    on disk); raises ``LocalPathError`` for another host or a NUL."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        raise LocalPathError(f"{url!r} is not a file: URL")
    if parts.netloc not in ("", "localhost"):
        raise LocalPathError(
            f"{url!r} names the host {parts.netloc!r}: only files of this machine can be read; "
            "mount the share and name it with file:///mount/point/..."
        )
    path = os.fsdecode(unquote_to_bytes(parts.path))
    if "\0" in path or "\0" in url:
        raise LocalPathError(f"{url!r} holds a NUL character, which no file name can")
    if not path:
        raise LocalPathError(f"{url!r} names no file")
    return path


def never_read_part(relative_parts: tuple[str, ...]) -> str | None:
    """The folder of ``relative_parts`` (a path split in components) that no URL may read
    from, e.g. ``.dvc`` or ``.vcat``; None when there is none."""
    # compared without case: on a case-insensitive disk .DVC/config.local is .dvc's file
    folded = [part.casefold() for part in relative_parts]
    for index, part in enumerate(folded):
        if part in NEVER_READ:
            return relative_parts[index]
        if part == ".vcat" and folded[index + 1 : index + 2] != [DEMO_WORLD.name]:
            return relative_parts[index]
    return None


def check_file_url(url: str) -> None:
    """The checks a catalog entry's ``file:`` URL gets without a filesystem: after decoding,
    a relative one stays inside the project, and none names a file under ``.git``, ``.dvc``
    or ``.vcat`` (other than the demo world); raises ``LocalPathError`` saying why. Whether
    the file lies below an allowed root is checked when it is read (``LocalPolicy``)."""
    path = decoded_path(url)
    parts = PurePosixPath(path).parts
    if not path.startswith("/") and ".." in parts:
        raise LocalPathError(
            f"{url!r} leaves the project: a relative file: URL must stay inside it "
            "(percent-encoded '..' counts too); use file:///absolute/path for files elsewhere"
        )
    refused = never_read_part(parts)
    if refused is not None:
        raise LocalPathError(
            f"{url!r} names a file inside {refused}/, which vcat never reads through a URL "
            "(configuration, credentials and settings live there)"
        )


@dataclass(frozen=True)
class LocalPolicy:
    """The allowed local roots of one project (all resolved), and where they come from."""

    project_root: Path | None
    roots: tuple[Path, ...]
    settings_file: Path | None

    def resolve(self, url: str) -> Path:
        """The real path ``url`` names, when it may be read; else ``FetchFailure``
        (class ``forbidden``) naming the URL, the resolved path and how to allow it."""
        try:
            path = decoded_path(url)
        except LocalPathError as exc:
            raise LocalFileRefused(str(exc)) from None
        if not path.startswith("/"):
            if self.project_root is None:
                raise LocalFileRefused(
                    f"{url} is relative to a project, and there is none here: run inside the "
                    "checkout, or name the file with file:///absolute/path",
                )
            path = os.path.join(self.project_root, path)
        resolved = Path(os.path.realpath(path))
        refused = never_read_part(resolved.parts)
        if refused is not None:
            raise LocalFileRefused(
                f"{url} names {resolved}, inside a {refused} folder, which vcat never reads "
                "through a URL (configuration, credentials and settings live there); "
                "a catalog entry or list that names it is hostile or mistaken",
            )
        if not any(resolved.is_relative_to(root) for root in self.roots):
            raise LocalFileRefused(
                f"{url} names {resolved}, outside the folders local files may be read from "
                f"({self._roots_text()}); to allow it, list its folder under "
                f"{SETTINGS_KEY}: in {self._settings_text()} (`vcat settings allow DIR`) or in "
                f"${LOCAL_ROOTS_ENV}",
            )
        return resolved

    def _roots_text(self) -> str:
        return ", ".join(str(root) for root in self.roots) or "none"

    def _settings_text(self) -> str:
        return str(self.settings_file) if self.settings_file else ".vcat/settings.yaml"


def policy_for(project_root: Path | None) -> LocalPolicy:
    """The policy of ``project_root`` (None: outside any project, only ``$VCAT_LOCAL_ROOTS``).

    Raises ``LocalFileRefused`` when the settings file is invalid, so that nothing is read
    under roots that cannot be known. The resolved roots are kept while the settings and the
    environment stay the same, so a list of millions of lines resolves them once.
    """
    from vcat.problems import CatalogError
    from vcat.settings import load_settings, settings_path

    settings_file: Path | None = None
    local_roots: tuple[str, ...] = ()
    if project_root is not None:
        settings_file = settings_path(project_root)
        try:
            local_roots = load_settings(project_root).local_roots
        except CatalogError as exc:
            raise LocalFileRefused(
                f"local files cannot be checked: {exc.problems[0].format()}"
            ) from None
    return _policy(project_root, settings_file, local_roots, os.environ.get(LOCAL_ROOTS_ENV, ""))


@lru_cache(maxsize=16)
def _policy(
    project_root: Path | None,
    settings_file: Path | None,
    local_roots: tuple[str, ...],
    env_roots: str,
) -> LocalPolicy:
    roots: list[str] = [part for part in env_roots.split(os.pathsep) if part]
    project = Path(os.path.realpath(project_root)) if project_root is not None else None
    if project is not None:
        roots.append(str(project / DEMO_WORLD))
    roots.extend(local_roots)
    for root in roots:
        if not os.path.isabs(os.path.expanduser(root)):
            raise LocalFileRefused(
                f"local root {root!r} is not an absolute path: write the full path from '/' "
                f"(in ${LOCAL_ROOTS_ENV} or {SETTINGS_KEY}: of the settings)",
            )
    resolved = tuple(
        dict.fromkeys(Path(os.path.realpath(os.path.expanduser(root))) for root in roots)
    )
    return LocalPolicy(project, resolved, settings_file)
