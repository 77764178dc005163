"""What a metric declares: checked when it registers, read when a suite sets its parameters,
shown by `aebench list`; and models that declare the data kinds they take."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest
from repo import REPO

from aebench import Column, Metric, hookimpl, load_plugins, load_suite
from aebench.cli import main
from aebench.contract.columns import (
    BOOKKEEPING,
    COLUMNS_FILE,
    CORE_COLUMNS,
    Vocabulary,
    declared,
)
from aebench.plugins.listing import vocabulary_of
from aebench.results.table import read_vocabulary
from aebench.run.trial import run_trial

ROOT = REPO
CORE = ROOT / "aebench"


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
        ("mean_code", "register an aebench.Metric"),
        (Metric(mean_code, columns=[Column("recon_mse")]), "writes the column 'recon_mse'"),
        (Metric(mean_code, columns=[Column("train_s")]), "'train_s' is one of the core's own"),
    ],
)
def test_a_metric_off_the_contract_is_refused_when_it_registers(metric, message) -> None:
    plugins = load_plugins(extra=[registering("mine", metric)])
    assert "mine" not in plugins.metrics
    assert any(message in error.error for error in plugins.errors), plugins.errors


def test_a_metric_writing_a_built_in_column_is_dropped_and_the_built_in_kept() -> None:
    plugins = load_plugins(extra=[registering("mine", Metric(mean_code, [Column("recon_mse")]))])
    with pytest.raises(LookupError, match="writes the column 'recon_mse'"):
        plugins.metrics.get("mine")
    assert plugins.metrics.get("recon_mse").plugin == "aebench.metrics"


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
        ({"name": "a", "at_least": 1.0, "at_most": 0.0}, "at_least must be below at_most"),
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
        "heavy_tailed": False,
        "unit": "nats",
        "description": "",
        "flag_above": None,
        "group": "likelihood",
        "group_order": 100,
        "per_protocol": True,
        "headline": True,
        "at_least": None,
        "at_most": None,
    }
    convergence = {c["name"]: c for c in iwae["columns"]}["log_px_iwae_convergence"]
    knn = {c["name"]: c for c in listed["knn_acc"]["columns"]}["knn_acc"]
    assert (knn["at_least"], knn["at_most"]) == (0.0, 1.0)  # an accuracy
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


# The report's order of the groups, as the core's own list said before the groups declared it.
BUILT_IN_GROUPS = (
    "likelihood",
    "reconstruction",
    "latent",
    "disentanglement",
    "samples",
    "speed",
    "training",
    "search",
)


def built_in_vocabulary() -> Vocabulary:
    return declared({e.name: e.factory for e in load_plugins().metrics})


def test_every_built_in_column_has_a_group_and_each_group_one_headline() -> None:
    vocabulary = built_in_vocabulary()
    ungrouped = [c.name for c in vocabulary.columns.values() if not c.group]
    assert ungrouped == []
    assert set(vocabulary.headlines()) == set(BUILT_IN_GROUPS) - {"training", "search"}


def test_the_built_in_groups_declare_their_order_and_likelihoods_their_protocol() -> None:
    vocabulary = built_in_vocabulary()
    places = vocabulary.group_places()
    assert sorted(places, key=places.__getitem__) == list(BUILT_IN_GROUPS)
    for column in vocabulary.columns.values():
        assert column.per_protocol == (column.group == "likelihood"), column.name


def _literals(path: Path) -> set[str]:
    """The strings written in a module's code."""
    nodes = ast.walk(ast.parse(path.read_text(encoding="utf-8")))
    return {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_the_core_names_no_group_of_the_built_in_metrics() -> None:
    """Their order and their comparability come from their declarations, not from a list of names
    in the core (a group named "likelihood" that declares nothing is compared like any other:
    tests/views/test_report.py)."""
    for path in CORE.rglob("*.py"):
        found = re.findall(r"\b(GROUPS|LIKELIHOOD)\b", path.read_text(encoding="utf-8"))
        assert not found, f"{path.relative_to(ROOT)} names {sorted(set(found))}"
    core_groups = {c.group for c in CORE_COLUMNS.values()}
    plugin_groups = {c.group for c in built_in_vocabulary().columns.values()} - core_groups
    # The modules that read the declarations; the figures' arrays are named "latent", "samples".
    readers = [CORE / "contract" / "columns.py", *(CORE / "views").glob("*.py")]
    readers.remove(CORE / "views" / "drawing.py")
    readers.remove(CORE / "views" / "suite_drawing.py")  # the report's figures, from those arrays
    for path in readers:
        # "likelihood" is also the core's own column of a row's likelihood protocol
        named = _literals(path) & (plugin_groups - BOOKKEEPING)
        assert not named, f"{path.relative_to(ROOT)} names the groups {sorted(named)}"


def test_group_declarations_are_saved_with_the_vocabulary() -> None:
    vocabulary = Vocabulary()
    vocabulary.add([Column("fit", "higher", group="fits", group_order=5, per_protocol=True)])
    assert Vocabulary.from_json(vocabulary.to_json()).get("fit") == vocabulary.get("fit")


def test_a_columns_file_written_before_groups_declared_their_place_still_loads() -> None:
    def before(column: Column) -> dict:  # as a columns.json of then had it
        saved = dataclasses.asdict(column)
        del saved["group_order"], saved["per_protocol"]
        return saved

    columns = [before(CORE_COLUMNS["train_s"]), before(Column("fit", "higher", group="fits"))]
    loaded = Vocabulary.from_json(json.dumps({"columns": columns, "planes": []}))
    assert loaded.get("fit") == Column("fit", "higher", group="fits")  # the defaults
    assert loaded.get("train_s") == CORE_COLUMNS["train_s"]  # the core's own, as it declares now
    assert loaded.group_places() == {"speed": 600, "training": 700, "search": 800}


def test_an_older_columns_file_takes_the_new_fields_from_the_installed_metrics(
    tmp_path, plugins
) -> None:
    installed = {e.name: e.factory for e in plugins.metrics}
    per_protocol = next(
        c for metric in installed.values() for c in metric.columns if c.per_protocol
    )
    saved = dataclasses.asdict(per_protocol)
    del saved["group_order"], saved["per_protocol"]  # as a columns.json of then had it
    (tmp_path / COLUMNS_FILE).write_text(json.dumps({"columns": [saved], "planes": []}))
    assert read_vocabulary(tmp_path).get(per_protocol.name).per_protocol is False  # the default
    assert vocabulary_of(tmp_path).get(per_protocol.name) == per_protocol  # as declared now


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"headline": True}, "needs a group"),
        ({"group_order": 1}, "needs a group"),
        ({"group": "two words"}, "letters, digits"),
    ],
)
def test_a_bad_group_or_headline_declaration_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Column("x", **kwargs)
