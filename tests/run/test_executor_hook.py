"""Executors are plugins: ``aebench run --executor NAME`` runs any registered one (a third party's
too), with its parameters from the command line checked against its factory's signature; the
built-ins (local, isolated, dask) register through the same hook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from builders import build_tiny_suite
from fake_plugins import fake_distribution
from repo import SUPPORT
from timing import scaled

import aebench
from aebench.cli import main
from aebench.run import executors
from aebench.run.executors import LocalExecutor, Workload, make_executor

TOY = SUPPORT / "aebench_toy_executor.py"


def aebench_in(site: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``aebench ARGV`` in a fresh interpreter with the fake distributions of ``site``."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aebench.cli", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=scaled(300),
        check=False,
    )


@pytest.mark.slow
def test_a_third_party_executor_runs_a_suite_from_the_command_line(write_suite, tmp_path):
    suite = write_suite(build_tiny_suite(seeds=[0], metrics=["recon_mse"]))
    site = fake_distribution(tmp_path / "site", TOY)
    log = tmp_path / "ran.txt"
    done = aebench_in(
        site, tmp_path, "run", str(suite), "--output", "out", "--executor", "toy",
        "--executor-set", f"log={log}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert len(table) == 2 and set(table["status"]) == {"ok"}
    # The toy ran them, last first: the ids it logged are the suite's, reversed.
    suite_order = [line.split()[1] for line in dry_run_lines(site, tmp_path, suite)]
    assert log.read_text().split() == suite_order[::-1]
    assert set(table["trial_id"]) == set(suite_order)

    listed = aebench_in(site, tmp_path, "list", "executors")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("  ")]
    assert {"local", "isolated", "dask", "toy"} <= set(names)
    assert "Trials here, last first, each id appended to LOG." in listed.stdout
    assert "      log: str = required" in listed.stdout


def dry_run_lines(site: Path, cwd: Path, suite: Path) -> list[str]:
    done = aebench_in(site, cwd, "run", str(suite), "--output", "fresh", "--dry-run")
    assert done.returncode == 0, done.stderr
    return [line.strip() for line in done.stdout.splitlines() if line.startswith("  pending")]


@pytest.fixture
def run_aebench(tmp_path, monkeypatch, capsys):
    """``aebench ARGS`` in-process in tmp_path: (exit status, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str]:
        status = main(list(args))
        return status, capsys.readouterr().err

    return run


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--executor", "slurm"],
            "aebench: error: --executor slurm: unknown executor 'slurm' (known: dask, isolated,"
            " local)",
        ),
        (
            ["--executor", "local", "--workers", "2"],
            "aebench: error: --executor local: executor 'local' (aebench 0.1.0) takes no"
            " parameter 'workers' (it takes: no parameters)",
        ),
        (
            ["--executor", "dask", "--executor-set", "workers=0"],
            "aebench: error: --executor dask: executor 'dask' (aebench 0.1.0): workers: Input"
            " should be greater than or equal to 1",
        ),
        (
            ["--executor", "dask", "--executor-set", "workers"],
            "aebench: error: --executor-set workers: expected KEY=VALUE",
        ),
    ],
)
def test_a_bad_executor_is_one_line_and_writes_nothing(run_aebench, tiny_suite, argv, expected):
    status, err = run_aebench("run", str(tiny_suite), "--output", "out", *argv)
    assert (status, err.strip()) == (2, expected)
    assert not Path("out").exists()


def test_the_isolated_executor_isolates_every_trial_whatever_the_suite_says(plugins, monkeypatch):
    ran: list[str] = []

    def in_a_child(trial, *args, **kwargs):
        ran.append(trial.id)
        return {"trial_id": trial.id}, aebench.TrialOutcome()

    monkeypatch.setattr(executors, "run_isolated", in_a_child)
    monkeypatch.setattr(executors, "run_trial", lambda *a, **k: pytest.fail("ran in-process"))
    trials = [FakeTrial("a"), FakeTrial("b")]
    work = Workload(trials, plugins, device=None, cache=None, isolate=False)  # type: ignore[arg-type]
    executor = make_executor(plugins, "isolated", {})
    assert isinstance(executor, aebench.Executor) and isinstance(executor, LocalExecutor)
    started: list[str] = []
    finished = list(executor.run(work, lambda trial: started.append(trial.id)))
    assert ran == started == ["a", "b"]
    assert [row["trial_id"] for _, row, _ in finished] == ["a", "b"]


class FakeTrial:
    def __init__(self, trial_id: str) -> None:
        self.id = trial_id


def test_executor_parameters_are_validated_against_the_factory_signature(plugins):
    entry = plugins.executors.get("dask")
    assert set(entry.params.model_fields) == {"workers", "scheduler"}
    assert plugins.executors.get("local").distribution == "aebench"
