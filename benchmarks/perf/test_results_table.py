"""The results table's cost per finished trial, beside a table of 10^4 rows: recording the trial's
row (its ``row.json`` and one journal line, what ``aebench run`` does after each trial) against
rewriting the whole table (``results.parquet`` and ``results.csv``, what it did before, and still
does once when a run ends). The two alternate, so that both see the same machine load."""

from __future__ import annotations

import itertools
import random
import statistics
from pathlib import Path
from typing import Any

import pandas as pd
from workloads import SMOKE, SUMMARY, timed

from aebench.results.table import read_results, record_row, write_results

ROWS = 1_000 if SMOKE else 10_000
ROUNDS = 1 if SMOKE else 15
TARGET_S = 0.05  # the bound on one trial's write at 10^4 rows
METRICS = 40  # columns of numbers, about what the built-in metrics write


def trial_row(i: int, rng: random.Random) -> dict[str, Any]:
    """A row shaped like a real one: identity, flattened parameters, status, metrics, versions."""
    row: dict[str, Any] = {
        "trial_id": f"{i:016x}",
        "dataset": "digits",
        "model": "vae",
        "regularizer": "none",
        "seed": i,
        "status": "ok",
        "reason": "",
        "warnings": "",
        "model.hidden": "[64]",
        "model.latent_dim": 2 + i % 8,
        "train.epochs": 15,
        "train.batch_size": 64,
        "train.lr": 0.002,
        "eval_id": "0a1b2c3d4e5f6789",
        "eval.metrics": '["recon_mse", "elbo", "log_px_iwae"]',
        "eval.log_px_iwae.samples": 100,
        "device": "cpu",
        "version.aebench": "0.1.0",
        "version.torch": "2.5.0",
        "likelihood": "discretized-logistic-17",
        "binarize": "",
        "nan_reasons": "",
        "metric_errors": "",
    }
    row |= {f"metric_{k}": rng.gauss(0.0, 1.0) for k in range(METRICS)}
    return row


def test_per_trial_table_write(benchmark, tmp_path: Path) -> None:
    rng = random.Random(0)
    table = pd.DataFrame([trial_row(i, rng) for i in range(ROWS)])
    recorded, rewritten = tmp_path / "recorded", tmp_path / "rewritten"
    write_results(recorded, table)
    write_results(rewritten, table)
    fresh = (trial_row(i, rng) for i in itertools.count(ROWS))
    times: dict[str, list[float]] = {"record": [], "rewrite": []}

    def rewrite() -> None:  # pytest-benchmark's untimed setup: the reference, in turn
        nonlocal table
        row = next(fresh)
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        times["rewrite"].append(timed(lambda: write_results(rewritten, table)))

    def record() -> None:
        row = next(fresh)
        times["record"].append(timed(lambda: record_row(recorded, row)))

    benchmark.pedantic(record, setup=rewrite, rounds=ROUNDS)
    after = read_results(recorded)
    assert len(after) == ROWS + ROUNDS and after["trial_id"].is_unique  # every row, once

    per_trial = statistics.median(times["record"])
    whole = statistics.median(times["rewrite"])
    benchmark.extra_info.update({"record_s": per_trial, "rewrite_s": whole, "rows": ROWS})
    SUMMARY.append(
        f"results table of {ROWS} rows: a trial's row recorded in {per_trial * 1e3:.2f} ms, the"
        f" whole table rewritten in {whole * 1e3:.0f} ms ({whole / per_trial:.0f}x; the issue's"
        f" bound per trial: {TARGET_S * 1e3:.0f} ms)"
    )
    if not SMOKE:
        assert per_trial < TARGET_S
