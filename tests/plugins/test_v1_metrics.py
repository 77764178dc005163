"""A metric registered as a plain function (the v1 contract) still loads, with a deprecation
warning naming its plugin; its columns are learned from its first result and declared with no
direction, in the process that measured it and, from the rows, in the run's ``columns.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import aebench_v1
import pandas as pd
import pytest
from builders import build_suite, entry
from fake_plugins import fake_distribution
from repo import SUPPORT

import aebench
from aebench.contract.columns import COLUMNS_FILE, Column, Vocabulary
from aebench.contract.metric import LegacyMetric
from aebench.plugins.listing import vocabulary_of
from aebench.plugins.manager import load_plugins
from aebench.results.table import LOAD_ERRORS, PARQUET, declare_measured, write_vocabulary

V1 = SUPPORT / "aebench_v1.py"
SWEEP = entry("ae", hidden=[8], grid={"latent_dim": [2, 8]})


def test_a_plain_function_loads_as_a_deprecated_metric() -> None:
    plugins = load_plugins(extra=[aebench_v1])
    entry_ = plugins.metrics.get("code_energy")
    assert isinstance(entry_.factory, LegacyMetric) and entry_.factory.columns == ()
    assert list(entry_.params.model_fields) == ["scale"]  # its signature is still its schema
    assert not plugins.errors
    [deprecation] = plugins.deprecations
    assert deprecation.problem == "deprecated" and deprecation.plugin == "aebench_v1"
    assert deprecation.message.startswith(
        "plugin 'aebench_v1': deprecated: metric 'code_energy' is registered as a plain function"
        " (the v1 contract)"
    )
    assert plugins.problems == [deprecation]


def test_its_columns_are_learned_from_its_first_result() -> None:
    context = SimpleNamespace(model=None)  # it requires nothing of the trial
    metric = LegacyMetric(lambda context, scale=1.0: {"energy": 2.0 * scale})
    assert metric.measure(context).values == {"energy": 2.0}
    assert metric.columns == (Column("energy"),)  # no direction: never best, never compared
    with pytest.raises(ValueError, match="'train_s', one of the core's own"):
        LegacyMetric(lambda context: {"train_s": 1.0}).measure(context)


def test_it_runs_in_a_suite_and_its_column_is_declared_without_direction(tmp_path) -> None:
    plugins = load_plugins(extra=[aebench_v1])
    suite = build_suite(SWEEP, seeds=[0, 1, 2], metrics=["code_energy", "recon_mse"])
    run = aebench.run_suite(suite, output=tmp_path / "out", plugins=plugins)
    assert [row["status"] for row in run.rows] == ["ok"] * 6
    assert all(row["metric_errors"] == "" for row in run.rows)
    table = pd.read_parquet(run.output / PARQUET)
    assert (table["code_energy"] > 0).all()
    assert vocabulary_of(run.output).get("code_energy").better is None
    [declared] = [
        c
        for c in json.loads((run.output / COLUMNS_FILE).read_text())["columns"]
        if c["name"] == "code_energy"
    ]
    assert declared["better"] is None and declared["floor"] is None
    problems = json.loads((run.output / LOAD_ERRORS).read_text())["load_errors"]
    assert [p["problem"] for p in problems] == ["deprecated"]
    # The report shows it, with no direction and no best, beside recon_mse which has both.
    report = (run.output / "report.md").read_text()
    assert "| code_energy |" in report and "| code_energy ↑" not in report
    assert "| code_energy ↓" not in report and "| recon_mse ↓" in report
    assert "⚠ plugin problem: plugin 'aebench_v1': deprecated:" in report
    lines = report.splitlines()
    header = next(
        line for line in lines if line.startswith("| configuration") and "| code_en" in line
    )
    column = [c.strip() for c in header.strip("|").split("|")].index("code_energy")
    values = [
        [c.strip() for c in row.strip("|").split("|")][column]
        for row in lines[lines.index(header) + 2 :][:2]
    ]
    assert values and not [v for v in values if v.startswith("**")]


@pytest.mark.slow  # a spawned trial process: 8 s
def test_an_isolated_trial_learns_it_in_its_own_process(tmp_path, monkeypatch) -> None:
    site = fake_distribution(tmp_path / "site", V1)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the trial's process finds it too
    monkeypatch.delitem(sys.modules, "aebench_v1", raising=False)
    suite = build_suite(isolate=True, metrics=["code_energy"])
    run = aebench.run_suite(suite, output=tmp_path / "out")
    [row] = run.rows
    assert row["status"] == "ok" and row["metric_errors"] == "" and row["code_energy"] > 0
    # This process never measured it: the column is declared from the row.
    assert aebench.load_plugins().metrics.get("code_energy").factory.columns == ()
    assert vocabulary_of(run.output).columns["code_energy"] == Column("code_energy")


def test_declare_measured_adds_only_undeclared_measured_columns(tmp_path: Path) -> None:
    declared = Vocabulary()
    declared.add([Column("known", "higher")])
    write_vocabulary(tmp_path, declared)
    table = pd.DataFrame(
        {
            "trial_id": ["a"],
            "status": ["ok"],
            "seed": [0],
            "model.latent_dim": [2],
            "threads": [1],
            "known": [1.0],
            "learned": [2.0],
            "label": ["text"],
        }
    )
    declare_measured(tmp_path, table)
    saved = vocabulary_of(tmp_path).columns
    assert saved["learned"] == Column("learned")
    assert saved["known"].better == "higher"  # a declaration is never replaced
    assert not {"seed", "model.latent_dim", "threads", "label", "trial_id"} & set(saved)
