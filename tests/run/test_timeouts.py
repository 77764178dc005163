"""Trial time limits: a hung trial is failed ("timed out after N s") and the suite goes on, in
this process (checked between steps and metrics) and isolated (the child killed); an isolated
trial's child dies with its parent, even one killed by ``kill -9``."""

from __future__ import annotations

import functools
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aebench_hangs
import pytest
import torch
from builders import QUICK_AE, build_suite, entry, start_run
from fake_plugins import fake_distribution
from timing import scaled, slowdown, wait_until

from aebench.plugins.manager import load_plugins
from aebench.run import stopping
from aebench.run.isolation import ISOLATED_TIMEOUT
from aebench.run.loop import run_trials
from aebench.run.orphans import _watch_parent
from aebench.run.plan import load_datasets
from aebench.run.suite import SuiteError, load_suite

HANGS = Path(aebench_hangs.__file__)


def hangs_suite(
    params: dict[str, Any], ae: bool = True, sleep: float | None = None, **settings: Any
) -> dict[str, Any]:
    """The ``hangs`` model with ``params``, then (``ae``) a quick ``ae``; with ``sleep``, the
    ``sleepy`` metric first, sleeping that long."""
    models = [entry("hangs", **params), *([QUICK_AE] if ae else [])]
    if sleep is not None:
        settings |= {"metrics": ["sleepy", "recon_mse"], "eval": {"sleepy": {"seconds": sleep}}}
    return build_suite(*models, name="timeouts", epochs=3, **settings)


def run_here(write_suite, tmp_path: Path, built: dict[str, Any]) -> dict[str, dict]:
    """Run the suite in this process, the plugin imported; rows by model."""
    plugins = load_plugins(extra=[aebench_hangs])
    suite = load_suite(write_suite(built), plugins)
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


def hangs_pid(markers: Path) -> int | None:
    """The pid of the process training the ``hangs`` model, once it has started."""
    found = list(markers.glob("hangs-*"))
    return int(found[0].name.split("-")[1]) if found else None


def limit_of(seconds: float) -> float:
    """A trial limit of ``seconds`` on an idle machine, on this one: tenths, as a suite says."""
    return round(scaled(seconds), 1)


def test_trial_timeout_is_a_positive_number_of_seconds(write_suite):
    plugins = load_plugins(extra=[aebench_hangs])
    assert load_suite(write_suite(hangs_suite({}, trial_timeout=90)), plugins)
    for bad in (0, -1, "1h", math.inf):
        with pytest.raises(SuiteError, match="suite.trial_timeout"):
            load_suite(write_suite(hangs_suite({}, trial_timeout=bad)), plugins)


def test_a_trial_stuck_in_training_is_failed_at_a_step_and_the_suite_goes_on(write_suite, tmp_path):
    # Each step sleeps 0.1 s: 3 epochs of 28 steps would take 8.4 s. The ae trains in a fraction
    # of the limit. Times are an idle machine's, scaled to this one's speed, as every time here.
    limit, step_s = limit_of(0.5), round(scaled(0.1), 2)
    rows = run_here(write_suite, tmp_path, hangs_suite({"step_s": step_s}, trial_timeout=limit))
    assert rows["hangs"]["status"] == "failed"
    assert rows["hangs"]["reason"] == f"timed out after {limit:g} s"
    assert rows["ae"]["status"] == "ok"  # the next trial had a limit of its own


def test_a_metric_past_the_limit_fails_its_trial_before_the_next_metric(write_suite, tmp_path):
    # Training takes a fraction of the limit; the first metric sleeps past it.
    limit = limit_of(1)
    rows = run_here(write_suite, tmp_path, hangs_suite({}, sleep=1.2 * limit, trial_timeout=limit))
    for model in ("hangs", "ae"):
        assert rows[model]["status"] == "failed"
        assert rows[model]["reason"] == f"timed out after {limit:g} s"
        assert "recon_mse" not in rows[model]  # the metric after the limit never ran


def test_without_a_limit_nothing_times_out(write_suite, tmp_path):
    rows = run_here(write_suite, tmp_path, hangs_suite({}, sleep=0.2))
    assert [row["status"] for row in rows.values()] == ["ok", "ok"]
    assert ISOLATED_TIMEOUT >= 3600  # isolated trials without a limit: hours, not minutes


