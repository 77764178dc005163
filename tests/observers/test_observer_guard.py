"""Every event of every observer is guarded: one that raises is named (plugin and distribution),
its traceback logged, and it hears nothing more of the run; the others and the run go on."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from builders import as_toml, build_suite, entry
from fake_plugins import fake_distribution
from mlflow_runs import search_runs
from repo import SUPPORT

import aebench
from aebench import SuiteObserver
from aebench.observers.tracking_store import sqlite_uri

OBSERVERS = SUPPORT / "aebench_observers.py"
EVENTS = ["suite_started", "trial_started", "trial_finished", "suite_finished"]


def suite_text(at: str, mlflow: dict[str, str] | None = None) -> str:
    """A one-trial suite with the ``faulty`` observer raising at ``at``; MLflow off unless
    ``mlflow`` gives its settings."""
    built = build_suite(
        entry("ae", hidden=[8], latent_dim=2), name="guarded", epochs=1, batch_size=256
    )
    built["observers"] = {"faulty": {"at": at}, "mlflow": mlflow or {"enabled": False}}
    return as_toml(built)


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> aebench.Plugins:
    """The installed plugins and ``aebench_observers``, as a distribution of its own."""
    site = fake_distribution(tmp_path / "site-observers", OBSERVERS)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, OBSERVERS.stem, raising=False)
    monkeypatch.chdir(tmp_path)
    return aebench.load_plugins()


def heard(path: Path) -> list[str]:
    return [json.loads(line)["event"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("at", EVENTS)
def test_an_observer_raising_at_any_event_is_named_logged_and_silenced(
    installed, capsys, caplog, at
) -> None:
    Path("suite.toml").write_text(suite_text(at))
    with caplog.at_level(logging.ERROR, logger="aebench"):
        run = aebench.run_suite("suite.toml", output="out", plugins=installed)

    assert [row["status"] for row in run.rows] == ["ok"]  # the run went on
    assert Path("out/results.parquet").is_file()
    assert heard(Path("out/tracker.jsonl")) == EVENTS  # the other observer heard everything
    assert heard(Path("out/faulty.jsonl")) == EVENTS[: EVENTS.index(at) + 1]  # then nothing
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("aebench: observer 'faulty' (aebench_observers 0.1): Faulty failed")
    assert f"disk full at {at}; it hears nothing more of this run" in line
    [record] = [r for r in caplog.records if "Faulty failed" in r.getMessage()]
    assert "Traceback" in record.getMessage() and "OSError: disk full" in record.getMessage()


def test_an_observer_given_by_a_python_caller_is_named_by_its_class(installed, capsys) -> None:
    class Boom(SuiteObserver):
        def trial_started(self, trial):
            raise RuntimeError("no")

    Path("suite.toml").write_text(suite_text("suite_finished"))
    text = Path("suite.toml").read_text().replace('[observers.faulty]\nat = "suite_finished"', "")
    Path("suite.toml").write_text(text)
    run = aebench.run_suite("suite.toml", output="out", plugins=installed, observers=[Boom()])
    assert [row["status"] for row in run.rows] == ["ok"]
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("aebench: observer Boom failed as digits/ae/none seed=0 started: no")
    assert heard(Path("out/tracker.jsonl")) == EVENTS


def test_mlflow_closes_its_invocation_run_when_an_earlier_observer_fails_at_the_end(
    installed, tmp_path
) -> None:
    class Boom(SuiteObserver):  # given by the caller: it hears every event before MLflow
        def suite_finished(self, run):
            raise RuntimeError("no")

    uri = sqlite_uri(tmp_path / "store" / "mlflow.db")
    mlflow = {"uri": uri, "experiment": "guarded"}
    Path("suite.toml").write_text(suite_text("suite_finished", mlflow))

    run = aebench.run_suite("suite.toml", output="out", plugins=installed, observers=[Boom()])

    [row] = run.rows
    runs = search_runs(uri, experiment_names=["guarded"])
    invocation = runs[runs["tags.aebench.trial_id"].isna()]
    assert list(invocation["status"]) == ["FINISHED"]  # not left RUNNING
    trial = runs[runs["tags.aebench.trial_id"] == row["trial_id"]]
    assert list(trial["status"]) == ["FINISHED"]
