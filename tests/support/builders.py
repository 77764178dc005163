"""Suites for tests, built from a few keyword arguments, and runs of them in a subprocess.

``build_suite()`` gives a suite as the dict that ``load_suite`` and ``aebench.run_suite`` take:
by default one quick ``ae`` on digits, one seed, two epochs of batches of 64, ``recon_mse``
only, no tracking, on the CPU; a test names what it changes. ``entry()`` gives a model's or a
dataset's entry, ``build_tiny_suite()`` the tiny suite of conftest.py. ``as_toml()`` writes a
suite as a file holds it (the ``write_suite`` fixture saves one), and ``start_run()`` runs such
a file with ``aebench run`` in a subprocess that finds a test's plugins (``fake_plugins.py``)
and leaves their markers where it is told.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomli_w

Entry = dict[str, Any]


def entry(plugin: str, grid: dict[str, list[Any]] | None = None, **params: Any) -> Entry:
    """A ``[[models]]`` or ``[[datasets]]`` entry: ``plugin`` with ``params``, and a trial for
    each combination of the values in ``grid``."""
    found: Entry = {"plugin": plugin}
    if params:
        found["params"] = params
    if grid:
        found["grid"] = grid
    return found


QUICK_AE = entry("ae", hidden=[8])
DIGITS = entry("digits")


def build_suite(
    *models: Entry,
    name: str = "test",
    datasets: Sequence[Entry] = (DIGITS,),
    epochs: int | None = 2,
    batch_size: int | None = 64,
    metrics: Sequence[str] | None = ("recon_mse",),
    train: dict[str, Any] | None = None,
    eval: dict[str, Any] | None = None,
    tracking: dict[str, Any] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """A suite of ``models`` (``QUICK_AE`` without any) on ``datasets``. ``settings`` are the
    ``[suite]`` table's (``seeds``, ``isolate``, ``trial_timeout``, ...; ``device`` is "cpu");
    ``train`` and ``eval`` add to those tables. A key set to None is left out, to its default:
    ``metrics=None`` measures the default metrics. ``tracking``: MLflow's settings (off without)."""
    tables = {
        "suite": {"name": name, "device": "cpu", **settings},
        "train": {"epochs": epochs, "batch_size": batch_size, **(train or {})},
        "eval": {"metrics": None if metrics is None else list(metrics), **(eval or {})},
        "observers": {"mlflow": tracking or {"enabled": False}},
    }
    tables = {
        key: {k: v for k, v in table.items() if v is not None} for key, table in tables.items()
    }
    return {key: table for key, table in tables.items() if table} | {
        "datasets": list(datasets),
        "models": list(models or [QUICK_AE]),
    }


def build_tiny_suite(*more_models: Entry, **changes: Any) -> dict[str, Any]:
    """conftest.py's tiny suite, untracked: two latent sizes x two seeds of a small ``ae`` on
    digits, two epochs, the default metrics (4 trials); then ``more_models``. ``changes`` are
    ``build_suite()``'s keyword arguments."""
    tiny = entry("ae", hidden=[16], grid={"latent_dim": [2, 4]})
    return build_suite(
        tiny, *more_models, **{"name": "tiny", "seeds": [0, 1], "metrics": None} | changes
    )


def as_toml(built: dict[str, Any]) -> str:
    """The suite ``built`` as its file holds it."""
    return tomli_w.dumps(built)


def start_run(
    suite_file: Path,
    *options: str,
    site: Path,
    cwd: Path | None = None,
    markers: Path | None = None,
    stdout: int = subprocess.PIPE,
) -> subprocess.Popen:
    """``aebench run SUITE_FILE OPTIONS`` in a subprocess, its stdout and stderr piped as text: the
    plugins in ``site`` on its PYTHONPATH, and ``$MARKERS`` the folder ``markers`` (made)."""
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if markers is not None:
        markers.mkdir(parents=True, exist_ok=True)
        env["MARKERS"] = str(markers)
    return subprocess.Popen(
        [sys.executable, "-m", "aebench.cli", "run", str(suite_file), *options],
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )
