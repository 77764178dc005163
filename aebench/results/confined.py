"""Keeping every write inside the results folder: no planted link along the way, no name from a
table that climbs out of it.

A results folder may come from elsewhere (copied, unpacked, shared), and so may the table in it.
Writing through ``<output>/trials`` when it is a link to another folder writes there; a figure
named after a dataset cell ``../../pwned`` lands two folders up. So:

- ``confined(root, *parts)`` is the path aebench writes (``confined_folder`` the folder), each
  part one plain name and each folder along it checked, right before the write, to be a real
  folder and not a link (made when missing); the root itself is the user's choice, may be a link.
- ``safe_name(text)`` makes a name taken from a table or a suite (a dataset, a configuration
  label, a column) a file name: no separator, no ``..``, no leading dot, bounded, and distinct
  for distinct texts.
- ``check_links(root)`` refuses, before a run writes anything, a folder holding a link where
  aebench writes; ``remove_stale_temporaries(root)`` removes what killed writes left.

A link planted while aebench runs, between the check and the write, is not guarded against: the
threat is a folder prepared beforehand, not a race with an attacker on the same machine.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from aebench.results.files import TEMPORARY, FolderError, cannot_write, process_alive

# The folders aebench writes in, in a results folder (their modules name them from here).
TRIALS = "trials"  # a folder per trial (``aebench.results.trials``)
FIGURES = "figures"  # the report's figures (``aebench.views.figure_blocks``)
SEARCH_FIGURES = "search-figures"  # a search's figures (``aebench.views.search_figures``)
WRITTEN_FOLDERS = (TRIALS, FIGURES, SEARCH_FIGURES)  # every folder aebench writes in, in a root

NAME_CHARS = 100  # a safe name's longest: far below the file systems' 255, with room for a suffix
HASH_CHARS = 12  # hex digits of the text's hash added to a name that had to change
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]*")  # whole names: fullmatch
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+|\.{2,}")
_HASHED = re.compile(rf"-[0-9a-f]{{{HASH_CHARS}}}\Z")  # what safe_name adds: never kept as given


def safe_name(text: object, limit: int = NAME_CHARS) -> str:
    """``text`` as a file name: itself where it is already a plain name (letters, digits and
    ``_ . = + -``, not starting with a dot, no ``..``, at most ``limit`` characters), else a
    readable slug of it and a hash of the whole text, so that distinct texts never share a name.
    """
    text = str(text)
    if (
        _PLAIN.fullmatch(text)
        and ".." not in text
        and len(text) <= limit
        and not _HASHED.search(text)  # could be another text's slug and hash
    ):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    slug = _UNSAFE.sub("-", text).strip(".-")[: limit - HASH_CHARS - 1].rstrip(".-")
    return f"{slug or '_'}-{digest}"  # never a plain name: those are kept as they are


def _plain_part(root: Path, part: str) -> str:
    """``part`` when it is one name that stays where it is; a ``FolderError`` otherwise."""
    if not part or part in (".", "..") or "/" in part or "\0" in part or os.sep in part:
        raise FolderError(f"{root}: {part!r} is not a plain file name; aebench does not write it")
    return part


def _link_error(path: Path) -> FolderError:
    return FolderError(
        f"{path}: is a symbolic link; aebench writes only inside the results folder, never through"
        " a link: replace it with a real folder, or choose another folder"
    )


def _real_folder(path: Path) -> None:
    """``path`` is a real folder (made if missing), checked with ``lstat``: never a link."""
    try:
        os.mkdir(path, 0o777)  # never follows a link at ``path``: an existing one is an error
    except FileExistsError:
        pass
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        raise cannot_write(path, exc) from None
    if stat.S_ISLNK(mode):
        raise _link_error(path)
    if not stat.S_ISDIR(mode):
        raise cannot_write(path, OSError(errno.ENOTDIR, "a file where a folder belongs"))


def confined_folder(root: Path, *parts: str) -> Path:
    """``root / parts``, each part one plain name and each a real folder (made if missing), not a
    link: the folder aebench is about to write in. ``root`` itself is the user's choice (made if
    missing; it may be a link). A link, or a name that is not plain, is a ``FolderError``."""
    root = Path(root)
    checked = [_plain_part(root, str(part)) for part in parts]
    if not root.is_dir():
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise cannot_write(root, exc) from None
    path = root
    for part in checked:
        path = path / part
        _real_folder(path)
    return path


def confined(root: Path, *parts: str) -> Path:
    """``root / parts`` for a file aebench is about to write: the folders along it checked by
    ``confined_folder``, the last part a plain name. That one may be a link:
    ``write_atomically`` replaces it, never writes through it."""
    if not parts:
        raise ValueError("confined() needs a file name")
    return confined_folder(root, *parts[:-1]) / _plain_part(Path(root), str(parts[-1]))


def inside_root(root: Path, path: Path) -> Path:
    """``confined`` for a path already joined: ``path`` must be lexically under ``root``."""
    try:
        relative = Path(path).relative_to(root)
    except ValueError:
        raise FolderError(f"{path}: outside the results folder {root}; not written") from None
    return confined(root, *relative.parts)


def _entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            yield from entries
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise FolderError(f"{folder}: unreadable: {exc.strerror or exc}") from None


def _written_folders(root: Path) -> Iterator[Path]:
    """Every folder of ``root`` aebench writes in that is there (not following links)."""
    yield root
    for name in WRITTEN_FOLDERS:
        folder = root / name
        if os.path.isdir(folder) and not os.path.islink(folder):
            yield folder
    for entry in _entries(root / TRIALS):
        if entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)


def check_links(root: Path) -> None:
    """A ``FolderError`` naming the first link where aebench writes in ``root``: ``trials/``,
    a trial's folder in it, ``figures/``, ``search-figures/``. Before a run or a report writes."""
    root = Path(root)
    for name in WRITTEN_FOLDERS:
        if os.path.islink(root / name):
            raise _link_error(root / name)
    for entry in _entries(root / TRIALS):
        if entry.is_symlink():
            raise _link_error(Path(entry.path))


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Remove the temporary files killed writes of aebench left in ``root`` and the folders it
    writes in (only its own ``.<name>.<pid>.<token>.tmp``, only of a process no longer alive);
    returns those removed. Call it holding the folder's lock: no other aebench writes there then,
    and a live process's file (this run's, an isolated trial's) is left to it."""
    removed = []
    for folder in _written_folders(Path(root)):
        for entry in _entries(folder):
            found = TEMPORARY.fullmatch(entry.name)
            if found is None or not entry.is_file(follow_symlinks=False):
                continue
            if process_alive(int(found.group(1))):
                continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise cannot_write(Path(entry.path), exc) from None
            removed.append(Path(entry.path))
    return removed
