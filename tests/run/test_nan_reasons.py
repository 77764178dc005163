"""Every NaN in a measured row says why: the reason its metric gave for the column
(``aebench.Measurement``), or that it gave none; kept by ``aebench evaluate`` with the columns
it keeps."""

from __future__ import annotations

import math
from pathlib import Path

import aebench_nan_reasons as planted
import pytest
from builders import build_suite

import aebench
from aebench.plugins.manager import Plugins, load_plugins
from aebench.run.kept import load_results
from aebench.run.nan_reasons import NO_REASON, nan_reasons, parse_nan_reasons

METRICS = ["partly", "silent", "overclaims"]
KNOWN = {*METRICS, "partly_a", "partly_b", "silent_c", "silent_d", "overclaims_e", "peak_mem_mb"}


@pytest.fixture
def plugins() -> Plugins:
    planted.CALLS.clear()
    return load_plugins(extra=[planted])


@pytest.fixture
def measured(plugins: Plugins, tmp_path: Path) -> Path:
    suite = build_suite(epochs=1, metrics=METRICS)
    run = aebench.run_suite(suite, output=tmp_path / "out", device="cpu", plugins=plugins)
    assert [row["status"] for row in run.rows] == ["ok"]
    planted.CALLS.clear()
    return tmp_path / "out"


def reasons_of(folder: Path) -> dict[str, str]:
    (row,) = load_results(folder).to_dict("records")
    return parse_nan_reasons(row["nan_reasons"], KNOWN)


def test_a_nan_column_has_its_metrics_reason_or_is_said_to_have_none(measured: Path) -> None:
    (row,) = load_results(measured).to_dict("records")
    assert row["partly_a"] == 1.0 and math.isnan(row["partly_b"])
    reasons = reasons_of(measured)
    assert reasons["partly_b"] == planted.WHY
    assert reasons["silent_d"] == NO_REASON
    assert "partly" not in reasons and "partly_a" not in reasons and "silent_c" not in reasons
    assert math.isfinite(row["eval_s_partly"])  # it measured: its time is a cost


def test_a_reason_for_a_measured_column_breaks_the_contract(measured: Path) -> None:
    (row,) = load_results(measured).to_dict("records")
    assert math.isnan(row["overclaims_e"])
    assert "gave a reason for 'overclaims_e', which it returned no NaN in" in row["metric_errors"]


@pytest.mark.parametrize("changed, kept", [("partly", "silent"), ("silent", "partly")])
def test_a_kept_metric_keeps_its_reasons(
    measured: Path, plugins: Plugins, changed: str, kept: str
) -> None:
    before = reasons_of(measured)
    aebench.evaluate(measured, sets=[f"{changed}.scale=2"], plugins=plugins)
    assert planted.CALLS[changed] == 1 and planted.CALLS[kept] == 0
    (row,) = load_results(measured).to_dict("records")
    assert row[f"{changed}_{'a' if changed == 'partly' else 'c'}"] == 2.0
    assert reasons_of(measured) == before


def test_reasons_read_back_as_written() -> None:
    reasons = {"partly_b": planted.WHY, "silent_d": NO_REASON, "silent": NO_REASON, "x": "y: z"}
    assert parse_nan_reasons(nan_reasons(reasons), {*KNOWN, "x"}) == reasons
    assert parse_nan_reasons("", KNOWN) == {}
