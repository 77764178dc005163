"""`aebench compare NEW BASELINE`: configurations matched without their seeds, seed means against
the baseline's spread, each metric's better direction, speed by a relative tolerance, exit
statuses."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from timing import scaled

from aebench.cli import main
from aebench.contract.columns import COLUMNS_FILE, Column, Vocabulary
from aebench.views.compare import compare

NAN = float("nan")

# What the tables' metrics declare (saved beside each table, as `aebench run` does).
VOCABULARY = Vocabulary()
VOCABULARY.add(
    [
        Column("recon_mse", "lower", floor=1e-3),
        Column("knn_acc", "higher", floor=0.01),
        Column("elbo", "higher", floor=0.5),
    ]
)

# Per latent size, per metric: one value per seed (0, 1, 2).
BASELINE = {
    2: {
        "recon_mse": [0.050, 0.052, 0.051],
        "knn_acc": [0.80, 0.90, 0.85],  # noisy over seeds: std 0.05
        "train_samples_per_s": [1000.0, 1100.0, 1050.0],
        "elbo": [NAN, NAN, NAN],  # a deterministic model has none
    },
    8: {
        "recon_mse": [0.020, 0.021, 0.022],
        "knn_acc": [0.950, 0.952, 0.951],
        "train_samples_per_s": [2000.0, 2010.0, 1990.0],
        "elbo": [NAN, NAN, NAN],
    },
}


def results(values: dict, seeds=(0, 1, 2), status: str = "ok", run: str = "a") -> pd.DataFrame:
    rows = []
    for latent, metrics in values.items():
        for i, seed in enumerate(seeds):
            rows.append(
                {
                    "trial_id": f"{run}{latent}{seed}",  # a hash that includes the seed
                    "dataset": "digits",
                    "model": "ae",
                    "regularizer": "none",
                    "seed": seed,
                    "status": status,
                    "reason": "",
                    "model.latent_dim": latent,
                    "model.hidden": "[64]",
                    "train.epochs": 10,
                    "eval.metrics": None,
                    "device": "cpu",
                    **{name: per_seed[i] for name, per_seed in metrics.items()},
                }
            )
    return pd.DataFrame(rows)


def changed(**changes: list[float]) -> dict:
    """The baseline's values with some replaced: ``recon_mse_8=[...]``."""
    values = copy.deepcopy(BASELINE)
    for key, per_seed in changes.items():
        metric, latent = key.rsplit("_", 1)
        values[int(latent)][metric] = per_seed
    return values


@pytest.fixture
def write(tmp_path: Path):
    def write(table: pd.DataFrame, name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)  # overwritten: a test may compare several tables
        table.to_parquet(folder / "results.parquet", index=False)
        (folder / COLUMNS_FILE).write_text(VOCABULARY.to_json())
        return folder

    return write


def run_compare(write, new: pd.DataFrame, *options: str) -> int:
    baseline = write(results(BASELINE), "baseline")
    return main(["compare", str(write(new, "new")), str(baseline), *options])


def test_the_same_results_under_other_seeds_do_not_regress(write, capsys) -> None:
    # Other seeds, other trial ids, the same numbers: matched by configuration, nothing changed.
    status = run_compare(write, results(BASELINE, seeds=(3, 4, 5), run="b"))
    out = capsys.readouterr().out
    assert status == 0
    assert "6 comparisons over 2 configurations: 0 regressed" in out


def test_a_worse_lower_is_better_metric_regresses_and_is_named(write, capsys) -> None:
    status = run_compare(write, results(changed(recon_mse_8=[0.030, 0.031, 0.032])))
    out = capsys.readouterr().out
    assert status == 1
    (line,) = [line for line in out.splitlines() if line.strip().startswith("regressed")]
    assert "model.latent_dim=8" in line and "recon_mse" in line
    assert "1 regressed (1 quality, 0 speed)" in out


def test_a_better_value_is_an_improvement_not_a_failure(write, capsys) -> None:
    status = run_compare(write, results(changed(recon_mse_8=[0.010, 0.011, 0.012])))
    out = capsys.readouterr().out
    assert status == 0
    assert "improved" in out and "0 regressed" in out and "1 improved" in out


