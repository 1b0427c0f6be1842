"""Files that hold credentials: readable by their owner only, from the moment they exist.

``write_private`` writes to a temporary file that ``mkstemp`` creates with mode 600 in the
target's folder, then renames it over the target, so there is never a moment when the secret
is in a file that others can read, nor a half-written file at the final path.
``tighten`` takes group and other permissions off a file that an older version (or another
program) wrote too openly.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def write_private(path: Path, data: bytes | str) -> None:
    """Replace ``path`` atomically with ``data``; the file has mode 600 from its creation."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 600
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def tighten(path: Path, mode: int = PRIVATE_MODE) -> int | None:
    """Take group and other permissions off ``path``; its old mode when it changed, else None
    (also when it does not exist)."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if current & 0o077 == 0:
        return None
    path.chmod(current & mode)
    return current


def private_dir(path: Path) -> None:
    """Create folder ``path`` (and its parents) if needed; the folder itself gets mode 700."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    tighten(path, PRIVATE_DIR_MODE)
