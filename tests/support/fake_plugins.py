"""Installed-looking plugin distributions, made without installing anything."""

from __future__ import annotations

import shutil
from pathlib import Path

FRAGILE = Path(__file__).with_name("aebench_fragile.py")


def fake_distribution(site: Path, module: Path = FRAGILE) -> Path:
    """Copy ``module`` into ``site`` with a ``.dist-info`` declaring it an ``aebench`` entry point.

    Put ``site`` on PYTHONPATH (of a subprocess, or a Dask worker) and importlib.metadata finds
    the plugin as it would an installed package's.
    """
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(module, site / module.name)
    name = module.stem
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[aebench]\n{name} = {name}\n")
    return site
