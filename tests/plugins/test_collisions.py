"""A registration whose name or metric column is taken is dropped alone: the earlier one stays,
aebench's own always win over a third party's, the rest of the clashing plugin still loads, and
the clash is kept as a load problem naming both plugins and the one dropped."""

from __future__ import annotations

import sys
from pathlib import Path

import aebench_collides
import pytest
from fake_plugins import fake_distribution
from repo import SUPPORT

from aebench import Column, Metric, hookimpl
from aebench.plugins.manager import load_plugins

COLLIDES = SUPPORT / "aebench_collides.py"


def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """aebench_collides as an installed distribution, found before aebench on sys.path."""
    site = fake_distribution(tmp_path / "site", COLLIDES)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "aebench_collides", raising=False)


def test_an_installed_plugin_writing_a_built_in_column_costs_the_built_ins_nothing(
    tmp_path, monkeypatch
) -> None:
    built_in = load_plugins().metrics.names()
    installed(tmp_path, monkeypatch)
    plugins = load_plugins()
    assert set(built_in) <= set(plugins.metrics.names())  # all 28, none withdrawn
    assert plugins.metrics.get("recon_mse").plugin == "aebench.metrics"
    assert "my_recon_mse" not in plugins.metrics
    # Registered after its clash, by the same hook: still there.
    assert plugins.metrics.get("collides_code_mean").distribution == "aebench_collides"
    clash = next(e for e in plugins.errors if "recon_mse" in e.error)
    assert (clash.plugin, clash.distribution, clash.problem) == (
        "aebench_collides.aebench_collides",
        "aebench_collides",
        "collision",
    )
    assert clash.error == (
        "metric 'my_recon_mse' (aebench_collides.aebench_collides) writes the column"
        " 'recon_mse', as metric 'recon_mse' (aebench.metrics) does: 'my_recon_mse' is dropped"
        " (the later), 'recon_mse' kept"
    )


def test_a_name_taken_by_a_built_in_stays_the_built_ins(tmp_path, monkeypatch) -> None:
    installed(tmp_path, monkeypatch)
    plugins = load_plugins()
    assert plugins.models.get("ae").plugin == "aebench.models"
    assert plugins.models.get("collides-own").distribution == "aebench_collides"
    clash = next(e for e in plugins.errors if "'ae'" in e.error)
    assert clash.message == (
        "plugin 'aebench_collides.aebench_collides' (aebench_collides): model 'ae' is"
        " registered by both 'aebench.models' and 'aebench_collides.aebench_collides':"
        " dropped from 'aebench_collides.aebench_collides' (the later), kept from"
        " 'aebench.models'"
    )
    assert len(plugins.errors) == 2  # the model and the metric; nothing else failed


def writing(column: str, name: str):
    class Plugin:
        @hookimpl
        def aebench_register_metrics(self, register):
            register(name, Metric(lambda context: {column: 1.0}, columns=[Column(column)]))

    Plugin.__name__ = f"plugin_{name}"
    return Plugin()


def test_between_third_parties_the_later_registration_loses_alone() -> None:
    plugins = load_plugins(extra=[writing("shared", "one"), writing("shared", "two")])
    kept = [name for name in ("one", "two") if name in plugins.metrics]
    assert len(kept) == 1
    dropped = ({"one", "two"} - set(kept)).pop()
    [clash] = plugins.errors
    assert clash.plugin == f"plugin_{dropped}" and clash.problem == "collision"
    assert f"plugin_{kept[0]}" in clash.error and f"{dropped!r} is dropped" in clash.error
    with pytest.raises(LookupError, match="lost a clash"):
        plugins.metrics.get(dropped)


def test_built_ins_win_over_a_plugin_that_pluggy_calls_before_them() -> None:
    # A plugin object registered after the entry points is first in pluggy's call order: were
    # the hooks called in that order, the built-ins would be the later, dropped, registrations.
    plugins = load_plugins(extra=[aebench_collides])
    assert plugins.models.get("ae").plugin == "aebench.models"
    assert plugins.metrics.get("recon_mse").plugin == "aebench.metrics"
    assert [e.plugin for e in plugins.errors] == ["aebench_collides", "aebench_collides"]
    assert {e.problem for e in plugins.errors} == {"collision"}