@pytest.mark.slow  # a child process and a time limit it must reach: 15 s
def test_a_hung_isolated_trial_is_killed_at_its_limit(write_suite, tmp_path, monkeypatch):
    # (The suite goes on after an isolated trial's failed row: test_faults' segfault test.)
    # The child process finds the plugin through its entry point, on sys.path: the plugins are
    # loaded after it is put there.
    site = fake_distribution(tmp_path / "site", HANGS)
    monkeypatch.syspath_prepend(str(site))
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("MARKERS", str(markers))
    plugins = load_plugins()
    limit = math.ceil(scaled(5))  # past the child's start (torch, plugins, data)
    built = hangs_suite({"hang": True}, ae=False, isolate=True, trial_timeout=limit)
    suite = load_suite(write_suite(built), plugins)
    start = time.monotonic()
    [row] = run_trials(suite, plugins, output=tmp_path / "out").rows
    took, ended = time.monotonic() - start, time.time()
    assert row["status"] == "failed"
    assert row["reason"] == f"timed out after {limit} s"
    assert took >= limit
    child = hangs_pid(markers)
    assert child is not None, "the hung trial never started"  # it did start training, and hung
    # The limit runs from the child's start (torch, plugins and data loaded, which takes longer
    # the busier the machine) to its kill: timed from its first step (its marker), it ends there.
    hung = ended - (markers / f"hangs-{child}").stat().st_mtime
    assert limit - scaled(2) <= hung < limit + scaled(5), f"{hung:.1f} s ({slowdown():.2f}x)"
    assert not alive(child)


@pytest.mark.slow
def test_an_isolated_child_ends_with_its_parent_killed_or_terminated(write_suite, tmp_path):
    # Two runs at once, each with a child hung for good (no limit: the 24 h default): kill -9 of
    # one, SIGTERM to the other.
    site = fake_distribution(tmp_path / "site", HANGS)
    suite = write_suite(hangs_suite({"hang": True}, ae=False, isolate=True))
    runs = {
        way: start_run(suite, site=site, cwd=tmp_path / way, markers=tmp_path / way / "markers")
        for way in ("killed", "terminated")
    }
    killed, terminated = runs["killed"], runs["terminated"]
    children = []
    try:
        for way, process in runs.items():
            found = functools.partial(hangs_pid, tmp_path / way / "markers")
            children.append(wait_until(found, "the hung trial never started", process))

        start = time.monotonic()
        killed.kill()  # nothing of it runs: the child must see to itself
        # (its stderr is the child's too: open while the child runs)
        killed.communicate(timeout=scaled(10))
        wait_until(lambda: not alive(children[0]), f"child {children[0]} still runs", within=5)
        orphaned = time.monotonic() - start

        start = time.monotonic()
        terminated.send_signal(signal.SIGTERM)
        _, stderr = terminated.communicate(timeout=scaled(30))
        took = time.monotonic() - start
        assert terminated.returncode == 128 + signal.SIGTERM, stderr
        assert "aebench: interrupted; finished trials are saved, run again to resume" in stderr
        assert "Traceback" not in stderr
        assert took < scaled(5), f"{took:.1f} s after SIGTERM (slowdown {slowdown():.2f})"
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
    _watch_parent(os.getppid() + 1, group=False, interval=0.01)
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


@pytest.mark.slow  # a fresh interpreter, where torch has loaded nothing on first use yet: 5 s
def test_a_limit_starts_after_what_torch_loads_on_first_use(write_suite, tmp_path):
    # before: the first in-process trial's limit started before its first optimizer imported
    # torch._dynamo (seconds; more than ten on a loaded machine), charged to the trial.
    suite = write_suite(build_suite(epochs=1, trial_timeout=600))
    script = f"""
import sys
from pathlib import Path
from aebench.plugins.manager import load_plugins
from aebench.run import stopping
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite

loaded = []
deadline = stopping.deadline
def noting_what_is_loaded(limit):
    loaded.append("torch._dynamo" in sys.modules)
    return deadline(limit)
stopping.deadline = noting_what_is_loaded
plugins = load_plugins()
assert "torch._dynamo" not in sys.modules
suite = load_suite({str(suite)!r}, plugins)
run = run_trials(suite, plugins, output=Path({str(tmp_path / "out")!r}))
assert [row["status"] for row in run.rows] == ["ok"], run.rows
print(loaded)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[True]"]
