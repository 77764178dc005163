"""One writer per results folder: ``aebench run``, ``aebench evaluate`` and ``aebench report`` hold
an exclusive lock on ``<output>/.aebench.lock`` for as long as they read and write there, and a
second one into the same folder is refused at once, naming the holder's process id.

The lock is ``flock``: the kernel drops it when its holder dies, ``kill -9`` included, so a stale
lock never needs clearing by hand. The file itself stays (removing it would race with a newcomer).

It excludes threads as it excludes processes: the thread holding a folder may take it again
(a suite's run, then each of its runs of trials; ``evaluate`` inside its command), any other
thread, of this process or another, is refused. A second ``flock`` on a file descriptor of its
own conflicts with the first even within one process, so only the holding thread's nesting is
counted here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from aebench.results.files import CLOEXEC, NOFOLLOW, FolderError, cannot_write

LOCK_FILE = ".aebench.lock"

# Folders held here: real path -> (the holding thread, its depth of nesting).
_held: dict[str, tuple[int, int]] = {}
_held_lock = threading.Lock()


def _nested(key: str) -> bool:
    """Whether this thread holds the folder ``key`` already (and so holds it once more)."""
    with _held_lock:
        holder = _held.get(key)
        if holder is None or holder[0] != threading.get_ident():
            return False
        _held[key] = (holder[0], holder[1] + 1)
        return True


def _unnest(key: str) -> None:
    with _held_lock:
        thread, depth = _held[key]
        if depth > 1:
            _held[key] = (thread, depth - 1)
        else:
            del _held[key]


def holds(folder: Path) -> bool:
    """Whether this thread holds ``folder``'s lock."""
    holder = _held.get(os.path.realpath(folder))
    return holder is not None and holder[0] == threading.get_ident()


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
    if holds(folder):  # this thread's own run (an evaluation in its command's lock)
        return
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
    it, or another thread of this one, or if the folder cannot be made or written. Re-entrant
    within one thread."""
    folder = Path(folder)
    key = os.path.realpath(folder)
    if _nested(key):
        try:
            yield
        finally:
            _unnest(key)
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
        with _held_lock:
            _held[key] = (threading.get_ident(), 1)
        try:
            yield
        finally:
            _unnest(key)
    finally:
        os.close(fd)  # releases the lock
