"""The listing aebench ships of its own plugins, so that a first ``aebench list`` imports no torch.

The saved listing (``aebench.plugins.listing``) spares torch from the second call on; the first,
with an empty cache, would load every plugin (2-3 s, most of it importing torch and scipy) to show
what never changes between two installs of the same aebench. So the ``aebench`` distribution
carries that listing of its own entry points, ``builtin_listing.json`` beside this module, with
the state it was built in:

- the entry points of the distribution (name, module, version);
- the content (not the modification time: a checkout or an install rewrites that) of every Python
  file of its packages that was imported while the listing was built: what registering and
  describing the plugins ran, recorded in the file, so that editing any of it makes the shipped
  listing stale, and editing a module the listing never reads does not.

It is used only where it is current and the installed entry points are aebench's alone; else the
plugins are loaded as before (a third party's with the built-ins), only slower. Regenerate it
after changing a built-in plugin (``tests/plugins/test_listing_cold.py`` fails until then)::

    python -m aebench.plugins.listing --write-builtin
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aebench.plugins.manager import ENTRY_POINT_GROUP
from aebench.results.files import write_atomically

DISTRIBUTION = "aebench"  # the distribution whose entry points the shipped listing covers
SHIPPED = Path(__file__).with_name("builtin_listing.json")


def _entry_points(*, ours_only: bool) -> list[list[str | None]]:
    """The group's entry points as ``[name, module, distribution, version]``, sorted."""
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
        if not ours_only or dist[0] == DISTRIBUTION:
            found.append([ep.name, ep.value, *dist])
    return sorted(found, key=str)


def only_ours_installed() -> bool:
    """Whether every entry point of the ``aebench`` group is the aebench distribution's own."""
    return all(ep[2] == DISTRIBUTION for ep in _entry_points(ours_only=False))


def _package_folder(top: str) -> Path | None:
    """Where the top-level package ``top`` lives (located, not imported)."""
    spec = importlib.util.find_spec(top)
    locations = spec.submodule_search_locations if spec else None
    return Path(locations[0]).resolve() if locations else None


def _digest(name: str, folders: dict[str, Path | None]) -> str | None:
    """The hash of the content of the file ``name`` (``aebench/plugins/listing.py``, from above
    its package); None where it cannot be located or read."""
    top, _, rest = name.partition("/")
    if top not in folders:
        try:
            folders[top] = _package_folder(top)
        except (ImportError, ValueError):
            folders[top] = None
    folder = folders[top]
    if folder is None:
        return None
    try:
        text = (folder / rest).read_bytes()
    except OSError:  # gone
        return None
    return hashlib.sha256(text.replace(b"\r\n", b"\n")).hexdigest()  # a Windows checkout too


def _digests(files: Iterable[str]) -> dict[str, str | None]:
    folders: dict[str, Path | None] = {}
    return {name: _digest(name, folders) for name in sorted(files)}


def imported_files() -> list[str]:
    """The Python files of the distribution's packages (``aebench`` and those of its entry
    points) that this process has imported, as paths from above their package."""
    tops = {"aebench"} | {
        ep[1].partition(":")[0].split(".")[0] for ep in _entry_points(ours_only=True)
    }
    folders = {top: folder for top in tops if (folder := _package_folder(top)) is not None}
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        resolved = Path(path).resolve()
        for top, folder in folders.items():
            if resolved.is_relative_to(folder):
                found.add((Path(top) / resolved.relative_to(folder)).as_posix())
    return sorted(found)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        shipped = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    fields = ("entry_points", "files", "listing")
    if not isinstance(shipped, dict) or not all(field in shipped for field in fields):
        return None
    return shipped if isinstance(shipped["files"], dict) else None


def _changes(shipped: dict[str, Any]) -> list[str]:
    found = []
    if shipped["entry_points"] != _entry_points(ours_only=True):
        found.append("aebench's entry points or its version changed")
    for name, digest in _digests(shipped["files"]).items():
        if digest != shipped["files"][name]:
            found.append(f"{name} {'is gone' if digest is None else 'changed'}")
    return found


def changes(path: Path = SHIPPED) -> list[str]:
    """What makes the shipped listing stale, one line each; none where it is current."""
    shipped = _load(path)
    return [f"{path}: missing or unreadable"] if shipped is None else _changes(shipped)


def read(path: Path = SHIPPED) -> dict[str, Any] | None:
    """The shipped listing where it is current; None where it is stale, missing or unreadable."""
    shipped = _load(path)
    return shipped["listing"] if shipped is not None and not _changes(shipped) else None


def write(listing: dict[str, Any], path: Path = SHIPPED, files: list[str] | None = None) -> None:
    """Ship ``listing`` with the state it was built in: aebench's entry points, and the content
    of ``files`` (default: the distribution's files imported by now, which must include every
    file that built it)."""
    digests = _digests(imported_files() if files is None else files)
    if None in digests.values():
        unread = [name for name, digest in digests.items() if digest is None]
        raise OSError(f"{path}: cannot read {unread[0]}, a file the listing depends on")
    shipped = {"entry_points": _entry_points(ours_only=True), "files": digests, "listing": listing}
    text = json.dumps(shipped, indent=1) + "\n"
    write_atomically(path, lambda p: p.write_text(text, encoding="utf-8"))
