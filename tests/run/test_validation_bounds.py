"""Values that passed validation and crashed (issue 32): a suite is held to what the machinery
can hold (integers that become table cells below 2^53, finite rates, ``threads`` within the
cores, a bounded nesting), and a value that still fails when the table is written fails its
trial, never the folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from builders import build_suite, entry

import aebench
from aebench.cli import main
from aebench.results.table import JOURNAL, PARQUET, read_results, settle
from aebench.run.suite import SuiteError, load_suite
from aebench.run.threads import available_cores

HUGE = 2**70  # past parquet's 64-bit integers: the table could not be written


def scaled_by(context: Any, factor: int = 1) -> dict[str, float]:
    """A metric with an integer parameter, which becomes a cell (``eval.scaled.factor``)."""
    return {"scaled": float(factor)}


class Flexible(torch.nn.Module):
    """A linear autoencoder whose ``width`` is a number or a word: each alone a fine cell, the
    two together a column that parquet cannot hold."""

    def __init__(self, info: Any, width: int | str = 4) -> None:
        super().__init__()
        self.shape, size = info.shape, math.prod(info.shape)
        self.encoder, self.decoder = torch.nn.Linear(size, 2), torch.nn.Linear(2, size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.shape)

    def forward(self, x: torch.Tensor) -> aebench.ModelOutput:
        code = self.encode(x)
        return aebench.ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x: torch.Tensor, out: aebench.ModelOutput) -> torch.Tensor:
        return (out.recon - x).pow(2).flatten(1).sum(1)


class Plugins:
    @aebench.hookimpl
    def aebench_register_metrics(self, register):
        register("scaled", aebench.Metric(scaled_by, columns=[aebench.Column("scaled")]))

    @aebench.hookimpl
    def aebench_register_models(self, register):
        register("flexible", Flexible)


@pytest.fixture
def with_plugins() -> aebench.Plugins:
    return aebench.load_plugins(extra=[Plugins()])


@pytest.mark.parametrize(
    "changes, place",
    [
        ({"epochs": HUGE}, "train.epochs"),
        ({"train": {"checkpoint_every": 2**63}}, "train.checkpoint_every"),
        ({"train": {"checkpoint_every": 2**53}}, "train.checkpoint_every"),
        ({"train": {"lr": float("inf")}}, "train.lr"),
        ({"train": {"eps": float("inf")}}, "train.eps"),
        ({"train": {"clip_norm": float("inf")}}, "train.clip_norm"),
        ({"train": {"grid": {"lr": [1e-3, float("inf")]}}}, "train.grid.lr[1]"),
        ({"train": {"early_stopping": {"patience": HUGE}}}, "train.early_stopping.patience"),
        ({"threads": 10**9}, "suite.threads"),
        ({"models": [entry("ae", hidden=[8], grid={"latent_dim": [2, HUGE]})]}, "models[0]"),
        ({"metrics": ["scaled"], "eval": {"scaled": {"factor": HUGE}}}, "eval.scaled.factor"),
    ],
)
def test_a_value_the_machinery_cannot_hold_is_refused_with_its_place(
    with_plugins, changes: dict[str, Any], place: str
) -> None:
    models = changes.pop("models", [])
    with pytest.raises(SuiteError) as refused:
        load_suite(build_suite(*models, **changes), with_plugins)
    [line] = str(refused.value).splitlines()
    assert f"<dict>: {place}" in line, line


def test_values_at_the_bounds_are_accepted(with_plugins) -> None:
    suite = build_suite(
        threads=available_cores(),
        train={"checkpoint_every": 2**53 - 1},
        metrics=["scaled"],
        eval={"scaled": {"factor": -(2**53) + 1}},
    )
    [trial] = load_suite(suite, with_plugins).trials
    assert trial.train["checkpoint_every"] == 2**53 - 1


def test_a_deeply_nested_suite_file_is_one_line_and_exit_2(tmp_path: Path, monkeypatch, capsys):
    deep = "[" * 5000 + "]" * 5000
    (tmp_path / "deep.toml").write_text(
        f'[suite]\nname = "deep"\n[[datasets]]\nplugin = "digits"\n'
        f'[[models]]\nplugin = "ae"\nparams = {{hidden = {deep}}}\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "deep.toml"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("aebench: error: deep.toml: nested more than"), line
    assert not (tmp_path / "results").exists()


def journal(folder: Path, *rows: dict[str, Any]) -> None:
    """Rows as a run records them, left in the journal for the next run to fold in."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"status": "ok", "reason": ""} | row) for row in rows]
    (folder / JOURNAL).write_text("".join(line + "\n" for line in lines))


def test_a_folder_with_a_cell_parquet_cannot_hold_is_settled_with_that_trial_failed(tmp_path):
    # An older aebench recorded epochs = 2^70; every later run then died at start (OverflowError).
    journal(tmp_path, {"trial_id": "a", "train.epochs": 2}, {"trial_id": "b", "train.epochs": HUGE})
    table = settle(tmp_path).set_index("trial_id")
    assert table.loc["a", "status"] == "ok"
    assert table.loc["b", "status"] == "failed"
    assert "train.epochs = 1180591620717411303424" in table.loc["b", "reason"]
    assert pd.isna(table.loc["b", "train.epochs"])
    assert (tmp_path / PARQUET).is_file() and not (tmp_path / JOURNAL).exists()


def test_cells_of_two_kinds_in_one_column_fail_the_odd_trial_not_the_table(tmp_path):
    rows = [{"trial_id": t, "model.p": p} for t, p in (("a", 1), ("b", "wide"), ("c", 3))]
    journal(tmp_path, *rows)
    table = settle(tmp_path).set_index("trial_id")
    assert list(table["status"]) == ["ok", "failed", "ok"]
    assert "model.p = wide: a str where the other rows have a number" in table.loc["b", "reason"]
    assert read_results(tmp_path).set_index("trial_id").loc["c", "model.p"] == 3


@pytest.mark.slow  # two runs of a suite: about 10 s on a loaded machine
def test_a_parameter_of_two_kinds_fails_the_odd_trial_and_later_runs_go_on(tmp_path, with_plugins):
    # Each row alone is fine; together, a number and a text in one column (pyarrow's ArrowInvalid)
    # failed the run at its end and every later run into the folder at its start.
    output = tmp_path / "out"
    suite = build_suite(entry("flexible", grid={"width": [4, "auto"]}), epochs=1)
    aebench.run_suite(suite, output=output, plugins=with_plugins)
    rows = read_results(output).to_dict("records")
    assert [row["status"] for row in rows] == ["ok", "failed"]
    assert rows[0]["model.width"] == 4 and pd.isna(rows[1]["model.width"])
    assert rows[1]["reason"] == (
        "model.width = auto: a str where the other rows have a number"
        " (the results table cannot hold both)"
    )
    again = aebench.run_suite(suite, output=output, plugins=with_plugins)
    assert len(again.rows) == 1  # the failed trial tried again: the folder still works