def test_a_drop_within_the_seed_noise_passes_unless_the_tolerance_is_tightened(write) -> None:
    # knn_acc of latent 2: baseline mean 0.85, std 0.05; a new mean of 0.78 is 1.4 std lower.
    new = results(changed(knn_acc_2=[0.77, 0.78, 0.79]))
    assert run_compare(write, new) == 0
    assert run_compare(write, new, "--quality-tolerance", "1") == 1


def test_the_allowance_is_k_baseline_stds_or_the_metrics_floor() -> None:
    comparison = compare(
        results(changed(knn_acc_2=[0.5, 0.5, 0.5])), results(BASELINE), vocabulary=VOCABULARY
    )
    rows = comparison.rows.set_index(["config", "metric"])
    noisy = rows.loc[("digits/ae/none model.latent_dim=2", "knn_acc")]
    quiet = rows.loc[("digits/ae/none model.latent_dim=8", "knn_acc")]
    assert noisy["allowed"] == pytest.approx(2 * np.std([0.80, 0.90, 0.85], ddof=1))
    assert noisy["change"] == pytest.approx(0.5 - 0.85)
    assert noisy["verdict"] == "regressed"
    # A near-constant baseline: the floor, not 2 x a tiny std.
    assert quiet["allowed"] == VOCABULARY.get("knn_acc").floor
    # The ELBO is NaN for both: not compared at all.
    assert "elbo" not in set(comparison.rows["metric"])


def test_a_slowdown_beyond_the_relative_tolerance_fails_only_when_speed_counts(write) -> None:
    slower = results(changed(train_samples_per_s_8=[1400.0, 1400.0, 1400.0]))  # 30% slower
    assert run_compare(write, slower) == 1
    assert run_compare(write, slower, "--fail-on", "quality") == 0
    assert run_compare(write, slower, "--speed-tolerance", "0.5") == 0
    slightly = results(changed(train_samples_per_s_8=[1800.0, 1800.0, 1800.0]))  # 10% slower
    assert run_compare(write, slightly) == 0


def test_a_configuration_that_no_longer_trains_is_a_quality_regression(write, capsys) -> None:
    new = results(BASELINE)
    new.loc[new["model.latent_dim"] == 8, "status"] = "diverged"
    assert run_compare(write, new) == 1
    out = capsys.readouterr().out
    assert "regressed (diverged)" in out and "status" in out


def test_configurations_on_one_side_only_are_listed_not_failed(write, capsys) -> None:
    new = results({2: BASELINE[2], 16: BASELINE[8]})
    assert run_compare(write, new) == 0
    out = capsys.readouterr().out
    assert "only in the baseline: digits/ae/none model.latent_dim=8" in out
    assert "only in the new table: digits/ae/none model.latent_dim=16" in out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["missing", "baseline"], "missing: no such results table"),
        (["new", "baseline", "--fail-on", "memory"], "--fail-on: memory is not one of"),
        (["new", "baseline", "--speed-tolerance", "-1"], "--speed-tolerance must be"),
        (["not-a-table", "baseline"], "not an aebench results table"),
        (["other", "baseline"], "no configuration matches"),
    ],
)
def test_bad_input_is_one_line_and_status_2(write, tmp_path, capsys, arguments, message) -> None:
    write(results(BASELINE), "baseline")
    write(results(BASELINE), "new")
    write(pd.DataFrame({"x": [1]}), "not-a-table")
    write(results({4: BASELINE[2]}), "other")
    status = main(
        ["compare", *(str(tmp_path / a) if i < 2 else a for i, a in enumerate(arguments))]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_command_exits_1_on_a_regression_from_the_shell(write) -> None:
    baseline = write(results(BASELINE), "baseline")
    new = write(results(changed(knn_acc_8=[0.5, 0.5, 0.5])), "new")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aebench.cli",
            "compare",
            str(new / "results.parquet"),
            str(baseline),
        ],
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert done.returncode == 1, done.stderr
    assert "knn_acc" in done.stdout and done.stderr == ""


