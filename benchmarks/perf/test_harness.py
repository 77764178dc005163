"""The harness's fixed costs: loading plugins, expanding a 1,000-trial grid, the quick suite end to
end, and the `aebench --help` / `aebench list` commands."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from workloads import SIZES, SMOKE, SUMMARY, median, recording

from aebench.plugins import load_plugins
from aebench.runner import run_suite
from aebench.suite import load_suite

QUICK = Path(__file__).resolve().parents[1] / "quick.toml"


def test_load_plugins(benchmark) -> None:
    plugins = benchmark(load_plugins)
    assert "ae" in plugins.models and not plugins.errors


def test_expand_a_1000_trial_grid(benchmark, plugins, tmp_path: Path) -> None:
    seeds = 20
    latent_sizes = SIZES.suite_trials // seeds
    suite_file = tmp_path / "grid.toml"
    suite_file.write_text(
        f"""
[suite]
name = "grid"
seeds = {list(range(seeds))}

[[datasets]]
plugin = "digits"

[[models]]
plugin = "ae"
grid = {{ latent_dim = {list(range(1, latent_sizes + 1))} }}
"""
    )
    suite = benchmark(load_suite, suite_file, plugins)
    assert len(suite.trials) == SIZES.suite_trials


def test_quick_suite_end_to_end(benchmark, plugins, tmp_path: Path) -> None:
    """run_suite on benchmarks/quick.toml, no observers (so no MLflow), into a fresh folder."""
    suite = load_suite(QUICK, plugins)
    if SMOKE:  # one epoch of two trials (an ae and a vae)
        step = len(suite.trials) // 2
        suite.trials = [
            dataclasses.replace(t, train={**t.train, "epochs": 1}) for t in suite.trials[::step]
        ]
    folders = (tmp_path / f"run{i}" for i in itertools.count())

    def fresh_output() -> tuple[tuple, dict]:
        return (), {"output": next(folders)}

    seconds: list[float] = []
    run = benchmark.pedantic(
        recording(lambda output: run_suite(suite, plugins, output=output), seconds),
        setup=fresh_output,
        rounds=1,
    )
    assert run.counts == {"ok": len(suite.trials)}
    SUMMARY.append(f"quick suite: {len(suite.trials)} trials end to end in {seconds[0]:.1f} s")


@pytest.mark.parametrize("argv", [["--help"], ["list"]])
def test_cli_fixed_cost(benchmark, argv: list[str]) -> None:
    """A fresh interpreter each time: imports are the cost."""
    command = [sys.executable, "-m", "aebench.cli", *argv]
    seconds: list[float] = []
    done = benchmark.pedantic(
        recording(subprocess.run, seconds),
        args=(command,),
        kwargs={"capture_output": True},
        rounds=SIZES.rounds,
    )
    assert done.returncode == 0
    SUMMARY.append(
        f"aebench {' '.join(argv)}: median {median(seconds):.2f} s of {len(seconds)} (each a fresh"
        " interpreter)"
    )
