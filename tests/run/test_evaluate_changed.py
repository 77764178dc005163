"""``aebench evaluate`` measures again only the metrics whose settings or code changed, or that
the user names; the others keep their columns from the earlier row."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aebench_counting
import pytest
from builders import build_suite, entry

import aebench
import aebench.cli
from aebench.cli import main
from aebench.plugins.manager import Plugins, load_plugins
from aebench.run.kept import load_results, trial_of
from aebench.run.measure import unchanged_metrics

METRICS = ["counted_mean", "counted_spread", "recon_mse"]


@pytest.fixture
def counting() -> Plugins:
    aebench_counting.reset()
    return load_plugins(extra=[aebench_counting])


@pytest.fixture
def measured(counting: Plugins, tmp_path: Path) -> Path:
    """A results folder of one kept ``counting-ae`` trial, measured by ``METRICS``."""
    suite = build_suite(entry("counting-ae", latent_dim=2), epochs=1, metrics=METRICS)
    run = aebench.run_suite(suite, output=tmp_path / "out", device="cpu", plugins=counting)
    assert [row["status"] for row in run.rows] == ["ok"]
    aebench_counting.reset()
    return tmp_path / "out"


def only_row(folder: Path) -> dict:
    (row,) = load_results(folder).to_dict("records")
    return row


def test_a_changed_setting_measures_only_its_metric(
    measured: Path, counting: Plugins, monkeypatch
) -> None:
    before = only_row(measured)
    monkeypatch.setattr(aebench.cli, "load_plugins", lambda **_: counting)
    assert main(["evaluate", str(measured), "--set", "counted_mean.scale=2"]) == 0
    assert dict(aebench_counting.CALLS) == {"counted_mean": 1}  # the others were not called
    after = only_row(measured)
    assert after["eval.counted_mean.scale"] == 2
    assert after["counted_mean"] == pytest.approx(2 * before["counted_mean"])
    for kept in ("counted_spread", "recon_mse", "eval_s_counted_spread", "eval_s_recon_mse"):
        assert after[kept] == before[kept], kept
    assert after["eval_s"] >= after["eval_s_counted_spread"] + after["eval_s_recon_mse"]


def test_the_training_columns_keep_what_it_trained_on(
    measured: Path, counting: Plugins, monkeypatch
) -> None:
    # threads and device are those its speed was measured at: an evaluation at other settings
    # does not make the row say its training ran there (it said 1 thread of a 2-thread run).
    table = load_results(measured)
    table.loc[:, ["threads", "device"]] = [7, "elsewhere"]  # as if trained there
    table.to_parquet(measured / "results.parquet", index=False)
    monkeypatch.setattr(aebench.cli, "load_plugins", lambda **_: counting)
    assert main(["evaluate", str(measured), "--set", "counted_mean.scale=2"]) == 0
    after = only_row(measured)
    assert (after["threads"], after["device"]) == (7, "elsewhere")


def test_metrics_of_another_test_split_are_measured_again(
    measured: Path, counting: Plugins, monkeypatch
) -> None:
    # A row measured on a test split the dataset no longer draws (its code changed since): no
    # column of it is kept beside new ones, which would mix two test sets in one row.
    table = load_results(measured)
    now = table["test_data"].iloc[0]
    table["test_data"] = "0123456789abcdef"
    table.to_parquet(measured / "results.parquet", index=False)
    monkeypatch.setattr(aebench.cli, "load_plugins", lambda **_: counting)
    assert main(["evaluate", str(measured), "--set", "counted_mean.scale=2"]) == 0
    assert dict(aebench_counting.CALLS) == {"counted_mean": 1, "counted_spread": 1}
    assert only_row(measured)["test_data"] == now


def test_named_metrics_are_measured_again_whatever_their_settings(
    measured: Path, counting: Plugins
) -> None:
    from aebench.measure_again import evaluate

    evaluate(measured, metrics=["counted_spread", "counted_mean"], plugins=counting)
    assert dict(aebench_counting.CALLS) == {"counted_spread": 1, "counted_mean": 1}


def test_nothing_changed_measures_nothing_again(measured: Path, counting: Plugins) -> None:
    from aebench.measure_again import evaluate

    before = only_row(measured)
    evaluate(measured, plugins=counting)
    assert not aebench_counting.CALLS
    after = only_row(measured)
    assert all(after[m] == before[m] for m in METRICS)


def test_a_metric_of_another_version_is_measured_again(
    measured: Path, counting: Plugins, monkeypatch
) -> None:
    row = only_row(measured)
    trial = trial_of(measured, row["trial_id"])
    assert set(unchanged_metrics(trial, row, counting)) == set(METRICS)
    named = unchanged_metrics(trial, row, counting, again=["recon_mse"])
    assert set(named) == set(METRICS) - {"recon_mse"}
    get = counting.metrics.get
    newer = dataclasses.replace(get("counted_mean"), distribution="counting", version="2.0")
    monkeypatch.setattr(
        counting.metrics, "get", lambda name: newer if name == "counted_mean" else get(name)
    )
    assert "counted_mean" not in unchanged_metrics(
        trial, row | {"version.counting": "1.0"}, counting
    )
    assert "counted_mean" in unchanged_metrics(trial, row | {"version.counting": "2.0"}, counting)


def test_a_run_with_a_changed_setting_measures_only_its_metric(
    measured: Path, counting: Plugins
) -> None:
    """``aebench run`` after an [eval] change measures the kept models again, and only what
    changed."""
    before = only_row(measured)
    suite = build_suite(
        entry("counting-ae", latent_dim=2),
        epochs=1,
        metrics=METRICS,
        eval={"counted_mean": {"scale": 3.0}},
    )
    run = aebench.run_suite(suite, output=measured, device="cpu", plugins=counting)
    assert run.evaluated == 1
    assert dict(aebench_counting.CALLS) == {"counted_mean": 1}
    after = only_row(measured)
    assert after["counted_mean"] == pytest.approx(3 * before["counted_mean"])
    assert after["counted_spread"] == before["counted_spread"]
