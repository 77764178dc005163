"""A search's spaces and settings: each written space read into an Optuna distribution, and every
bad one refused before anything runs: one line with its place, exit status 2, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from builders import as_toml, build_suite, entry
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from aebench.cli import main
from aebench.run.search_space import Dimension, parse_space


def test_a_written_space_becomes_its_distribution():
    assert parse_space([8, 16, 32]).distribution == CategoricalDistribution([8, 16, 32])
    lr = parse_space({"low": 1e-4, "high": 1e-2, "log": True}).distribution
    assert lr == FloatDistribution(1e-4, 1e-2, log=True)
    assert parse_space({"low": 1, "high": 4}).distribution == IntDistribution(1, 4)
    assert parse_space({"low": 0.5, "high": 8}).distribution == FloatDistribution(0.5, 8.0)


def test_a_list_of_lists_is_searched_as_json_and_read_back_as_lists():
    hidden = parse_space([[64], [128, 64]])
    assert isinstance(hidden, Dimension)
    assert [hidden.decode(c) for c in hidden.distribution.choices] == [[64], [128, 64]]


def test_the_grid_of_a_space_lists_every_value_and_a_continuous_range_has_none():
    assert parse_space({"low": 1, "high": 7, "step": 3}).grid() == [1, 4, 7]
    assert parse_space({"low": 0.0, "high": 1.0, "step": 0.5}).grid() == [0.0, 0.5, 1.0]
    assert parse_space({"low": 0.0, "high": 1.0}).grid() is None


@pytest.mark.parametrize(
    ("space", "value", "edge"),
    [
        ({"low": 1, "high": 8}, 8, "top"),
        ({"low": 1, "high": 8}, 1, "bottom"),
        ({"low": 1, "high": 8}, 4, None),
        # integers' edges are a share of their width too, in log units on a log scale
        ({"low": 16, "high": 1024, "log": True}, 17, "bottom"),
        ({"low": 16, "high": 1024, "log": True}, 128, None),
        ({"low": 1, "high": 1000}, 999, "top"),
        ({"low": 1, "high": 1000}, 975, None),
        ({"low": 1e-4, "high": 1e-2, "log": True}, 1.05e-4, "bottom"),
        ({"low": 1e-4, "high": 1e-2, "log": True}, 1e-3, None),
        ([2, 4, 8], 8, "top"),
        ([2, 4, 8], 4, None),
        (["a", "b", "c"], "c", None),  # not numbers: no range to be on the edge of
    ],
)
def test_a_best_value_on_the_edge_of_its_range_is_found(space: Any, value: Any, edge: str | None):
    said = parse_space(space).on_edge(value)
    assert (said is None) if edge is None else (edge in said)


def run_refused(tmp_path: Path, monkeypatch, capsys, suite: dict[str, Any]) -> str:
    """``aebench run`` of ``suite``: the one error line it prints, having written nothing."""
    (tmp_path / "suite.toml").write_text(as_toml(suite))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    status = main(["run", "suite.toml", "--output", "out"])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "deprecated" not in line]
    assert status == 2, captured.err
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
    return lines[0]


SEARCH = {"trials": 2}


def ae(search: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    """An ``ae`` entry (``entry``'s arguments) with its ``search`` spaces."""
    found = entry("ae", **params)
    return found | ({"search": search} if search is not None else {})


@pytest.mark.parametrize(
    ("model", "search", "expected"),
    [
        (ae(search={"latent_dim": []}), SEARCH, "models[0].search.latent_dim: empty list"),
        (ae(search={"latent_dim": {}}), SEARCH, "models[0].search.latent_dim: empty space"),
        (
            ae(search={"latent_dim": {"low": 8, "high": 2}}),
            SEARCH,
            "models[0].search.latent_dim: inverted range: low 8 > high 2",
        ),
        (
            ae(hidden=[8]),
            SEARCH | {"train": {"lr": {"low": 0.0, "high": 0.1, "log": True}}},
            "search.train.lr: a log range needs low > 0",
        ),
        (
            ae(search={"width": [1, 2]}),
            SEARCH,
            "models[0].search.width: model 'ae' takes no parameter 'width'",
        ),
        (
            ae(latent_dim=4, search={"latent_dim": [2, 4]}),
            SEARCH,
            "models[0].search.latent_dim: also fixed in models[0].params",
        ),
        (
            ae(grid={"latent_dim": [2, 4]}, search={"latent_dim": [2, 4]}),
            SEARCH,
            "models[0].search.latent_dim: also fixed in models[0].grid",
        ),
        (
            ae(search={"latent_dim": [0, 4]}),
            SEARCH,
            "models[0].search.latent_dim: 0: model 'ae'",
        ),
        (ae(search={"latent_dim": [2, 4]}), {"trials": 0}, "search.trials"),
        (ae(search={"latent_dim": [2, 4]}), {"budget_s": 0}, "search.budget_s"),
        (
            ae(search={"latent_dim": [2, 4]}),
            SEARCH | {"objective": "nope"},
            "search.objective: 'nope' is not a declared column",
        ),
        (
            ae(search={"latent_dim": [2, 4]}),
            SEARCH | {"objective": "train_s"},
            "search.objective: 'train_s' is not measured on the validation split",
        ),
        (ae(search={"latent_dim": [2, 4]}), None, "search: spaces are given but no"),
        (
            ae(hidden=[8]),
            SEARCH | {"sampler": "grid", "train": {"lr": {"low": 1e-4, "high": 1e-2}}},
            "the grid sampler needs a list or a step",
        ),
        (
            ae(search={"latent_dim": [2, 4]}),
            SEARCH | {"trial_seed": 0},
            "search.trial_seed: 0 is one of [suite] seeds",
        ),
    ],
    ids=[
        "empty-list",
        "empty-table",
        "inverted",
        "log-of-zero",
        "unknown-parameter",
        "fixed-in-params",
        "fixed-in-grid",
        "refused-by-the-plugin",
        "no-trials",
        "no-seconds",
        "unknown-objective",
        "objective-not-on-validation",
        "no-search-section",
        "grid-of-a-continuous-range",
        "trial-seed-in-the-suite",
    ],
)
def test_a_bad_search_is_refused_with_its_place(
    tmp_path, monkeypatch, capsys, model, search, expected
):
    suite = build_suite(model, train={"val_fraction": 0.2})
    if search is not None:
        suite["search"] = search
    line = run_refused(tmp_path, monkeypatch, capsys, suite)
    assert line.startswith("aebench: error: suite.toml: "), line
    assert expected in line, line


def test_a_train_setting_both_fixed_and_searched_is_refused(tmp_path, monkeypatch, capsys):
    suite = build_suite(train={"lr": 1e-3, "val_fraction": 0.2})
    suite["search"] = SEARCH | {"train": {"lr": {"low": 1e-4, "high": 1e-2}}}
    line = run_refused(tmp_path, monkeypatch, capsys, suite)
    assert "search.train.lr: also fixed in [train]" in line


def test_a_search_without_a_validation_split_is_refused_once_the_data_is_loaded(
    tmp_path, monkeypatch, capsys
):
    ppca = entry("ppca", n_train=64, n_test=32)  # no validation split of its own
    suite = build_suite(ae(hidden=[8], search={"latent_dim": [1, 2]}), datasets=[ppca])
    suite["search"] = SEARCH
    line = run_refused(tmp_path, monkeypatch, capsys, suite)
    assert "search: needs a validation split; set train.val_fraction" in line


def test_a_regularizer_parameter_it_does_not_take_is_refused(tmp_path, monkeypatch, capsys):
    suite = build_suite(ae(hidden=[8]), train={"val_fraction": 0.2})
    suite["regularizers"] = [{"plugin": "l1", "search": {"strength": [0.1, 1.0]}}]
    suite["search"] = SEARCH
    line = run_refused(tmp_path, monkeypatch, capsys, suite)
    assert "regularizers[0].search.strength: regularizer 'l1' takes no parameter" in line


def test_a_dataset_is_not_searched(tmp_path, monkeypatch, capsys):
    digits = entry("digits") | {"search": {"val_fraction": [0.1, 0.2]}}
    suite = build_suite(ae(hidden=[8]), datasets=[digits], train={"val_fraction": 0.2})
    suite["search"] = SEARCH
    line = run_refused(tmp_path, monkeypatch, capsys, suite)
    assert "datasets[0].search: datasets are not tuned" in line
