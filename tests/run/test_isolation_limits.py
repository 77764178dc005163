"""Isolated trials' limits and what they leave behind: the trial's limit starts once its process
has loaded (a slow start-up has a limit of its own, and a reason of its own), and whatever the
trial started goes with it: at its limit, on SIGTERM of the run, and on ``kill -9`` of the run.

The ``spawner`` plugin (tests/support/aebench_spawner.py) loads its data slowly in the trial's
process, and starts ``sleep 300`` there when asked, leaving its pid in ``$MARKERS``."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path
from typing import Any

import aebench_spawner
import isolated_children
import pytest
import torch
from builders import build_suite, entry, start_run
from fake_plugins import fake_distribution
from timing import scaled, wait_until

from aebench.plugins.manager import load_plugins
from aebench.run import isolation
from aebench.run.data import DataCache
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite

SPAWNER = Path(aebench_spawner.__file__)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody has reaped yet does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def sleep_pid(markers: Path) -> int | None:
    """The pid of the ``sleep 300`` a trial started, once it has."""
    found = list(markers.glob("sleep-*"))
    return int(found[0].name.split("-")[1]) if found else None


def spawner_suite(load_s: float = 0.0, **model: Any) -> dict[str, Any]:
    """One isolated ``spawner`` trial (``model`` its parameters) on data ``load_s`` seconds slow
    to load in the trial's process."""
    dataset = entry("slow_blobs", load_s=load_s)
    return build_suite(
        entry("spawner", **model), name="isolation", datasets=[dataset], isolate=True
    )


@pytest.fixture
def run_isolated_suite(write_suite, tmp_path, monkeypatch):
    """Run a suite here, its isolated trials' processes finding the plugin through its entry
    point; returns the one row."""
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path / "site", SPAWNER)))
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("MARKERS", str(markers))

    def run(built: dict[str, Any]) -> dict[str, Any]:
        plugins = load_plugins()
        [row] = run_trials(
            load_suite(write_suite(built), plugins), plugins, output=tmp_path / "out"
        ).rows
        return row

    return run


@pytest.mark.slow  # a child's start-up, data and all: 5 s and more
def test_a_slow_start_is_not_charged_to_an_isolated_trial(run_isolated_suite):
    # Loading the data alone takes longer than the trial's limit; training takes a fraction of it.
    limit = round(scaled(1), 1)
    built = spawner_suite(load_s=1.5 * limit)
    built["suite"]["trial_timeout"] = limit
    row = run_isolated_suite(built)
    assert row["status"] == "ok", row.get("reason")


def test_a_child_that_does_not_load_in_time_did_not_start(run_isolated_suite, monkeypatch):
    startup = round(scaled(0.5), 1)
    monkeypatch.setattr(isolation, "STARTUP_TIMEOUT", startup)
    built = spawner_suite(load_s=3 * startup)
    built["suite"]["trial_timeout"] = 3600
    row = run_isolated_suite(built)
    assert row["status"] == "failed"
    assert row["reason"] == f"did not start within {startup:g} s"


@pytest.mark.slow  # a child's start-up, data and all: 5 s and more
def test_a_timed_out_trial_takes_what_it_started_with_it(run_isolated_suite, tmp_path):
    # (Held on the code before the start-up limit too: the group was killed at the limit.)
    limit = round(scaled(1), 1)
    built = spawner_suite(spawn=True, hang=True)
    built["suite"]["trial_timeout"] = limit
    row = run_isolated_suite(built)
    assert row["reason"] == f"timed out after {limit:g} s"
    sleeping = sleep_pid(tmp_path / "markers")
    assert sleeping is not None, "the trial never started its process"
    wait_until(lambda: not alive(sleeping), f"sleep {sleeping} outlived its trial", within=10)


@pytest.mark.slow
def test_what_an_isolated_trial_started_ends_with_a_run_killed_or_terminated(write_suite, tmp_path):
    # Two runs at once, each with a trial hung for good after starting `sleep 300`: kill -9 of
    # one (before the fix its sleep lived on, handed to init), SIGTERM to the other. (No figures:
    # their drawing worker is not the trial's, and is not what this test is about.)
    site = fake_distribution(tmp_path / "site", SPAWNER)
    built = spawner_suite(spawn=True, hang=True)
    built["observers"]["figures"] = {"enabled": False}
    suite = write_suite(built)
    runs = {
        way: start_run(suite, site=site, cwd=tmp_path / way, markers=tmp_path / way / "markers")
        for way in ("killed", "terminated")
    }
    sleeping: dict[str, int] = {}
    try:
        for way, process in runs.items():
            found = functools.partial(sleep_pid, tmp_path / way / "markers")
            sleeping[way] = wait_until(found, "the trial never started its process", process)
        runs["killed"].kill()  # nothing of it runs: what it started must see to itself
        runs["killed"].wait()
        wait_until(lambda: not alive(sleeping["killed"]), "sleep outlived kill -9", within=10)
        runs["terminated"].send_signal(signal.SIGTERM)
        _, stderr = runs["terminated"].communicate(timeout=scaled(30))
        assert runs["terminated"].returncode == 128 + signal.SIGTERM, stderr
        wait_until(lambda: not alive(sleeping["terminated"]), "sleep outlived SIGTERM", within=10)
    finally:
        for process in runs.values():
            if process.poll() is None:
                process.kill()
        for pid in sleeping.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_child_that_exits_is_failed_with_its_own_exit_status(tmp_path, monkeypatch):
    # before: its pipe's end of file killed it at once, and the reason read "killed by SIGKILL",
    # aebench's own kill, whatever the child was exiting with.
    monkeypatch.setattr(isolation, "_child", isolated_children.exits_slowly_after_closing_its_pipe)
    plugins = load_plugins()
    suite = load_suite(build_suite(epochs=1), plugins)
    trial = suite.trials[0]
    row, _ = isolation.run_isolated(trial, plugins, torch.device("cpu"), DataCache(plugins))
    assert row["status"] == "failed"
    assert row["reason"] == "trial process exited with status 3 before reporting"
