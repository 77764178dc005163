"""Where aebench may write, where it keeps what it caches (``cache_folder``), and how a file is
written all or nothing (``write_atomically``, for plugins too).

A suite file is data, and may come from someone else; the command line and the environment are the
user's own choice. So what a suite file names (``[suite] output``, a SQLite ``[tracking] uri``)
must stay inside the folder aebench runs in, while ``--output`` and ``$MLFLOW_TRACKING_URI`` may
point anywhere but into the system's own folders, where aebench never writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from aebench.results.files import write_atomically  # noqa: F401  (offered to plugins here)


def cache_folder() -> Path:
    """``$AEBENCH_CACHE``, else ``aebench`` under ``$XDG_CACHE_HOME`` (default ``~/.cache``): where
    aebench and its plugins keep what they can build again (the plugin listing, trained feature
    classifiers)."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aebench"
    return Path(os.environ.get("AEBENCH_CACHE") or default)


# Folders of the operating system (Linux, macOS): nothing of aebench belongs there.
SYSTEM_FOLDERS = tuple(
    Path(p)
    for p in (
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib32",
        "/lib64",
        "/proc",
        "/run",
        "/sbin",
        "/sys",
        "/usr",
        "/System",
        "/private/etc",
    )
)


def system_folder(path: str | Path) -> Path | None:
    """The system folder ``path`` is in (or is), symbolic links followed; None for any other,
    and for the file system's root itself only when ``path`` is the root."""
    resolved = Path(path).expanduser().resolve()
    if resolved == Path(resolved.anchor):
        return resolved
    for folder in SYSTEM_FOLDERS:
        if resolved == folder or folder in resolved.parents:
            return folder
    return None


def inside(path: str | Path, base: str | Path) -> bool:
    """Whether ``path`` (relative to ``base`` unless absolute) stays inside ``base``, symbolic links
    followed."""
    base = Path(base).resolve()
    resolved = (base / Path(path).expanduser()).resolve()
    return resolved == base or base in resolved.parents


def writable_place_problem(path: str | Path) -> str | None:
    """Why aebench must not write at ``path``, or None: a system folder."""
    folder = system_folder(path)
    if folder is None:
        return None
    if Path(path).expanduser().resolve() == folder:
        return f"{path} is a system folder; aebench does not write there"
    return f"{path} is in the system folder {folder}; aebench does not write there"


def suite_place_problem(path: str | Path, cwd: str | Path | None = None) -> str | None:
    """Why a folder named by a suite file is not acceptable, or None: it must be a relative path
    that stays inside the working directory (``--output`` or the environment name others)."""
    if Path(path).expanduser().is_absolute():
        return f"{path}: a suite names folders relative to where it runs; use --output for others"
    if not inside(path, cwd or Path.cwd()):
        return f"{path} leaves the working directory; use --output for a folder elsewhere"
    return None


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` tracking URI (relative with three slashes,
    absolute with four), or None for any other store."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None
