"""What other tests stand on: the suites of builders.py load as the files they replace, and the
time limits of timing.py scale with this machine and fail at once on a process that died."""

from __future__ import annotations

import subprocess
import sys

import pytest
from builders import as_toml, build_suite, build_tiny_suite, entry
from conftest import TINY_SUITE
from timing import scaled, slowdown, wait_until

from aebench.run.suite import load_suite


def test_the_built_tiny_suite_has_the_trials_of_the_written_one(plugins, write_suite) -> None:
    off = "\n[observers.mlflow]\nenabled = false\n"
    written = load_suite(write_suite(TINY_SUITE + off), plugins)
    built = load_suite(build_tiny_suite(), plugins)
    assert [t.id for t in built.trials] == [t.id for t in written.trials]
    assert len(built.trials) == 4


def test_a_built_suite_is_the_same_from_its_file(plugins, write_suite) -> None:
    built = build_suite(
        entry("ae", hidden=[8], grid={"latent_dim": [2, 3]}),
        datasets=[entry("digits", binarize="static")],
        metrics=None,
        train={"lr": 1e-30},
        eval={"log_px_iwae": {"samples": 7}},
        seeds=[0, 1],
        trial_timeout=1.5,
    )
    from_file = load_suite(write_suite(built), plugins)
    assert load_suite(built, plugins).trials == from_file.trials
    assert "trial_timeout = 1.5\n" in as_toml(built)
    assert [t.train["lr"] for t in from_file.trials] == [1e-30] * 4


def test_a_limit_scales_with_the_measured_slowdown_never_below_the_idle_one() -> None:
    assert slowdown() >= 1
    assert scaled(2) == pytest.approx(2 * slowdown())


def test_waiting_gives_what_came_and_fails_at_once_when_the_process_is_gone() -> None:
    assert wait_until(lambda: [3], "never") == [3]
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    with pytest.raises(AssertionError):
        wait_until(lambda: False, "never", ended)
