"""What a comparison costs beyond its training and measuring: ``aebench run`` on the quick suite as
a user runs it (a fresh interpreter, every built-in observer: figures, report, MLflow), its wall
time against the sum of its trials' ``train_s + eval_s``, and the same command again with nothing
left to run (issue 31's targets: wall <= 1.3 x training + measuring; a no-op run in a few
seconds, most of them loading the plugins). Beside them, the floor any run pays before its first
trial, timed in the same machine state: the 1.3x leaves (0.3 x work - floor) for bookkeeping; and
this suite's floor, which adds the libraries its data and its default metrics load in the run's
process (scikit-learn, for the digits and the clustering and probes; pandas and pyarrow, for the
results table): a run in one process cannot do better than (work + that floor) / work."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
from workloads import SMOKE, SUMMARY, recording

QUICK = Path(__file__).resolve().parents[1] / "quick.toml"
# What a run does before it can train: load the plugins, import torch and build an optimizer
# (torch.optim imports torch._dynamo on its first step, about a second); then out without the
# interpreter's teardown, as the command leaves (``aebench.cli.console``).
STARTUP = (
    "from aebench.plugins.manager import load_plugins; load_plugins(); import torch;"
    " torch.optim.Adam([torch.zeros(1, requires_grad=True)]).zero_grad();"
)
EXIT = " import os; os._exit(0)"
SUITE_LIBRARIES = (
    " from sklearn.datasets import load_digits; load_digits();"
    " import sklearn.cluster, sklearn.linear_model, sklearn.neighbors, sklearn.metrics;"
    " import aebench.results.table;"
)


def _suite(folder: Path) -> Path:
    """The quick suite, its MLflow store in ``folder``; under smoke, one seed of one epoch."""
    text = QUICK.read_text()
    if SMOKE:
        text = re.sub(r"seeds = \[.*\]", "seeds = [0]", text)
        text = re.sub(r"epochs = \d+", "epochs = 1", text)
    store = (folder / "mlflow.db").resolve().as_posix()
    text += f'\n[observers.mlflow]\nuri = "sqlite:///{store}"\n'
    path = folder / "quick.toml"
    path.write_text(text)
    return path


def test_quick_suite_wall_time_against_its_training_and_measuring(benchmark, tmp_path) -> None:
    suite = _suite(tmp_path)
    outputs = (tmp_path / f"run{i}" for i in itertools.count())
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["AEBENCH_CACHE"] = str(tmp_path / "cache")

    def command(output: Path) -> list[str]:
        return [sys.executable, "-m", "aebench.cli", "run", str(suite), "--output", str(output)]

    def arguments() -> tuple[tuple, dict]:
        return (command(next(outputs)),), {"capture_output": True, "text": True, "env": env}

    seconds: list[float] = []
    done = benchmark.pedantic(recording(subprocess.run, seconds), setup=arguments, rounds=1)
    assert done.returncode == 0, done.stderr
    output = Path(done.args[-1])
    table = pd.read_parquet(output / "results.parquet")
    assert (table["status"] == "ok").all()
    work = float((table["train_s"] + table["eval_s"]).sum())

    again: list[float] = []
    rerun = recording(subprocess.run, again)(command(output), capture_output=True, env=env)
    assert rerun.returncode == 0, rerun.stderr

    floor: list[float] = []  # what any run pays before its first trial, in the same machine state
    for code in (STARTUP + EXIT, STARTUP + SUITE_LIBRARIES + EXIT):
        recording(subprocess.run, floor)([sys.executable, "-c", code], check=True, env=env)

    wall = seconds[0]
    SUMMARY.append(
        f"quick suite via `aebench run`: {len(table)} trials, wall {wall:.1f} s against"
        f" {work:.1f} s of training and measuring ({wall / work:.2f}x; target <= 1.3x);"
        f" its floor, importing torch, its optimizer and the plugins: {floor[0]:.1f} s"
        f" ({(work + floor[0]) / work:.2f}x); with the libraries this suite's data, metrics and"
        f" table load: {floor[1]:.1f} s ({(work + floor[1]) / work:.2f}x);"
        f" again with nothing to run: {again[0]:.1f} s"
    )
