"""A metric is measured in its own guard: one that raises or breaks its declaration loses its own
columns (NaN, and an entry in ``metric_errors`` naming it and its plugin), never the trial or the
other metrics."""

from __future__ import annotations

import math

import pytest
from builders import build_suite, entry

import aebench
from aebench import Column, Metric, hookimpl, load_plugins


def raising(context) -> dict[str, float]:
    """Always raises."""
    raise RuntimeError("the metric's own bug\nwith a second line")


def a_string(context) -> dict[str, float]:
    """Returns text."""
    return {"as_text": "0.5"}


def infinite(context) -> dict[str, float]:
    """Returns infinity."""
    return {"infinite_value": math.inf}


def identity_thief(context) -> dict[str, float]:
    """Returns a trial's identity among its values."""
    return {"thief": 1.0, "trial_id": "someone-else", "seed": 7.0}


BROKEN = {
    "raising": (Metric(raising, columns=[Column("raised")]), "RuntimeError: the metric's own bug"),
    "a_string": (Metric(a_string, columns=[Column("as_text")]), "a finite number"),
    "infinite": (Metric(infinite, columns=[Column("infinite_value")]), "infinite_value = inf"),
    "identity_thief": (Metric(identity_thief, columns=[Column("thief")]), "it declares"),
}


class BrokenMetrics:
    @hookimpl
    def aebench_register_metrics(self, register):
        for name, (metric, _) in BROKEN.items():
            register(name, metric)


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_metric_costs_its_own_columns_only(name: str, tmp_path) -> None:
    metric, message = BROKEN[name]
    suite = build_suite(
        entry("ae", latent_dim=2, hidden=[8]),
        name="isolated",
        seeds=[0, 1],
        epochs=1,
        batch_size=None,  # the default
        metrics=["recon_mse", name, "n_params"],
    )
    plugins = load_plugins(extra=[BrokenMetrics()])
    run = aebench.run_suite(suite, output=tmp_path / "out", device="cpu", plugins=plugins)
    assert len(run.rows) == 2  # two trials, two rows: no identity was overwritten
    assert {row["seed"] for row in run.rows} == {0, 1}
    for row in run.rows:
        assert row["status"] == "ok"
        assert math.isfinite(row["recon_mse"]) and row["n_params"] > 0  # the others measured
        for column in metric.column_names:
            assert math.isnan(row[column])
        assert row["metric_errors"].startswith(f"metric {name!r}")
        assert message in row["metric_errors"] and "\n" not in row["metric_errors"]
    table = aebench.load_results(tmp_path / "out")  # the table on disk holds them too
    assert len(table) == 2 and set(table["status"]) == {"ok"}
