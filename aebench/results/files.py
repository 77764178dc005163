"""Writing files so that a crash never leaves half of one, and no planted link is written through.

A file is written under a temporary name of its own and renamed over the real one: readers see the
old file or the new one. The temporary name is unpredictable and created exclusively, never through
a symbolic link; the rename replaces a link planted at the real name, not the file it points to.
The folders along the way are the caller's to check (``aebench.results.confined``): a link
there would carry the write elsewhere.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

# Links are never followed where aebench creates files (where the platform allows saying so).
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FolderError(ValueError):
    """A results folder or file that aebench cannot use; ``str(error)`` is the one line to show."""


def cannot_write(path: Path, exc: OSError) -> FolderError:
    """``path: cannot write: No space left on device``: an ``OSError`` as the one line to show."""
    if exc.errno == errno.ELOOP:
        why = "it is a symbolic link, and aebench does not write through links"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"{exc.strerror or exc} (a read-only folder?); choose another folder"
    else:
        why = exc.strerror or str(exc)
    return FolderError(f"{path}: cannot write: {why}")


# The name ``write_atomically`` gives its temporary file: ``.<name>.<pid>.<token>.tmp``, the pid
# telling a killed write's leftover (``confined.remove_stale_temporaries``) from a live one.
TEMPORARY = re.compile(r"\..+\.(\d+)\.[0-9a-f]{12}\.tmp")  # fullmatch


def _token() -> str:
    return secrets.token_hex(6)  # 12 hex digits, as TEMPORARY reads them


def _create_temporary(path: Path) -> Path:
    """A new empty file beside ``path``, made here and now: never an existing file or link."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{_token()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, 0o644)
        except FileExistsError:  # taken (by chance, or planted): draw another name
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temporary)`` then rename it to ``path``: readers see the old file or the new one.

    The temporary file is removed if ``write`` fails (a full disk, say), so nothing is left half
    written. ``write`` must write to the path it is given (not add a suffix to it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def append_line(path: Path, line: str) -> None:
    """Add one line at the end of ``path`` in a single write (created if missing, never through a
    link). A write that fails half-way is cut off again, so the next line starts on a line of its
    own. For one writer at a time (the folder's lock holder)."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            if os.write(fd, data) != len(data):  # a full disk mid-line
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (another user's included): whether a temporary file named
    after it may still be in use."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError, OSError):  # no such pid can exist
        return False
    return True
