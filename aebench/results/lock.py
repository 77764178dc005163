"""One writer per results folder: ``aebench run`` and ``aebench evaluate`` hold an exclusive lock on
``<output>/.aebench.lock`` for the whole run, and a second one into the same folder is refused at
once, naming the holder's process id.

The lock is ``flock``: the kernel drops it when its holder dies, ``kill -9`` included, so a stale
lock never needs clearing by hand. The file itself stays (removing it would race with a newcomer).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from aebench.results.files import CLOEXEC, NOFOLLOW, FolderError, cannot_write

LOCK_FILE = ".aebench.lock"

_held: dict[str, int] = {}  # folders this process holds (real path -> depth): held again, not twice


def _busy(folder: Path, fd: int) -> FolderError:
    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
    return FolderError(
        f"{folder}: in use by another aebench (pid {holder}); wait for it to end, or write into"
        " another folder"
    )


def check_output(folder: Path) -> None:
    """Raise ``FolderError`` unless ``folder`` is (or can be made) a folder this process may write,
    and no other aebench holds it. Writes nothing: the check before a run loads anything."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FolderError(f"{existing}: is a file, not a folder; choose another --output")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FolderError(f"{existing}: cannot write there (read-only); choose another folder")
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | NOFOLLOW | CLOEXEC)
    except FileNotFoundError:
        return  # no run has held it yet
    except OSError as exc:
        raise cannot_write(folder / LOCK_FILE, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(folder, fd) from None
    finally:
        os.close(fd)  # a shared lock, if taken, goes with it


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder`` (made if missing) for the block: ``FolderError`` if another process holds
    it, or if the folder cannot be made or written. Re-entrant within one process."""
    folder = Path(folder)
    key = os.path.realpath(folder)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
    except FileExistsError:
        raise FolderError(f"{folder}: is a file, not a folder; choose another --output") from None
    except NotADirectoryError:
        raise FolderError(f"{folder}: a file is in its path; choose another --output") from None
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise cannot_write(path, exc) from None
            raise _busy(folder, fd) from None
        with contextlib.suppress(OSError):  # the pid is for the message; a full disk is no bar
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(fd)  # releases the lock
