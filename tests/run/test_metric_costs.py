"""What a comparison costs: each metric's wall time is a speed column of its row, declared in
``columns.json``; ``aebench run`` names the costliest metrics where measuring took longer than
training; and a suite that names no metrics measures the cheap ones and the expensive ones its
data asks for."""

from __future__ import annotations

import math
from pathlib import Path

import aebench_counting
import pytest
from builders import build_suite, entry

import aebench
import aebench.cli
from aebench import Column, Metric
from aebench.cli import main
from aebench.contract.columns import COLUMNS_FILE, Vocabulary, metric_time_column
from aebench.plugins.manager import Plugins, load_plugins
from aebench.run.measure import costliest_metrics
from aebench.run.suite import load_suite

COUNTING_AE = entry("counting-ae", latent_dim=2)


@pytest.fixture
def counting() -> Plugins:
    aebench_counting.reset()
    return load_plugins(extra=[aebench_counting])


def test_a_metric_time_column_is_a_noisy_speed_column_of_a_plain_name() -> None:
    column = metric_time_column("my-metric.v2")
    assert column.name == "eval_s_my_metric_v2"  # no dot: a dotted name is configuration
    assert (column.group, column.noisy, column.better, column.unit) == ("speed", True, "lower", "s")


def test_each_metric_time_is_in_the_row_and_declared_in_columns_json(
    counting: Plugins, tmp_path: Path
) -> None:
    metrics = ["counted_mean", "slow_metric", "dci"]  # dci needs factors this data lacks
    suite = build_suite(COUNTING_AE, epochs=1, metrics=metrics)
    run = aebench.run_suite(suite, output=tmp_path / "out", device="cpu", plugins=counting)
    (row,) = run.rows
    assert row["status"] == "ok"
    # A metric that did not apply shows no cost (not the microseconds it took to say so): NaN,
    # its reason in the row's.
    assert math.isnan(row["dci_disentanglement"]) and math.isnan(row["eval_s_dci"])
    assert "dci: the data has no ground-truth factors" in row["nan_reasons"]
    assert row["eval_s_slow_metric"] >= aebench_counting.SLOW_S
    assert 0 <= row["eval_s_counted_mean"] < aebench_counting.SLOW_S
    assert row["eval_s"] >= row["eval_s_slow_metric"] + row["eval_s_counted_mean"]
    table = aebench.load_results(tmp_path / "out")
    assert table.loc[0, "eval_s_slow_metric"] == pytest.approx(row["eval_s_slow_metric"])
    saved = Vocabulary.from_json((tmp_path / "out" / COLUMNS_FILE).read_text())
    assert saved.get("eval_s_slow_metric") == metric_time_column("slow_metric")


def test_run_names_the_costliest_metrics_where_measuring_outweighs_training(
    counting: Plugins, write_suite, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(aebench.cli, "load_plugins", lambda **_: counting)
    metrics = ["counted_mean", "slow_metric", "n_params"]
    suite = write_suite(build_suite(COUNTING_AE, epochs=1, batch_size=512, metrics=metrics))
    assert main(["run", str(suite), "--output", str(tmp_path / "out")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "took" in line]
    assert len(lines) == 3 and "metric 'slow_metric' took" in lines[0], lines


def test_no_costliest_metrics_where_training_took_longer() -> None:
    rows = [{"train_s": 2.0, "eval_s": 1.0, "eval.metrics": '["a"]', "eval_s_a": 1.0}]
    assert costliest_metrics(rows) == []
    rows[0]["train_s"] = 0.5
    assert costliest_metrics(rows) == [("a", 1.0)]


def test_the_default_metrics_are_the_cheap_ones_and_the_expensive_ones_the_data_asks_for(
    counting: Plugins, write_suite
) -> None:
    def selected(every: bool = False, **changes) -> list[str]:
        suite = build_suite(COUNTING_AE, **{"metrics": None} | changes)
        if every:
            suite["eval"] = {"metrics": "all"}
        return load_suite(write_suite(suite), counting).trials[0].eval["metrics"]

    default = selected()
    assert {"counted_mean", "counted_spread", "recon_mse", "fid", "mig"} <= set(default)
    assert "factor_hungry" in default  # it asks for data with factors: NaN on digits, not run
    assert not {"slow_metric", "log_px_exact"} & set(default)  # expensive, for any data
    assert "slow_metric" in selected(eval={"slow_metric": {}})  # its table names it
    assert "log_px_exact" in selected(eval={"iwae_samples": 10})  # an alias sets its parameter
    everything = selected(every=True)
    assert set(everything) == set(counting.metrics.names())


def test_an_unknown_cost_is_refused() -> None:
    with pytest.raises(ValueError, match="cost"):
        Metric(lambda context: {}, columns=[Column("x")], cost="pricey")  # type: ignore[arg-type]


def test_the_built_in_expensive_metrics_are_marked(plugins: Plugins) -> None:
    expensive = {e.name for e in plugins.metrics if e.factory.cost == "expensive"}
    assert {"log_px_exact", "fid", "beta_vae_score", "dci"} <= expensive
    assert not {"recon_mse", "elbo", "knn_acc", "n_params"} & expensive
