"""A run killed while it drew a finished trial's figures left some PNGs missing; the trial, being
finished, is never run again, so the next run (and the report) draws what is missing, from the
trial's saved arrays, and leaves complete trials alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from builders import build_suite

import aebench
from aebench.results.table import PARQUET
from aebench.results.trials import trial_folder
from aebench.views.drawing import ARRAYS, CURVES_PNG, LATENT_PNG, missing_pngs
from aebench.views.report import build_report

SUITE = build_suite(name="resumed-figures")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with one finished trial and all its figures."""
    folder = tmp_path_factory.mktemp("drawn") / "out"
    run = aebench.run_suite(SUITE, output=folder)
    assert [row["status"] for row in run.rows] == ["ok"]
    return folder


@pytest.fixture
def killed(tmp_path: Path, drawn: Path) -> tuple[Path, Path, list[str]]:
    """A copy of ``drawn`` as a kill while drawing leaves it: the arrays saved, the last two
    PNGs not (and one of them as a temporary file, half written)."""
    results = tmp_path / "out"
    shutil.copytree(drawn, results, symlinks=True)
    trial = trial_folder(results, str(pd.read_parquet(results / PARQUET)["trial_id"].iloc[0]))
    pngs = sorted(p.name for p in trial.glob("*.png"))
    assert len(pngs) >= 3 and (trial / ARRAYS).is_file()
    lost = [pngs[-1], CURVES_PNG] if pngs[-1] != CURVES_PNG else [pngs[-2], CURVES_PNG]
    for name in lost:
        (trial / name).unlink()
    (trial / f".{CURVES_PNG}.999999.0123456789ab.tmp").write_bytes(b"\x89PNG half")
    return results, trial, lost


def test_missing_pngs_names_what_the_arrays_call_for(killed: tuple[Path, Path, list[str]]) -> None:
    _, trial, lost = killed
    assert sorted(missing_pngs(trial)) == sorted(lost)
    assert missing_pngs(trial / "nowhere") == []


def test_the_next_run_draws_the_figures_a_kill_left_missing(
    killed: tuple[Path, Path, list[str]],
) -> None:
    results, trial, lost = killed
    kept = (trial / LATENT_PNG).stat().st_mtime_ns
    run = aebench.run_suite(SUITE, output=results)
    assert run.rows == []  # nothing trained: the figures come from the saved arrays
    assert [name for name in lost if not (trial / name).is_file()] == []
    assert missing_pngs(trial) == []
    assert (trial / LATENT_PNG).stat().st_mtime_ns >= kept


def test_a_complete_trial_is_not_drawn_again(drawn: Path, tmp_path: Path) -> None:
    results = tmp_path / "out"
    shutil.copytree(drawn, results, symlinks=True)
    stamps = {p: p.stat().st_mtime_ns for p in results.glob("trials/*/*.png")}
    aebench.run_suite(SUITE, output=results)
    assert {p: p.stat().st_mtime_ns for p in results.glob("trials/*/*.png")} == stamps


def test_the_report_draws_the_figures_a_kill_left_missing(
    killed: tuple[Path, Path, list[str]],
) -> None:
    results, trial, lost = killed
    build_report(results)
    assert [name for name in lost if not (trial / name).is_file()] == []
