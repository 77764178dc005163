"""What ``aebench list`` and ``aebench plugins`` show, kept between calls.

Loading the plugins imports torch: 1.2 s of a 1.7 s ``aebench list``. What they register changes
only when code or installed packages change, so the listing is saved with a fingerprint of exactly
that, and shown again while the fingerprint holds:

- each entry point of the ``aebench`` group, with its distribution's name and version;
- the size and modification time of every Python file of aebench and of each entry point's
  module (all of its package, for a package);
- the names in the folders on ``sys.path`` (but the first, the script's own or the working
  directory), which change whenever a package is installed, upgraded or removed there (not
  ``__pycache__``, which a first import writes).

The saved listing is plain JSON, in ``$AEBENCH_CACHE`` (default: ``~/.cache/aebench``). A cache that
cannot be read or written is ignored: the plugins are loaded as if there were none.

With an empty cache, where only aebench's own plugins are installed, the listing aebench ships of
them (``aebench.plugins.shipped``) stands in for loading them, while it is current; regenerate it
with ``python -m aebench.plugins.listing --write-builtin``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aebench.contract.columns import Column, Vocabulary
from aebench.plugins import shipped
from aebench.plugins.manager import ENTRY_POINT_GROUP, KINDS
from aebench.plugins.params import describe
from aebench.results.files import write_atomically
from aebench.results.paths import cache_folder

if TYPE_CHECKING:
    from aebench.plugins.manager import Plugins
    from aebench.plugins.registry import Entry

LISTING_FILE = "listing.json"
FORMAT = 3  # bump when the listing's layout changes: older saved listings are then not used

Listing = dict[str, Any]


def _json_default(value: object) -> object:
    return None if value is inspect.Parameter.empty else str(value)


def _listed(entry: Entry) -> dict[str, Any]:
    listed: dict[str, Any] = {
        "name": entry.name,
        "description": entry.description,
        "plugin": entry.plugin,
        "distribution": entry.distribution,
        "params": [
            vars(p) | {"required": p.default is inspect.Parameter.empty}
            for p in describe(entry.params)
        ],
    }
    if entry.kind == "metric":  # what it declares: its columns, and what it needs of a trial
        listed["columns"] = [dataclasses.asdict(c) for c in entry.factory.columns]
        listed["requires"] = list(entry.factory.requires)
        listed["planes"] = [list(plane) for plane in entry.factory.planes]
    return listed


def build_listing(plugins: Plugins) -> Listing:
    """Every registered plugin of every kind, the plugins' origins and their load errors, as JSON
    values (a default that JSON cannot hold is shown as its text)."""
    listing = {
        "plugins": [
            {
                "plugin": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "registers": info.registers,
            }
            for info in plugins.infos
        ],
        "load_errors": [vars(e) for e in plugins.errors],  # failed, or dropped for a clash
        "load_warnings": [vars(e) for e in plugins.deprecations],  # loaded the deprecated way
        "kinds": {kind: [_listed(e) for e in plugins.registries[kind]] for kind in KINDS},
    }
    return json.loads(json.dumps(listing, default=_json_default))


def _python_files(spec: importlib.machinery.ModuleSpec) -> list[Path]:
    if spec.submodule_search_locations:  # a package: every module in it
        return [p for folder in spec.submodule_search_locations for p in Path(folder).rglob("*.py")]
    return [Path(spec.origin)] if spec.origin else []


def _installed(folder: str) -> list[str]:
    """What a folder on ``sys.path`` holds, by name: installing, upgrading (a new ``dist-info``)
    or removing a package changes it; Python writing ``__pycache__`` on a first import does not
    (the folder's modification time would, and the first saved listing would never be used)."""
    return sorted(name for name in os.listdir(folder) if name != "__pycache__")


def fingerprint() -> str | None:
    """A hash of everything the listing depends on (see the module's docstring); None where a
    module cannot be located without importing it, or a file cannot be read."""
    parts: list[Any] = [FORMAT, sys.version, os.path.realpath(sys.executable)]
    modules = ["aebench"]
    try:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=str):
            dist = (ep.dist.name, ep.dist.version) if ep.dist else None
            parts.append([ep.name, ep.value, dist])
            modules.append(ep.module)
        for module in modules:
            spec = importlib.util.find_spec(module)  # imports its parent packages, not it
            if spec is None:
                return None
            for path in sorted(_python_files(spec)):
                stat = path.stat()
                parts.append([str(path), stat.st_size, stat.st_mtime_ns])
        for folder in sys.path[1:]:  # [0] is the script's folder or the working directory
            if folder and os.path.isdir(folder):
                parts.append([folder, _installed(folder)])
    except Exception:  # a module that cannot be located, a file gone: no saved listing is used
        return None
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _read(path: Path, key: str) -> Listing | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("fingerprint") != key:
        return None
    return saved.get("listing")


def load_listing() -> Listing:
    """The listing of the installed plugins: the saved one while its fingerprint holds, else
    loaded afresh (this imports the plugins, and torch) and saved."""
    from aebench.plugins.manager import load_plugins

    key = fingerprint()
    path = cache_folder() / LISTING_FILE
    if key is not None and (saved := _read(path, key)) is not None:
        return saved
    listing = shipped.read() if shipped.only_ours_installed() else None
    if listing is None:  # a third party's plugin, or a built-in changed since it was shipped
        listing = build_listing(load_plugins())
    if key is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"fingerprint": key, "listing": listing})
            write_atomically(path, lambda p: p.write_text(text, encoding="utf-8"))
        except OSError:  # a read-only home, say: only the next call is slower
            pass
    return listing


def installed_vocabulary() -> Vocabulary:
    """What the installed metrics declare of their columns, from the listing (saved or fresh)."""
    vocabulary = Vocabulary()
    for metric in load_listing()["kinds"]["metrics"]:
        planes = (tuple(plane) for plane in metric["planes"])
        vocabulary.add((Column(**column) for column in metric["columns"]), planes)
    return vocabulary


def vocabulary_of(folder: Path) -> Vocabulary:
    """The saved vocabulary of a results folder; for an older folder without one, the declarations
    of the metrics installed now (from ``aebench list``'s listing: no torch once it is saved), which
    also complete a saved one written before a field of ``Column`` existed."""
    from aebench.results.table import read_vocabulary  # pandas: not for `aebench list`

    saved = read_vocabulary(folder, known=installed_vocabulary)  # an older file: completed
    return installed_vocabulary() if saved is None else saved


def builtin_listing() -> Listing:
    """The listing of aebench's own plugins alone, loaded (a third party's are left out)."""
    from aebench.plugins.manager import load_plugins

    others = [
        f"{ep.dist.name}.{ep.name}" if ep.dist else ep.name
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        if not ep.dist or ep.dist.name != shipped.DISTRIBUTION
    ]
    return build_listing(load_plugins(blocked=others))


def write_builtin() -> int:
    """``--write-builtin``: ship the listing of aebench's own plugins (exit 1 where one of them
    fails to load or warns: that is no listing to ship)."""
    listing = builtin_listing()
    problems = listing["load_errors"] + listing["load_warnings"]
    if problems:
        first = problems[0]
        print(f"aebench: error: not shipped: {first['plugin']}: {first['error']}", file=sys.stderr)
        return 1
    try:
        shipped.write(listing)
    except OSError as exc:
        print(f"aebench: error: not shipped: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {shipped.SHIPPED}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-builtin"]:
        print("usage: python -m aebench.plugins.listing --write-builtin", file=sys.stderr)
        sys.exit(2)
    sys.exit(write_builtin())
