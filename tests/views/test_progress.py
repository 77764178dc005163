"""The line per finished trial that `aebench run` prints into a pipe: each trial's own time."""

from __future__ import annotations

import io
import re

import pytest

from aebench.run.suite import Component, Trial
from aebench.views import progress
from aebench.views.progress import SuiteProgress


def trial(seed: int) -> Trial:
    return Trial(
        dataset=Component("digits", {}),
        model=Component("vae", {}),
        regularizer=Component("none", {}),
        train={"epochs": 1},
        eval={},
        seed=seed,
    )


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """The progress module's monotonic clock, set by the test: ``clock[0]`` seconds."""
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def seconds_shown(stream: io.StringIO) -> list[float]:
    return [float(s) for s in re.findall(r": \w+.*\((\d+\.\d) s, ", stream.getvalue())]


def test_trials_trained_together_each_show_their_own_share_not_the_groups_time(clock) -> None:
    stream = io.StringIO()
    shown = SuiteProgress(stream)
    group = [trial(seed) for seed in range(3)]
    shown.suite_started(None, None, group)  # type: ignore[arg-type]
    for t in group:  # a stacked group: all start together
        shown.trial_started(t)
    clock[0] += 90.0  # trained together for 90 s, then each measured
    for i, t in enumerate(group):
        clock[0] += 2.0
        shown.trial_finished(t, {"status": "ok", "train_s": 30.0, "eval_s": 2.0 + i}, None)  # type: ignore[arg-type]
    assert seconds_shown(stream) == [32.0, 33.0, 34.0]


def test_a_trial_without_recorded_times_shows_the_wall_time_since_its_own_start(clock) -> None:
    stream = io.StringIO()
    shown = SuiteProgress(stream)
    first, second = trial(0), trial(1)
    shown.suite_started(None, None, [first, second])  # type: ignore[arg-type]
    shown.trial_started(first)
    clock[0] += 5.0
    shown.trial_started(second)  # overlapping, as on a cluster
    clock[0] += 1.0
    failed = {"status": "failed", "reason": "boom", "train_s": float("nan")}
    shown.trial_finished(first, failed, None)  # type: ignore[arg-type]
    clock[0] += 3.0
    shown.trial_finished(second, {"status": "failed", "reason": "boom"}, None)  # type: ignore[arg-type]
    assert seconds_shown(stream) == [6.0, 4.0]
