"""What a metric declares: checked when it registers, read when a suite sets its parameters,
shown by `aebench list`; and models that declare the data kinds they take."""

from __future__ import annotations

import json

import pytest

from aebench import Column, Metric, hookimpl, load_plugins, load_suite
from aebench.cli import main
from aebench.run.trial import run_trial


def mean_code(context, scale: float = 1.0):
    """The mean code."""
    return {"mean_code": scale * context.model.encode(context.data.test.x).mean().item()}


def registering(name: str, metric: object):
    class Plugin:
        @hookimpl
        def aebench_register_metrics(self, register):
            register(name, metric)

    return Plugin()


@pytest.mark.parametrize(
    "metric, message",
    [
        (mean_code, "register an aebench.Metric"),
        (Metric(mean_code, columns=[Column("recon_mse")]), "both write the column 'recon_mse'"),
        (Metric(mean_code, columns=[Column("train_s")]), "'train_s' is one of the core's own"),
    ],
)
def test_a_metric_off_the_contract_is_refused_when_it_registers(metric, message) -> None:
    plugins = load_plugins(extra=[registering("mine", metric)])
    assert "mine" not in plugins.metrics
    assert any(message in error.error for error in plugins.errors), plugins.errors


def test_two_metrics_writing_one_column_are_both_refused_whichever_came_first() -> None:
    plugins = load_plugins(extra=[registering("mine", Metric(mean_code, [Column("recon_mse")]))])
    for name in ("mine", "recon_mse"):
        with pytest.raises(LookupError, match="both write the column 'recon_mse'"):
            plugins.metrics.get(name)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"columns": []}, "declare at least one"),
        ({"columns": [Column("a"), Column("a")]}, "declared twice"),
        ({"columns": [Column("a")], "requires": ["a GPU"]}, "is not one of"),
        ({"columns": [Column("a")], "planes": [("a", "b")]}, "not a pair of its own columns"),
    ],
)
def test_a_declaration_that_makes_no_sense_is_refused(arguments, message) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        Metric(mean_code, **arguments)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"name": "model.x"}, "letters, digits"),
        ({"name": "status"}, "core's own"),
        ({"name": "a", "floor": 1.0}, "needs a better direction"),
        ({"name": "a", "better": "higher", "floor": 1.0, "speed": True}, "either as quality"),
        ({"name": "a", "better": "up"}, "better is"),
    ],
)
def test_a_column_that_makes_no_sense_is_refused(arguments, message) -> None:
    with pytest.raises(ValueError, match=message):
        Column(**arguments)


SUITE = """
[suite]
name = "declared"
device = "cpu"

[eval]
{eval}

[[datasets]]
plugin = "digits"

[[models]]
plugin = "vae"
"""


def eval_params(write_suite, text: str) -> dict:
    plugins = load_plugins()
    return load_suite(write_suite(SUITE.format(eval=text)), plugins).trials[0].eval["params"]


def test_an_alias_sets_every_metric_that_declares_it_and_a_table_overrides_it(write_suite):
    params = eval_params(write_suite, "iwae_samples = 10\n[eval.log_px_iwae]\nsamples = 7")
    assert params["log_px_iwae"] == {"samples": 7, "precision": "fp32"}
    assert params["log_px_prior_mc"] == {"samples": 10}
    assert params["elbo"] == {"samples": 1}  # untouched: its default


def test_only_the_selected_metrics_get_parameters(write_suite):
    params = eval_params(write_suite, 'metrics = ["elbo"]\niwae_samples = 10')
    assert params == {"elbo": {"samples": 1}}


def test_list_shows_what_a_metric_declares(capsys):
    assert main(["list", "metrics", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)["metrics"]}
    iwae = listed["log_px_iwae"]
    assert iwae["columns"][0] | {"description": ""} == {
        "name": "log_px_iwae",
        "better": "higher",
        "floor": 0.5,
        "noisy": False,
        "speed": False,
        "unit": "nats",
        "description": "",
        "flag_above": None,
        "group": "likelihood",
        "headline": True,
    }
    convergence = {c["name"]: c for c in iwae["columns"]}["log_px_iwae_convergence"]
    assert convergence["flag_above"] == 0.1
    assert iwae["requires"] == ["likelihood of the data"]
    assert [p["name"] for p in iwae["params"]] == ["samples", "precision"]


def test_a_model_is_skipped_on_data_it_does_not_declare(write_suite, plugins):
    from aebench.run.data import DataCache

    class RealOnly(plugins.models.get("ae").factory):
        """An autoencoder for real-valued data only."""

        data_kinds = ("real",)

    class Plugin:
        @hookimpl
        def aebench_register_models(self, register):
            register("real-only", RealOnly)

    plugins = load_plugins(extra=[Plugin()])
    suite = load_suite(write_suite(SUITE.format(eval="").replace('"vae"', '"real-only"')), plugins)
    row, _ = run_trial(
        suite.trials[0], plugins, __import__("torch").device("cpu"), DataCache(plugins)
    )
    assert row["status"] == "skipped"
    assert row["reason"] == "model 'real-only' (Plugin) takes real data, not unit"


def test_an_image_only_model_is_skipped_on_vectors_with_the_reason(write_suite, plugins):
    from aebench.run.data import DataCache

    text = SUITE.format(eval="").replace('"digits"', '"mixture2d"').replace('"vae"', '"conv-vae"')
    suite = load_suite(write_suite(text), plugins)
    row, _ = run_trial(
        suite.trials[0], plugins, __import__("torch").device("cpu"), DataCache(plugins)
    )
    assert row["status"] == "skipped"
    assert row["reason"].endswith("takes (C, H, W) images, not samples of shape (2,)")
    assert "conv-vae" in row["reason"]


def test_every_built_in_column_has_a_group_and_each_group_one_headline() -> None:
    from aebench.contract.columns import GROUPS, declared

    vocabulary = declared({e.name: e.factory for e in load_plugins().metrics})
    ungrouped = [c.name for c in vocabulary.columns.values() if not c.group]
    assert ungrouped == []
    assert set(vocabulary.headlines()) == set(GROUPS) - {"training"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"headline": True}, "needs a group"), ({"group": "two words"}, "letters, digits")],
)
def test_a_bad_group_or_headline_declaration_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Column("x", **kwargs)
