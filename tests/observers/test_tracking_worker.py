"""MLflow off the run's path: a worker process logs each trial while the next one trains; the
run's own process never imports mlflow, and a worker that dies or stalls costs one line."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from builders import as_toml, build_suite, entry
from mlflow_runs import search_runs
from test_tracking_deadlines import locked, made_store, mlflow_lines
from timing import scaled

from aebench.observers import tracking_worker
from aebench.observers.tracking import MlflowTracker
from aebench.observers.tracking_store import sqlite_uri
from aebench.plugins.manager import load_plugins
from aebench.results.table import read_results
from aebench.run.loop import run_trials
from aebench.run.observing import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.run.suite import TrackingSection, Trial, load_suite

SUITE = build_suite(
    entry("ae", hidden=[8], latent_dim=2),
    name="worker",
    seeds=[0, 1],
    epochs=1,
    batch_size=256,
    tracking={"enabled": True},
)


def run_tracked(
    folder: Path, tracker: MlflowTracker, *after: SuiteObserver
) -> tuple[SuiteRun, float]:
    """The two-trial suite, run here into ``folder/out``: ``tracker``, then ``after``; and how
    long the run took."""
    path = folder / "suite.toml"
    path.write_text(as_toml(SUITE))
    plugins = load_plugins()
    start = time.monotonic()
    run = run_trials(
        load_suite(path, plugins), plugins, output=folder / "out", observers=[tracker, *after]
    )
    return run, time.monotonic() - start


class OnTrial(SuiteObserver):
    """Does ``act()`` as the ``n``-th trial starts (``at="started"``) or finishes."""

    def __init__(self, n: int, at: str, act) -> None:
        self.n, self.at, self.act, self.seen = n, at, act, 0

    def trial_started(self, trial: Trial) -> None:
        if self.at == "started":
            self._count()

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        if self.at == "finished":
            self._count()

    def _count(self) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.act()


def worker_pid(tracker: MlflowTracker) -> int:
    assert tracker._worker is not None, "a worker serves the run"
    return tracker._worker.process.pid


@pytest.mark.slow  # an end-to-end run of 12-13 s
def test_a_run_never_imports_mlflow_in_its_own_process(tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    uri = sqlite_uri(tmp_path / "mlflow.db")
    suite.write_text(as_toml({**SUITE, "observers": {"mlflow": {"uri": uri}}}))
    code = textwrap.dedent(
        f"""
        import sys
        from aebench.cli import main
        assert main(["run", {str(suite)!r}, "--output", {str(tmp_path / "out")!r}]) == 0
        print(sorted(m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    runs = search_runs(uri, search_all_experiments=True)  # yet the store has it all, at once
    assert sorted(runs["status"]) == ["FINISHED"] * 3  # two trials and the invocation


def test_the_next_trial_trains_while_a_busy_store_holds_the_first_ones_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The store is locked by another process until the second trial starts: the first trial's
    run waits for it in the worker, not in the run (which would have waited up to 30 s for it,
    the second trial not started, then given up on MLflow)."""
    database = made_store(tmp_path)
    tracker = MlflowTracker(TrackingSection(uri=sqlite_uri(database), experiment="worker"))
    with locked(database) as release:
        run, _ = run_tracked(tmp_path, tracker, OnTrial(2, "started", release.start))

    assert run.counts == {"ok": 2}
    assert not tracker.failed
    for line in mlflow_lines(capsys.readouterr().err):  # if the worker met the lock: said once
        assert line.endswith("is busy (locked by another process); retrying for up to 30 s")
    runs = search_runs(sqlite_uri(database), experiment_names=["worker"])
    assert sorted(runs["status"]) == ["FINISHED"] * 3
    assert sorted(tracker.trial_run_ids) == sorted(read_results(tmp_path / "out")["trial_id"])
    # Each run ends when its trial did, not when the store let the worker log it (the first
    # one after the second trial had started): an MLflow duration is the trial's.
    first, second = runs[runs["tags.aebench.trial_id"].notna()].sort_values("start_time").iloc
    assert first["end_time"] <= second["start_time"]


def test_a_killed_worker_is_one_line_the_run_succeeds_and_the_next_run_repairs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    uri = sqlite_uri(tmp_path / "store" / "mlflow.db")
    tracker = MlflowTracker(TrackingSection(uri=uri, experiment="worker"))
    kill = OnTrial(1, "finished", lambda: os.kill(worker_pid(tracker), signal.SIGKILL))
    run, _ = run_tracked(tmp_path, tracker, kill)

    assert run.counts == {"ok": 2}
    assert sorted(read_results(tmp_path / "out")["status"]) == ["ok", "ok"]
    assert tracker.failed
    [line] = mlflow_lines(capsys.readouterr().err)
    assert "the MLflow worker process was killed by signal 9" in line
    assert "the next run adds their MLflow runs" in line and "Traceback" not in line

    again = MlflowTracker(TrackingSection(uri=uri, experiment="worker"))
    rerun, _ = run_tracked(tmp_path, again)  # nothing left to train: a fresh worker repairs
    assert rerun.rows == [] and not again.failed
    assert not mlflow_lines(capsys.readouterr().err)
    runs = search_runs(uri, experiment_names=["worker"])
    trials = runs[runs["tags.aebench.trial_id"].notna() & (runs["status"] == "FINISHED")]
    finished = sorted(trials["tags.aebench.trial_id"])  # one each, whatever the worker had done
    assert finished == sorted(read_results(tmp_path / "out")["trial_id"])
    assert (runs["status"] != "RUNNING").all()


def test_a_worker_that_stalls_is_given_up_at_its_deadline(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = sqlite_uri(tmp_path / "store" / "mlflow.db")
    tracker = MlflowTracker(TrackingSection(uri=uri, experiment="worker"))
    monkeypatch.setattr(tracking_worker, "LOCAL_WORK_S", 1.0)  # a second to answer each message

    def stall() -> None:  # stopped, its last word allowing it one more second
        assert tracker._worker is not None
        os.kill(worker_pid(tracker), signal.SIGSTOP)
        time.sleep(0.2)  # what it said before it stopped is heard
        tracker._worker._beat = (time.monotonic(), 1.0)

    run, elapsed = run_tracked(tmp_path, tracker, OnTrial(2, "finished", stall))

    assert run.counts == {"ok": 2} and tracker.failed
    [line] = mlflow_lines(capsys.readouterr().err)
    assert "the MLflow worker went past its deadline without a word" in line
    assert elapsed < scaled(30)


def test_work_sent_to_an_idle_worker_starts_its_clock_again() -> None:
    """A one-epoch dSprites VAE measured for 97 s: at the run's end the worker's last word (60 s
    allowed) was 97 s old, and the run stopped it as stuck, though it had only waited for work;
    nothing more went to MLflow. Its clock runs from the work it is given."""
    worker = tracking_worker.acquire(lambda message: None)
    try:
        worker._beat = (time.monotonic() - 1000.0, tracking_worker.LOCAL_WORK_S)  # a trial ago
        assert worker.time_left() < 0
        worker.send(("nothing to do",))  # a message it reads and ignores
        assert worker.time_left() > tracking_worker.LOCAL_WORK_S - 5
    finally:
        worker.close()


@pytest.mark.slow  # a fresh interpreter: 6 s
def test_what_the_run_sends_the_worker_unpickles_without_torch(tmp_path: Path, monkeypatch) -> None:
    """The worker imports no torch: every message of a run (its rows, curves, folders) is plain
    data. A row's torch version, a ``TorchVersion``, once made it import torch for each trial."""
    sent: list[bytes] = []
    send = tracking_worker.Worker.send

    def recorded(self: tracking_worker.Worker, message: object) -> None:
        sent.append(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        send(self, message)

    monkeypatch.setattr(tracking_worker.Worker, "send", recorded)
    uri = sqlite_uri(tmp_path / "mlflow.db")
    run_tracked(tmp_path, MlflowTracker(TrackingSection(uri=uri)))
    assert len(sent) >= 4  # the run's start, two trials, its end
    (tmp_path / "sent.pickle").write_bytes(pickle.dumps(sent))
    check = (
        "import pickle, sys; [pickle.loads(m) for m in pickle.load(open(sys.argv[1], 'rb'))];"
        " print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", check, str(tmp_path / "sent.pickle")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"
