"""An operating-system error (full disk, name too long, no permission, ...) as one line for a
person: the file, what the system said and what to do, instead of a traceback.

Commands catch the errors they expect; this is the last word on the ones nobody can (a disk
that fills while a shard is written, a quota, a read-only mount), used by the `vcat` entry
point and by every `vcat stage` command.
"""

from __future__ import annotations

import errno
import io
import os
from types import TracebackType

from vcat.regular import NotRegularFile

ADVICE: dict[int, str] = {
    errno.ENOSPC: "free space on that file system, or write elsewhere, then run the command "
    "again (finished work is kept)",
    errno.EDQUOT: "your disk quota is spent: free space or ask for more, then run the command "
    "again (finished work is kept)",
    errno.EFBIG: "the file is larger than this system allows (see `ulimit -f`): raise the "
    "limit or write elsewhere",
    errno.ENAMETOOLONG: "the name is too long for the file system (at most 255 bytes per "
    "name, 4,096 per path): use a shorter name or a shallower folder",
    errno.EROFS: "the file system is read-only: write elsewhere or remount it read-write",
    errno.EACCES: "check the permissions of the file and of its folder",
    errno.EPERM: "the system does not allow this operation on that file: check its "
    "permissions and attributes",
    errno.EMFILE: "too many open files: raise the limit (`ulimit -n`) and run the command again",
    errno.ENFILE: "the system has too many open files: close some programs and run it again",
    errno.ENOENT: "check that the path exists and is spelled right",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "the path is a folder where a file was expected: check the path",
    errno.EEXIST: "the path already exists: remove it or choose another",
    errno.ELOOP: "the path has a symbolic link loop: fix or remove the link",
    errno.EIO: "the device reported an input/output error: check the disk (dmesg) and copy "
    "the data elsewhere",
    errno.EXDEV: "the rename crosses file systems: keep both paths on one file system",
}
DEFAULT_ADVICE = "check the file and the file system, then run the command again"


def _written_file(traceback: TracebackType | None) -> str | None:
    """The name of the file that the innermost frame was writing, when a write failed
    (``file.write`` raises without naming its file)."""
    frames = []
    while traceback is not None:
        frames.append(traceback.tb_frame)
        traceback = traceback.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            # the stream itself, or one an object keeps (``self.stream`` in a writer class)
            owned = vars(value).values() if hasattr(value, "__dict__") else ()
            for candidate in (value, *owned):
                name = _writable_name(candidate)
                if name is not None:
                    return name
    return None


def _writable_name(value: object) -> str | None:
    if not isinstance(value, io.IOBase):  # closed or not: a `with` closes it on the way out
        return None
    name = getattr(value, "name", None)
    mode = getattr(value, "mode", "")
    if isinstance(name, str) and isinstance(mode, str) and any(flag in mode for flag in "wax+"):
        return name
    return None


def os_error_message(error: OSError) -> str:
    """``<file>: <what the system said>; <what to do>`` for ``error`` (one line)."""
    if isinstance(error, NotRegularFile):
        return _printable(str(error))
    filename = error.filename
    if filename is None:
        filename = _written_file(error.__traceback__)
    if isinstance(filename, bytes):
        filename = os.fsdecode(filename)
    where = f"{filename}: " if filename is not None else ""
    if error.filename2 is not None:
        where = f"{filename} -> {os.fsdecode(error.filename2)}: "
    said = error.strerror or str(error) or type(error).__name__
    advice = ADVICE.get(error.errno or 0, DEFAULT_ADVICE)
    return _printable(f"{where}{said}; {advice}")


def _printable(text: str) -> str:
    """``text`` with control characters (a newline or terminal escape in a file name) shown
    as escapes, so the message stays one line and cannot drive the terminal."""
    return "".join(
        repr(character)[1:-1] if ord(character) < 32 or ord(character) == 127 else character
        for character in text
    )
