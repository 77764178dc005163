"""Every run warns of the installed plugins' load problems (a plugin that failed to import, a
registration dropped for a clash): one line each on stderr and in aebench.log, saved beside the
results (load_errors.json) and shown in the report's header, even when the suite names nothing
the plugin provides; ``aebench run --strict`` refuses to start with any."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from builders import build_suite
from fake_plugins import fake_distribution
from repo import SUPPORT

import aebench
from aebench.cli import main
from aebench.results.table import LOAD_ERRORS, read_load_errors

MISSING_DEP = SUPPORT / "aebench_missing_dep.py"
COLLIDES = SUPPORT / "aebench_collides.py"

FAILED = (
    "aebench: warning: plugin 'aebench_missing_dep.aebench_missing_dep' (aebench_missing_dep)"
    " failed to load: ModuleNotFoundError: No module named"
    " 'aebench_dependency_that_is_not_installed'"
)
PLUGIN = "aebench: warning: plugin "
DROPPED = "aebench: warning: plugin 'aebench_collides.aebench_collides' (aebench_collides): "


@pytest.fixture
def broken_and_clashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two installed third-party packages: one fails to import, one clashes with the built-ins."""
    for module in (MISSING_DEP, COLLIDES):
        site = fake_distribution(tmp_path / f"site-{module.stem}", module)
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, module.stem, raising=False)


def test_a_run_warns_of_every_load_problem_everywhere(
    broken_and_clashing, tmp_path, write_suite, capsys
) -> None:
    suite = write_suite(build_suite())  # recon_mse only: nothing of the broken plugins
    output = tmp_path / "out"
    assert main(["run", str(suite), "--output", str(output)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith(PLUGIN)]
    assert warnings[0] == FAILED
    assert [line.startswith(DROPPED) for line in warnings[1:]] == [True, True]
    assert "model 'ae' is registered by both" in warnings[1]
    assert "'my_recon_mse' is dropped" in warnings[2]

    logged = (output / "aebench.log").read_text()
    assert all(line in logged for line in warnings)
    saved = json.loads((output / LOAD_ERRORS).read_text())["load_errors"]
    assert [p["problem"] for p in saved] == ["failed", "collision", "collision"]
    assert [f"aebench: warning: {p['message']}" for p in saved] == warnings
    header = (output / "report.md").read_text().split("## ")[0]  # before the first section
    for line in warnings:
        assert line.replace("aebench: warning: ", "⚠ plugin problem: ") in header


def test_strict_refuses_to_start_with_a_load_problem(
    broken_and_clashing, tmp_path, write_suite, capsys
) -> None:
    suite = write_suite(build_suite())
    output = tmp_path / "out"
    assert main(["run", str(suite), "--output", str(output), "--strict"]) == 2
    *lines, error = capsys.readouterr().err.strip().splitlines()
    warnings = [line for line in lines if line.startswith(PLUGIN)]
    assert warnings[0] == FAILED and len(warnings) == 3
    assert error == "aebench: error: --strict: 3 plugin problems (warned above)"
    assert not output.exists()  # nothing trained, nothing written


def test_run_suite_logs_the_warnings(broken_and_clashing, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="aebench"):
        run = aebench.run_suite(build_suite(), output=tmp_path / "out")
    assert [row["status"] for row in run.rows] == ["ok"]
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith(PLUGIN)]
    assert warned[0] == FAILED and len(warned) == 3
    assert read_load_errors(tmp_path / "out") == [
        w.removeprefix("aebench: warning: ") for w in warned
    ]


def test_a_clean_run_records_no_problem_and_replaces_the_last_runs(tmp_path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / LOAD_ERRORS).write_text(json.dumps({"load_errors": [{"message": "old"}]}))
    aebench.run_suite(build_suite(), output=output)
    assert read_load_errors(output) == []
    assert "plugin problem" not in (output / "report.md").read_text()
