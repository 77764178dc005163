"""What a run's bookkeeping costs: an ``aebench run`` with every trial already finished does none
(no data loaded, no report rebuilt, no MLflow store opened, no figure drawn), and a trial's
MLflow record is one ``log_batch`` call."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import build_suite, entry
from mlflow_runs import search_runs

from aebench.cli import main
from aebench.observers import tracking, tracking_runs, trial_figures
from aebench.observers.tracking_store import open_sqlite, sqlite_uri
from aebench.observers.tracking_ui import stored_experiments
from aebench.session import Session
from aebench.views import report


def idle_suite(uri: str | None) -> dict:
    """One small trial, recorded in the MLflow store at ``uri`` (None: MLflow off)."""
    ae = entry("ae", hidden=[8], latent_dim=2)
    tracking = {"uri": uri} if uri is not None else None
    return build_suite(ae, name="idle", seeds=[0], epochs=1, batch_size=256, tracking=tracking)


@pytest.fixture
def heavy(monkeypatch) -> dict[str, int]:
    """How often each heavy step of a run was taken (wrapped, still done)."""
    counts: dict[str, int] = {}

    def counted(owner: object, name: str) -> None:
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    counted(Session, "load_data")
    counted(report, "build_report")
    counted(tracking.MlflowTracker, "_connect")
    counted(trial_figures, "save_trial_figures")
    return counts


def _run(suite: Path, output: Path) -> None:
    assert main(["run", str(suite), "--output", str(output)]) == 0


def test_a_rerun_with_nothing_to_do_writes_and_opens_nothing(write_suite, tmp_path, heavy):
    uri = sqlite_uri(tmp_path / "mlflow.db")
    suite, output = write_suite(idle_suite(uri)), tmp_path / "out"
    _run(suite, output)
    assert set(heavy) == {"load_data", "build_report", "_connect", "save_trial_figures"}
    page = output / report.REPORT_HTML
    stamp = page.stat().st_mtime_ns

    heavy.clear()
    _run(suite, output)

    assert heavy == {}
    assert page.stat().st_mtime_ns == stamp
    assert len(search_runs(uri, search_all_experiments=True)) == 2  # the trial, the invocation


def test_aebench_ui_reads_its_links_from_the_store_without_a_server(write_suite, tmp_path):
    from mlflow import MlflowClient

    store = tmp_path / "mlflow.db"
    _run(write_suite(idle_suite(sqlite_uri(store))), tmp_path / "out")
    MlflowClient(tracking_uri=sqlite_uri(store)).create_experiment("not aebench's")

    experiments = MlflowClient(tracking_uri=sqlite_uri(store)).search_experiments()
    ours = [(e.name, e.experiment_id) for e in experiments if "aebench.suite" in e.tags]
    assert stored_experiments(store) == ours and len(ours) == 1


def test_trials_missing_from_the_store_are_repaired_by_a_rerun(write_suite, tmp_path, heavy):
    uri = sqlite_uri(tmp_path / "mlflow.db")
    untracked = idle_suite(None)
    output = tmp_path / "out"
    _run(write_suite(untracked, "untracked.toml"), output)  # the store never heard of the trial

    heavy.clear()
    _run(write_suite(idle_suite(uri)), output)

    assert "_connect" in heavy and "build_report" not in heavy
    runs = search_runs(uri, search_all_experiments=True)
    assert runs["tags.aebench.repaired"].eq("true").sum() == 1


def test_a_report_older_than_the_table_is_rebuilt_by_a_rerun(write_suite, tmp_path, heavy):
    suite = write_suite(idle_suite(sqlite_uri(tmp_path / "mlflow.db")))
    output = tmp_path / "out"
    _run(suite, output)
    (output / report.REPORT_HTML).unlink()  # as a run killed before its end leaves it

    heavy.clear()
    _run(suite, output)

    assert heavy.get("build_report") == 1 and (output / report.REPORT_HTML).is_file()


def test_a_trial_is_logged_to_mlflow_in_one_batch(write_suite, tmp_path, monkeypatch):
    finished: list[tracking.MlflowTracker] = []
    real = tracking.MlflowTracker.suite_finished

    def heard(self, run):  # the run's tracker, once its worker logged everything
        real(self, run)
        finished.append(self)

    monkeypatch.setattr(tracking.MlflowTracker, "suite_finished", heard)
    _run(write_suite(idle_suite(sqlite_uri(tmp_path / "mlflow.db"))), tmp_path / "out")

    [tracker] = finished
    calls = tracker.log_batches  # as the MLflow worker made them
    assert len(calls) == 2  # the trial's run, then the invocation's counts
    assert calls[0] > 10  # its params, tags and metrics together


def test_batches_keep_within_mlflows_limits_per_call():
    metrics, params, tags = list(range(1500)), list(range(150)), list(range(30))

    packed = list(tracking_runs.batches(metrics, params, tags))

    assert [(len(m), len(p), len(t)) for m, p, t in packed] == [(870, 100, 30), (630, 50, 0)]
    assert [x for m, _, _ in packed for x in m] == metrics
    assert [x for _, p, _ in packed for x in p] == params
    assert [x for _, _, t in packed for x in t] == tags


def test_a_new_store_is_a_copy_of_the_empty_one_mlflow_built_before(tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.store.tracking import sqlalchemy_store

    built: list[str] = []
    real = sqlalchemy_store.SqlAlchemyStore

    class Counted(real):  # MLflow reads the class's attributes: a subclass, not a function
        def __init__(self, uri, *args, **kwargs):
            built.append(uri)
            super().__init__(uri, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(sqlalchemy_store, "SqlAlchemyStore", Counted)
        for name in ("first", "second"):
            open_sqlite(tmp_path / name / "mlflow.db", tmp_path / name / "artifacts")

    assert len(built) == 1  # the second store was copied: no migrations run again
    client = MlflowClient(tracking_uri=sqlite_uri(tmp_path / "second" / "mlflow.db"))
    default = client.get_experiment("0")
    assert default.artifact_location == (tmp_path / "second" / "artifacts").as_uri() + "/0"
    assert client.create_experiment("works") and client.search_experiments()