def test_csv_tables_and_integer_valued_floats_match_their_parquet_twins(write, tmp_path) -> None:
    baseline = results(BASELINE)
    new = results(BASELINE).astype({"model.latent_dim": float})  # 8.0 after a NaN, say
    csv = tmp_path / "new.csv"
    new.to_csv(csv, index=False)
    comparison = compare(pd.read_csv(csv), baseline, vocabulary=VOCABULARY)
    assert not comparison.only_in_new and not comparison.only_in_baseline
    assert len(comparison.rows) == 6 and not math.isnan(comparison.rows["new"].iloc[0])


def test_rows_of_another_likelihood_protocol_are_refused_not_compared(write, capsys) -> None:
    # The same numbers, but latent 8's likelihood was a Bernoulli in the baseline: its ELBO
    # would be a mass of binarised pixels against a density of grey levels.
    base, new = results(BASELINE), results(BASELINE, seeds=(3, 4, 5), run="b")
    for table, likelihood in ((base, "bernoulli"), (new, "discretized-logistic-17")):
        table["likelihood"] = np.where(table["model.latent_dim"] == 8, likelihood, "same")
        table["binarize"] = "none"
    status = main(["compare", str(write(new, "new")), str(write(base, "baseline"))])
    out = capsys.readouterr().out
    assert status == 1
    (line,) = [line for line in out.splitlines() if line.strip().startswith("incomparable")]
    assert "model.latent_dim=8" in line and "likelihood=bernoulli, binarize=none -> " in line
    assert "discretized-logistic-17" in line
    assert "1 incomparable" in out and "0 regressed" in out
    # Latent 2, of one protocol on both sides, is compared as before; latent 8 is not at all.
    comparison = compare(new, base, vocabulary=VOCABULARY)
    assert set(comparison.rows.loc[comparison.rows["metric"] != "protocol", "config"]) == {
        "digits/ae/none model.latent_dim=2"
    }


def test_seeds_that_disagree_beyond_the_limit_are_unstable_not_a_wider_allowance(
    write, capsys
) -> None:
    # One seed of latent 8 collapsed: knn_acc 0.95, 0.95, 0.10 (std 0.49, 49 floors of 0.01).
    # The old rule allowed 2 x 0.49 = 0.98: even a drop to 0.0 would have passed.
    collapsed = results(changed(knn_acc_8=[0.95, 0.95, 0.10]))
    new = results(changed(knn_acc_8=[0.0, 0.0, 0.0]))
    assert main(["compare", str(write(new, "new")), str(write(collapsed, "base"))]) == 1
    out = capsys.readouterr().out
    assert "unstable" in out and "1 unstable" in out
    comparison = compare(new, collapsed, vocabulary=VOCABULARY)
    row = comparison.rows.set_index(["config", "metric"]).loc[
        ("digits/ae/none model.latent_dim=8", "knn_acc")
    ]
    assert row["verdict"] == "unstable"
    assert "limit 0.1" in row["note"]  # 10 floors of 0.01
    # A new run whose own seeds disagree is unstable too, against a steady baseline.
    wild = results(changed(knn_acc_8=[0.95, 0.95, 0.10]))
    verdicts = compare(wild, results(BASELINE), vocabulary=VOCABULARY).rows
    assert "unstable" in set(verdicts["verdict"])
    # Within the limit (std 0.05 = 5 floors), it is compared as before.
    assert compare(results(BASELINE), results(BASELINE), vocabulary=VOCABULARY).regressions().empty
    # Under a limit of 60 floors the old allowance is back, and the drop to 0.0 passes.
    loose = compare(new, collapsed, vocabulary=VOCABULARY, unstable_spread=60)
    row = loose.rows.set_index(["config", "metric"]).loc[
        ("digits/ae/none model.latent_dim=8", "knn_acc")
    ]
    assert row["verdict"] == "same"


def test_unstable_fails_only_under_quality(write) -> None:
    collapsed = results(changed(knn_acc_8=[0.95, 0.95, 0.10]))
    assert run_compare(write, collapsed, "--fail-on", "speed") == 0
    assert run_compare(write, collapsed, "--fail-on", "quality") == 1


@pytest.mark.parametrize("fail_on", ["both", "quality,speed"])
def test_fail_on_both_means_quality_and_speed(write, fail_on: str) -> None:
    slower = results(changed(train_samples_per_s_8=[1400.0, 1400.0, 1400.0]))
    assert run_compare(write, slower, "--fail-on", fail_on) == 1
