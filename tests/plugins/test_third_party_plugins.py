"""Plugins from separate distributions, found through their entry points: a metric that declares
itself (its parameter, its direction in the report, its floor in `aebench compare`), an observer
that hears every trial, a model whose error names its distribution, a package that fails to
import, and a package whose own plugins run with every built-in blocked."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from fake_plugins import fake_distribution
from repo import SUPPORT

import aebench
from aebench import MetricContext, SuiteObserver
from aebench.cli import main
from aebench.results.table import PARQUET

HERE = SUPPORT
SCORES = HERE / "aebench_scores.py"
MISSING_DEP = HERE / "aebench_missing_dep.py"
STANDALONE = HERE / "aebench_standalone.py"

SUITE = """
[suite]
name = "scored"
seeds = [0]
device = "cpu"

[train]
epochs = 2
batch_size = 128

[eval]
metrics = ["code_spread", "recon_mse"]
{eval}

[observers.mlflow]
enabled = false

[[datasets]]
plugin = "digits"

[[models]]
plugin = "ae"
params = {{ hidden = [16] }}
grid = {{ latent_dim = [2, 8] }}
"""


def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: Path) -> Path:
    """``module`` as an installed distribution of its own, visible to importlib.metadata."""
    site = fake_distribution(tmp_path / f"site-{module.stem}", module)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, module.stem, raising=False)
    return site


class Keeper(SuiteObserver):
    """Keeps the trained models, to measure them again here."""

    def __init__(self) -> None:
        self.models: dict[str, tuple] = {}

    def trial_finished(self, trial, row, outcome):
        self.models[trial.id] = (outcome.model, outcome.data)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory):
    """One run of a suite that uses the third-party metric (scale 3) and observer."""
    tmp_path = tmp_path_factory.mktemp("scored")
    with pytest.MonkeyPatch.context() as monkeypatch:
        installed(tmp_path, monkeypatch, SCORES)
        monkeypatch.chdir(tmp_path)
        suite = tmp_path / "suite.toml"
        suite.write_text(textwrap.dedent(SUITE.format(eval="[eval.code_spread]\nscale = 3.0")))
        keeper = Keeper()
        run = aebench.run_suite(suite, output=tmp_path / "out", observers=[keeper])
        yield run, keeper


def test_the_metric_comes_from_its_distribution(tmp_path, monkeypatch) -> None:
    installed(tmp_path, monkeypatch, SCORES)
    entry = aebench.load_plugins().metrics.get("code_spread")
    assert (entry.distribution, entry.version) == ("aebench_scores", "0.1")
    assert entry.factory.columns[0].better == "higher"


def test_its_parameter_set_in_the_suite_reaches_it(scored) -> None:
    run, keeper = scored
    assert [row["status"] for row in run.rows] == ["ok", "ok"]
    for row in run.rows:
        assert row["eval.code_spread.scale"] == 3.0
        model, data = keeper.models[row["trial_id"]]
        context = MetricContext(model, data, {}, torch.device("cpu"), torch.Generator())
        with torch.no_grad():
            unscaled = aebench.load_plugins().metrics.get("code_spread").factory(context)
        assert row["code_spread"] == pytest.approx(3.0 * unscaled["code_spread"], rel=1e-6)


def test_the_report_marks_its_direction_and_calls_no_best_on_one_seed(scored) -> None:
    run, _ = scored
    lines = (run.output / "report.md").read_text().splitlines()
    # Its column declares no group: it is in the report's "other" table.
    header = next(
        line for line in lines if line.startswith("| configuration") and "| code_spread" in line
    )
    cells = [c.strip() for c in header.strip("|").split("|")]
    column = cells.index("code_spread ↑")
    rows = lines[lines.index(header) + 2 :][:2]
    values = [[c.strip() for c in row.strip("|").split("|")][column] for row in rows]
    shown = sorted(float(v.split(" ")[0].strip("*")) for v in values)
    assert shown == pytest.approx(sorted(r["code_spread"] for r in run.rows), rel=1e-3)
    # One seed per configuration: no test can tell them apart, so none is bold as the best.
    assert not [v for v in values if v.startswith("**")]
    assert all("1 seed: no interval" in v for v in values)


def test_compare_flags_a_drop_beyond_its_floor_only(scored, tmp_path, capsys) -> None:
    run, _ = scored

    def new_table(drop: float) -> Path:
        folder = tmp_path / f"drop-{drop}"
        shutil.copytree(run.output, folder)
        table = pd.read_parquet(folder / PARQUET)
        table["code_spread"] -= drop
        table.to_parquet(folder / PARQUET, index=False)
        return folder

    # One seed a side: no test can tell a drop from seed noise; inconclusive, which fails only
    # when asked, and the floor the test would need is the metric's own (0.05).
    dropped = str(new_table(0.06))
    assert main(["compare", dropped, str(run.output), "--fail-on", "quality"]) == 0
    assert main(["compare", dropped, str(run.output), "--fail-on", "inconclusive"]) == 1
    assert "code_spread" in (out := capsys.readouterr().out) and " 0.05 " in out


def test_its_observer_hears_every_finished_trial(scored) -> None:
    run, _ = scored
    logged = [
        json.loads(line) for line in (run.output / "trial-log.jsonl").read_text().splitlines()
    ]
    assert [entry["trial_id"] for entry in logged] == [row["trial_id"] for row in run.rows]
    assert all(entry["trained"] for entry in logged)


@pytest.mark.parametrize(
    "table, expected",
    [
        ("scale = -1.0", "eval.code_spread.scale: metric 'code_spread': Input should be greater"),
        ("scal = 1.0", "eval.code_spread.scal: metric 'code_spread' takes no parameter 'scal'"),
    ],
)
def test_a_wrong_parameter_is_a_suite_error_with_its_place(
    tmp_path, monkeypatch, capsys, table, expected
) -> None:
    installed(tmp_path, monkeypatch, SCORES)
    monkeypatch.chdir(tmp_path)
    Path("suite.toml").write_text(
        textwrap.dedent(SUITE.format(eval=f"[eval.code_spread]\n{table}"))
    )
    assert main(["run", "suite.toml"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"aebench: error: suite.toml: {expected}")
    assert not Path("results").exists()


def test_an_error_in_its_model_names_the_model_and_its_distribution(tmp_path, monkeypatch):
    installed(tmp_path, monkeypatch, SCORES)
    monkeypatch.chdir(tmp_path)
    text = SUITE.format(eval="").replace('"ae"', '"exploding"').replace("hidden = [16]", "")
    Path("suite.toml").write_text(textwrap.dedent(text.replace("params = {  }\n", "")))
    run = aebench.run_suite("suite.toml")
    reason = run.rows[0]["reason"]
    assert reason.startswith("RuntimeError in model 'exploding' (aebench_scores 0.1): ")
    assert "cannot be multiplied" in reason


def test_a_package_that_fails_to_import(tmp_path, monkeypatch, capsys, write_suite) -> None:
    installed(tmp_path, monkeypatch, MISSING_DEP)
    assert main(["plugins"]) == 0
    assert main(["plugins", "--strict"]) == 1
    shown = capsys.readouterr().out
    assert "FAILED aebench_missing_dep.aebench_missing_dep [aebench_missing_dep]" in shown
    assert "No module named 'aebench_dependency_that_is_not_installed'" in shown

    assert main(["list", "datasets"]) == 0
    listed = capsys.readouterr().out
    assert "failed to load" in listed and "aebench_dependency_that_is_not_installed" in listed

    suite = write_suite(SUITE.format(eval="").replace('"digits"', '"faraway"'))
    assert main(["run", str(suite)]) == 2
    warning, line = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith(
        "aebench: warning: plugin 'aebench_missing_dep.aebench_missing_dep'"
        " (aebench_missing_dep) failed to load: ModuleNotFoundError: "
    )
    assert "datasets[0].plugin: unknown dataset 'faraway'" in line
    assert "aebench_missing_dep: ModuleNotFoundError: No module named" in line


def built_ins() -> list[str]:
    """Every plugin of the ``aebench`` distribution (models, regularizers, datasets, metrics and
    the observers), named as ``load_plugins(blocked=...)`` takes them."""
    return [
        f"aebench.{ep.name}"
        for ep in importlib.metadata.entry_points(group="aebench")
        if ep.dist is not None and ep.dist.name == "aebench"
    ]


STANDALONE_SUITE = {  # names no regularizer: the installed default trains
    "suite": {"name": "standalone", "seeds": [0, 1], "device": "cpu"},
    "train": {"epochs": 2, "batch_size": 64},
    "datasets": [{"plugin": "blobs"}],
    "models": [{"plugin": "linear-ae", "params": {"latent_dim": 2}}],
}


def test_a_packages_own_plugins_run_with_every_built_in_blocked(tmp_path, monkeypatch) -> None:
    installed(tmp_path, monkeypatch, STANDALONE)
    blocked = built_ins()
    assert {"aebench.regularizers", "aebench.figures", "aebench.report", "aebench.mlflow"} <= set(
        blocked
    )
    plugins = aebench.load_plugins(blocked=blocked)
    assert not plugins.errors
    assert "digits" not in plugins.datasets and plugins.regularizers.names() == ["code-decay"]
    run = aebench.run_suite(STANDALONE_SUITE, output=tmp_path / "out", plugins=plugins)
    assert [row["status"] for row in run.rows] == ["ok", "ok"], [r["reason"] for r in run.rows]
    assert {row["regularizer"] for row in run.rows} == {"code-decay"}  # its declared default
    assert all(row["held_out_error"] > 0 for row in run.rows)


def test_two_installed_defaults_are_both_named(tmp_path, monkeypatch) -> None:
    installed(tmp_path, monkeypatch, STANDALONE)
    plugins = aebench.load_plugins()  # the built-in 'none' declares itself the default too
    with pytest.raises(aebench.SuiteError) as info:
        aebench.load_suite(STANDALONE_SUITE, plugins)
    [line] = info.value.lines
    assert line.startswith("<dict>: regularizers: none listed, and regularizer ")
    assert "regularizer 'none' (aebench " in line
    assert "regularizer 'code-decay' (aebench_standalone 0.1)" in line
    named = STANDALONE_SUITE | {"regularizers": [{"plugin": "none"}]}
    assert len(aebench.load_suite(named, plugins).trials) == 2  # a suite that names one is fine
