"""Observers of a run are plugins: built-ins and third parties' in pluggy's order, each optional."""

from __future__ import annotations

from pathlib import Path

from mlflow_runs import search_runs

import aebench
from aebench import SuiteObserver, hookimpl
from aebench.observers.tracking_store import sqlite_uri

SUITE = """
[suite]
name = "observed"
seeds = [0]
device = "cpu"

[train]
epochs = 1
batch_size = 256

[eval]
metrics = ["recon_mse"]

[observers.mlflow]
uri = "{uri}"
experiment = "observed"  # its output is not the suite's own folder

[[datasets]]
plugin = "digits"

[[models]]
plugin = "ae"
params = {{ hidden = [8], latent_dim = 2 }}
"""


class Events(SuiteObserver):
    """Records the events it hears."""

    heard: list[str] = []

    def suite_started(self, suite, output, trials):
        self.heard.append("suite_started")

    def trial_finished(self, trial, row, outcome):
        self.heard.append(f"trial_finished {row['status']}")

    def suite_finished(self, run):
        self.heard.append("suite_finished")


class Listening:
    """A third party's observer plugin, with a normal (unordered) hook implementation."""

    @hookimpl
    def aebench_register_observers(self, register):
        register("events", lambda suite: Events())


def test_built_ins_are_ordered_by_pluggy_and_a_third_party_sits_between() -> None:
    order = [e.name for e in aebench.load_plugins(extra=[Listening()]).observers.in_order()]
    assert set(order[:2]) == {"figures", "report"}  # tryfirst: before anyone logs their files
    assert order[2:] == ["events", "mlflow"]  # trylast: MLflow logs what the others wrote


def test_mlflow_records_the_trials_when_the_figures_observer_is_absent(write_suite, tmp_path):
    uri = sqlite_uri(tmp_path / "store" / "mlflow.db")
    plugins = aebench.load_plugins(blocked=["aebench.figures"], extra=[Listening()])
    assert "figures" not in plugins.observers and "mlflow" in plugins.observers
    Events.heard = []
    run = aebench.run_suite(
        write_suite(SUITE.format(uri=uri)), output=tmp_path / "out", plugins=plugins
    )
    [row] = run.rows
    assert row["status"] == "ok"
    assert Events.heard == ["suite_started", "trial_finished ok", "suite_finished"]
    drawn = [
        p.name for p in (tmp_path / "out" / "trials").rglob("*") if p.suffix in (".png", ".npz")
    ]
    assert not drawn  # no figures were drawn
    runs = search_runs(uri, experiment_names=["observed"])
    child = runs[runs["tags.aebench.trial_id"] == row["trial_id"]].iloc[0]
    assert child["status"] == "FINISHED"
    assert child["metrics.recon_mse"] == row["recon_mse"]
    from mlflow import MlflowClient

    artifacts = [a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(child["run_id"])]
    assert "figures" not in artifacts


def test_an_observer_that_raises_costs_only_its_own_record(write_suite, tmp_path, capsys):
    class Raising(SuiteObserver):
        def trial_finished(self, trial, row, outcome):
            raise OSError("disk full")

    class Plugin:
        @hookimpl
        def aebench_register_observers(self, register):
            register("raising", lambda suite: Raising())

    plugins = aebench.load_plugins(extra=[Plugin(), Listening()])
    Events.heard = []
    suite = write_suite(SUITE.format(uri="").replace('uri = ""', "enabled = false"))
    run = aebench.run_suite(suite, output=tmp_path / "out", plugins=plugins)
    assert [row["status"] for row in run.rows] == ["ok"]
    assert "trial_finished ok" in Events.heard  # the others still heard the trial
    assert "Raising failed on digits/ae/none seed=0: disk full" in capsys.readouterr().err
    assert Path(tmp_path / "out" / "results.parquet").is_file()
