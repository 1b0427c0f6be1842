"""The DVC remote as the shared storage of a ``data: remote`` run.

Inputs are stored as DVC stores them (``files/md5/<2>/<30>`` under the remote's URL), so an
input that ``dvc push`` already sent is not sent again, and what a run sends is found by a
later ``dvc push``. The run's own record and the shards' parts live under
``vcat/runs/<run>/`` beside them and are removed after the merge.

The filesystem is the one DVC builds for the remote (its URL, endpoint, credentials and
profile from ``.dvc/config``, ``.dvc/config.local`` and the environment), so a node reaches
it exactly as ``dvc pull`` would there.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vcat.hashing import hash_file
from vcat.stage import StageError

#: Transfers at once: object stores answer many small requests in parallel far faster than
#: one after another, and each transfer is mostly waiting.
TRANSFERS = 16


class RemoteDataError(StageError):
    """The remote cannot be reached or does not hold what the run needs; says what to do."""


class RunStore:
    """Remote ``name``'s filesystem, rooted at the remote's URL."""

    def __init__(self, filesystem: Any, root: str, name: str, url: str = "") -> None:
        self.fs = filesystem
        self.root = root.rstrip("/")
        self.name = name
        self.url = url or root

    @classmethod
    def open(cls, project_root: Path, name: str) -> RunStore:
        """Remote ``name`` of the checkout at ``project_root`` ("" = its default remote)."""
        from dvc.config import Config, ConfigError
        from dvc.fs import get_cloud_fs

        try:
            config = Config(dvc_dir=str(project_root / ".dvc")).read()
        except ConfigError as error:
            raise RemoteDataError(f"{project_root / '.dvc'}: {error}") from None
        chosen = name or config.get("core", {}).get("remote", "")
        if not chosen:
            raise RemoteDataError(
                f"{project_root}: executor data: remote needs a DVC remote; name one in "
                "params.yaml (executor: remote) or set a default with `dvc remote default NAME`"
            )
        if chosen not in config.get("remote", {}):
            raise RemoteDataError(
                f"{project_root}: no DVC remote named {chosen!r} (executor: remote in "
                "params.yaml); `dvc remote list` shows those there are"
            )
        try:
            kind, settings, root = get_cloud_fs(config, name=chosen)
            filesystem = kind(**settings).fs
        except Exception as error:  # DVC's own errors for a remote it cannot build
            raise RemoteDataError(f"DVC remote {chosen!r} cannot be opened: {error}") from None
        return cls(filesystem, root, chosen, str(config["remote"][chosen].get("url", "")))

    @contextlib.contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Errors of the object store while doing ``what`` as one RemoteDataError saying
        what to check (FileNotFoundError passes: callers decide what an absent object means)."""
        try:
            yield
        except (FileNotFoundError, RemoteDataError):
            raise
        except Exception as error:  # botocore, aiohttp and s3fs each have their own
            detail = " ".join(str(error).split())[:300] or type(error).__name__
            raise RemoteDataError(
                f"DVC remote {self.name!r} ({self.url}) failed while {what}: {detail}; check "
                "that its server answers and that its credentials are right (`dvc remote "
                "modify --local` sets them)"
            ) from None

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def object_path(self, md5: str) -> str:
        """Where DVC keeps the file whose content has this MD5."""
        return self.path("files", "md5", md5[:2], md5[2:])

    def run_path(self, run: str, *parts: str) -> str:
        return self.path("vcat", "runs", run, *parts)

    # --- objects ----------------------------------------------------------------------------

    def missing(self, digests: Iterable[str]) -> set[str]:
        """The digests whose object the remote lacks: one listing per two-hex-digit prefix
        (at most 256, however many objects), not one request per object."""
        by_prefix: dict[str, set[str]] = defaultdict(set)
        for digest in digests:
            by_prefix[digest[:2]].add(digest)

        def absent(prefix: str) -> set[str]:
            folder = self.path("files", "md5", prefix)
            try:
                with self._talking(f"listing {folder}"):
                    listed = self.fs.ls(folder, detail=False, refresh=True)
                names = {posixpath.basename(path) for path in listed}
            except FileNotFoundError:
                names = set()
            return {d for d in by_prefix[prefix] if d[2:] not in names}

        missing: set[str] = set()
        for found in self.each(absent, sorted(by_prefix)):
            missing |= found
        return missing

    def upload(self, local: Path, remote: str) -> None:
        """Put ``local`` at ``remote`` (an object store shows an object only once whole)."""
        with self._talking(f"sending {local} to {remote}"):
            self.fs.put_file(os.fspath(local), remote)

    def download(self, remote: str, target: Path, md5: str | None = None) -> None:
        """``remote`` at ``target``, written under a temporary name and renamed; with ``md5``
        the content is checked first (a damaged object never reaches ``target``)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with self._talking(f"fetching {remote}"):
                self.fs.get_file(remote, os.fspath(partial))
            if md5 is not None and hash_file(partial)["md5"] != md5:
                raise RemoteDataError(
                    f"{remote} does not hold the content recorded for {target} (MD5 {md5}); "
                    "the remote's copy is damaged: remove it and run the stage again to send "
                    "it again"
                )
            os.replace(partial, target)
        except FileNotFoundError:
            raise RemoteDataError(
                f"{remote} is not on remote {self.name!r}: it was removed while the run needed "
                "it; run the stage again"
            ) from None
        finally:
            partial.unlink(missing_ok=True)

    # --- records ----------------------------------------------------------------------------

    def write_json(self, remote: str, record: Any) -> None:
        with self._talking(f"writing {remote}"):
            self.fs.pipe_file(remote, (json.dumps(record, indent=1) + "\n").encode())

    def read_json(self, remote: str) -> Any:
        """The JSON record at ``remote``; None when there is none."""
        try:
            with self._talking(f"reading {remote}"):
                return json.loads(self.fs.cat_file(remote))
        except FileNotFoundError:
            return None
        except ValueError as error:
            raise RemoteDataError(f"{remote} is not a readable record: {error}") from None

    def exists(self, remote: str) -> bool:
        with self._talking(f"looking for {remote}"):
            return bool(self.fs.exists(remote))

    def remove(self, remote: str) -> None:
        """Remove ``remote`` and everything under it; nothing there is fine."""
        with contextlib.suppress(FileNotFoundError), self._talking(f"removing {remote}"):
            self.fs.rm(remote, recursive=True)

    # --- folders ----------------------------------------------------------------------------

    def put_folder(self, local: Path, remote: str) -> dict[str, int]:
        """Every file under ``local`` to the same relative path under ``remote``; the size
        of each file sent, by relative path."""
        sizes = {
            path.relative_to(local).as_posix(): path.stat().st_size
            for path in sorted(local.rglob("*"))
            if path.is_file()
        }
        for _ in self.each(
            lambda name: self.upload(local / name, posixpath.join(remote, name)), list(sizes)
        ):
            pass
        return sizes

    def get_folder(
        self, remote: str, names: Iterable[str], local: Path, report: Callable[[int], None]
    ) -> None:
        """The files ``names`` (relative paths) under ``remote`` into ``local``."""

        def fetch(name: str) -> None:
            target = local / name
            self.download(posixpath.join(remote, name), target)
            report(target.stat().st_size)

        for _ in self.each(fetch, list(names)):
            pass

    def each(self, work: Callable[[Any], Any], items: list[Any]) -> Iterable[Any]:
        """``work(item)`` for each of ``items``, ``TRANSFERS`` at a time; their results."""
        if len(items) <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(min(TRANSFERS, len(items))) as pool:
            return list(pool.map(work, items))
