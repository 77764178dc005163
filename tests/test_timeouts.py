"""Trial time limits: a hung trial is failed ("timed out after N s") and the suite goes on, in
this process (checked between steps and metrics) and isolated (the child killed); an isolated
trial's child dies with its parent, even one killed by ``kill -9``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aebench_hangs
import pytest
import torch
from fake_plugins import fake_distribution

from aebench.plugins.manager import load_plugins
from aebench.run import stopping
from aebench.run.isolation import ISOLATED_TIMEOUT, _watch_parent
from aebench.run.loop import run_trials
from aebench.run.plan import load_datasets
from aebench.run.suite import SuiteError, load_suite

HANGS = Path(aebench_hangs.__file__)

SUITE = """
[suite]
name = "timeouts"
device = "cpu"
{suite}

[train]
epochs = {epochs}
batch_size = 64

[eval]
metrics = {metrics}
{sleepy}
[tracking]
enabled = false

[[datasets]]
plugin = "digits"

[[models]]
plugin = "hangs"
params = {{ {params} }}
{ae}"""

AE = """
[[models]]
plugin = "ae"
params = { hidden = [8] }
"""


def suite_text(
    suite: str = "",
    params: str = "",
    metrics: str = '["recon_mse"]',
    epochs: int = 3,
    sleep: float = 0.0,
    ae: bool = True,
) -> str:
    """The ``hangs`` model with ``params``, then (``ae``) a quick ``ae``."""
    sleepy = f"\n[eval.sleepy]\nseconds = {sleep}\n" if "sleepy" in metrics else ""
    return SUITE.format(
        suite=suite,
        params=params,
        metrics=metrics,
        epochs=epochs,
        sleepy=sleepy,
        ae=AE if ae else "",
    )


def run_here(write_suite, tmp_path: Path, text: str) -> dict[str, dict]:
    """Run the suite in this process, the plugin imported; rows by model."""
    plugins = load_plugins(extra=[aebench_hangs])
    suite = load_suite(write_suite(text), plugins)
    cache = load_datasets(suite, plugins, torch.device("cpu"))  # loaded before the limits count
    run = run_trials(suite, plugins, output=tmp_path / "out", cache=cache)
    return {row["model"]: row for row in run.rows}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody has reaped yet does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def wait_gone(pid: int, within: float) -> float:
    """Seconds until ``pid`` no longer runs; fails after ``within``."""
    start = time.monotonic()
    while alive(pid):
        assert time.monotonic() - start < within, f"process {pid} still runs"
        time.sleep(0.02)
    return time.monotonic() - start


def marker_pid(markers: Path, process: subprocess.Popen | None = None, timeout=60) -> int:
    """The pid of the process training the ``hangs`` model, once it has started."""
    deadline = time.monotonic() + timeout
    while not (found := list(markers.glob("hangs-*"))):
        if process is not None:
            assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the hung trial never started"
        time.sleep(0.02)
    return int(found[0].name.split("-")[1])


def test_trial_timeout_is_a_positive_number_of_seconds(write_suite):
    plugins = load_plugins(extra=[aebench_hangs])
    assert load_suite(write_suite(suite_text("trial_timeout = 90")), plugins)
    for bad in ("0", "-1", '"1h"', "inf"):
        with pytest.raises(SuiteError, match="suite.trial_timeout"):
            load_suite(write_suite(suite_text(f"trial_timeout = {bad}")), plugins)


def test_a_trial_stuck_in_training_is_failed_at_a_step_and_the_suite_goes_on(write_suite, tmp_path):
    # Each step sleeps 0.1 s: 3 epochs of 28 steps would take 8.4 s.
    text = suite_text("trial_timeout = 0.5", params="step_s = 0.1")
    rows = run_here(write_suite, tmp_path, text)
    assert rows["hangs"]["status"] == "failed"
    assert rows["hangs"]["reason"] == "timed out after 0.5 s"
    assert rows["ae"]["status"] == "ok"  # the next trial had a limit of its own


def test_a_metric_past_the_limit_fails_its_trial_before_the_next_metric(write_suite, tmp_path):
    # Training takes a fraction of the second; the first metric sleeps past the limit.
    text = suite_text("trial_timeout = 1", metrics='["sleepy", "recon_mse"]', sleep=1.2)
    rows = run_here(write_suite, tmp_path, text)
    for model in ("hangs", "ae"):
        assert rows[model]["status"] == "failed"
        assert rows[model]["reason"] == "timed out after 1 s"
        assert "recon_mse" not in rows[model]  # the metric after the limit never ran


def test_without_a_limit_nothing_times_out(write_suite, tmp_path):
    text = suite_text(metrics='["sleepy", "recon_mse"]', sleep=0.2)
    rows = run_here(write_suite, tmp_path, text)
    assert [row["status"] for row in rows.values()] == ["ok", "ok"]
    assert ISOLATED_TIMEOUT >= 3600  # isolated trials without a limit: hours, not minutes


def test_a_hung_isolated_trial_is_killed_at_its_limit(write_suite, tmp_path, monkeypatch):
    # (The suite goes on after an isolated trial's failed row: test_faults' segfault test.)
    # The child process finds the plugin through its entry point, on sys.path.
    site = fake_distribution(tmp_path / "site", HANGS)
    monkeypatch.syspath_prepend(str(site))
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("MARKERS", str(markers))
    plugins = load_plugins()
    limit = 5  # past the child's start (torch, plugins, data), under load too
    text = suite_text(f"isolate = true\ntrial_timeout = {limit}", params="hang = true", ae=False)
    suite = load_suite(write_suite(text), plugins)
    start = time.monotonic()
    [row] = run_trials(suite, plugins, output=tmp_path / "out").rows
    took = time.monotonic() - start
    assert row["status"] == "failed"
    assert row["reason"] == f"timed out after {limit} s"
    assert limit <= took < limit + 5
    child = marker_pid(markers, timeout=0)  # it did start training, and hung there
    assert not alive(child)


def start_isolated_hang(suite: Path, site: Path, cwd: Path) -> subprocess.Popen:
    """``aebench run`` of the isolated trial that hangs (no limit: the 24 h default)."""
    (cwd / "markers").mkdir(parents=True)
    env = {
        **os.environ,
        "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "MARKERS": str(cwd / "markers"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "aebench.cli", "run", str(suite)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_an_isolated_child_ends_with_its_parent_killed_or_terminated(write_suite, tmp_path):
    # Two runs at once, each with a child hung for good: kill -9 of one, SIGTERM to the other.
    site = fake_distribution(tmp_path / "site", HANGS)
    suite = write_suite(suite_text("isolate = true", params="hang = true", ae=False))
    killed = start_isolated_hang(suite, site, tmp_path / "killed")
    terminated = start_isolated_hang(suite, site, tmp_path / "terminated")
    children = []
    try:
        children = [marker_pid(tmp_path / "killed" / "markers", killed)]
        children.append(marker_pid(tmp_path / "terminated" / "markers", terminated))

        start = time.monotonic()
        killed.kill()  # nothing of it runs: the child must see to itself
        killed.communicate(timeout=10)  # (its stderr is the child's too: open while it runs)
        wait_gone(children[0], within=5)
        orphaned = time.monotonic() - start

        start = time.monotonic()
        terminated.send_signal(signal.SIGTERM)
        _, stderr = terminated.communicate(timeout=30)
        took = time.monotonic() - start
        assert terminated.returncode == 128 + signal.SIGTERM, stderr
        assert "aebench: interrupted; finished trials are saved, run again to resume" in stderr
        assert "Traceback" not in stderr
        assert took < 5, f"{took:.1f} s after SIGTERM"
        assert not alive(children[1])
    finally:
        for process in (killed, terminated):
            if process.poll() is None:
                process.kill()
        for child in children:
            if alive(child):
                os.kill(child, signal.SIGKILL)
    print(f"child gone {orphaned:.2f} s after kill -9; run ended {took:.2f} s after SIGTERM")


def test_the_watchdog_ends_a_child_whose_parent_is_gone(monkeypatch):
    # Where the kernel cannot tell a child of its parent's death (not Linux), the watchdog
    # sees that it was handed to another parent, and leaves at once.
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    _watch_parent(os.getppid() + 1, interval=0.01)
    assert exits == [1]


def test_a_deadline_is_checked_only_where_it_is_set():
    stopping.check()  # no limit, no signal: nothing happens
    with stopping.deadline(0.01):
        time.sleep(0.02)
        with pytest.raises(stopping.TrialTimeout, match=r"^timed out after 0\.01 s$"):
            stopping.check()
    stopping.check()  # the limit was that trial's alone
    with stopping.deadline(None):
        stopping.check()
