"""The harness's fixed costs: loading plugins, expanding a 1,000-trial grid, the quick suite end to
end, and the `aebench --help` / `aebench list` commands."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from workloads import SIZES, SMOKE, SUMMARY, median, recording

from aebench.plugins.manager import load_plugins
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite

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
    """run_trials on benchmarks/quick.toml, no observers (so no MLflow), into a fresh folder."""
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
        recording(lambda output: run_trials(suite, plugins, output=output), seconds),
        setup=fresh_output,
        rounds=1,
    )
    assert run.counts == {"ok": len(suite.trials)}
    SUMMARY.append(f"quick suite: {len(suite.trials)} trials end to end in {seconds[0]:.1f} s")


CLI_COSTS: dict[str, float] = {}  # command -> median seconds, for the ratios in the summary


def _fresh_interpreter_seconds(
    benchmark, command: list[str], env: dict, before_each: Callable[[], None] = lambda: None
) -> float:
    seconds: list[float] = []

    def arguments() -> tuple[tuple, dict]:
        before_each()
        return (command,), {"capture_output": True, "env": env}

    done = benchmark.pedantic(
        recording(subprocess.run, seconds), setup=arguments, rounds=SIZES.rounds
    )
    assert done.returncode == 0, done.stderr
    return median(seconds)


@pytest.mark.parametrize("reference", ["python", "torch"])
def test_interpreter_start(benchmark, reference: str) -> None:
    """The references: a Python that starts and imports nothing of ours, and one that imports
    torch (what every command cost when it imported torch)."""
    code = "pass" if reference == "python" else "import torch"
    command = [sys.executable, "-c", code]
    CLI_COSTS[reference] = _fresh_interpreter_seconds(benchmark, command, dict(os.environ))


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["plugins"]])
def test_cli_fixed_cost(benchmark, argv: list[str], tmp_path: Path) -> None:
    """A fresh interpreter each time: imports are the cost. ``list`` and ``plugins`` show the
    listing saved by an untimed first call (aebench.plugins.listing), as on a user's machine."""
    env = dict(os.environ, AEBENCH_CACHE=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "aebench.cli", *argv]
    subprocess.run(command, capture_output=True, env=env, check=True)
    seconds = _fresh_interpreter_seconds(benchmark, command, env)
    _summarise(" ".join(argv), seconds)


def test_list_without_a_saved_listing(benchmark, tmp_path: Path) -> None:
    """``aebench list`` the first time, or after a plugin changed: every plugin is imported."""
    caches = (tmp_path / f"cache{i}" for i in itertools.count())
    env = dict(os.environ)

    def fresh_cache() -> None:
        env["AEBENCH_CACHE"] = str(next(caches))

    command = [sys.executable, "-m", "aebench.cli", "list"]
    seconds = _fresh_interpreter_seconds(benchmark, command, env, before_each=fresh_cache)
    _summarise("list (nothing saved)", seconds)


def _summarise(name: str, seconds: float) -> None:
    CLI_COSTS[name] = seconds
    ratios = [
        f"{seconds / CLI_COSTS[reference]:.2f}x {what}"
        for reference, what in (("python", "a bare interpreter"), ("torch", "`import torch`"))
        if reference in CLI_COSTS
    ]
    against = f" ({', '.join(ratios)})" if ratios else ""
    SUMMARY.append(f"aebench {name}: median {seconds:.2f} s, a fresh interpreter each{against}")
