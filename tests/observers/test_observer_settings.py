"""An observer is configured by its suite: ``[observers.NAME]`` validated against the factory's
signature, ``enabled`` to switch any observer off, opt-in observers, and the deprecated
``[tracking]`` read as ``[observers.mlflow]``."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from builders import as_toml, build_suite, entry
from fake_plugins import fake_distribution
from repo import SUPPORT

import aebench
from aebench.cli import main
from aebench.run.loop import build_observers
from aebench.run.suite import SuiteError, load_suite

OBSERVERS = SUPPORT / "aebench_observers.py"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> aebench.Plugins:
    """The installed plugins and ``aebench_observers``, as a distribution of its own."""
    site = fake_distribution(tmp_path / "site-observers", OBSERVERS)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, OBSERVERS.stem, raising=False)
    return aebench.load_plugins()


def suite_text(tables: str = "") -> str:
    """A one-trial suite, MLflow off (``[observers.mlflow] enabled = false``), then ``tables``."""
    built = build_suite(
        entry("ae", hidden=[8], latent_dim=2), name="configured", epochs=1, batch_size=256
    )
    return as_toml(built) + tables


def built(plugins: aebench.Plugins, text: str) -> dict[str, Any]:
    """Observer name -> the observer the suite ``text`` builds."""
    suite = load_suite(tomllib.loads(text), plugins)
    return {one.entry.name: one.observer for one in build_observers(suite, plugins)}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_an_observer_table_reaches_its_factory_in_a_run(installed, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = suite_text('[observers.jsonl-tracker]\nfile = "mine.jsonl"\nlevel = 3\n')
    Path("suite.toml").write_text(text)
    run = aebench.run_suite("suite.toml", output="out", plugins=installed)
    assert [row["status"] for row in run.rows] == ["ok"]
    lines = [json.loads(line) for line in Path("out/mine.jsonl").read_text().splitlines()]
    assert [line["event"] for line in lines] == [
        "suite_started",
        "trial_started",
        "trial_finished",
        "suite_finished",
    ]
    assert {line["level"] for line in lines} == {3}
    assert not Path("out/tracker.jsonl").exists()  # its default file, not used
    assert not Path("results").exists() and not Path("mlruns").exists()  # MLflow stayed off


def test_observers_run_with_their_defaults_and_enabled_false_switches_any_off(installed) -> None:
    default = built(installed, suite_text())
    assert "jsonl-tracker" in default and "mlflow" not in default
    assert default["jsonl-tracker"].settings["level"] == 1
    assert "faulty" not in default and "cloud-log" not in default  # opt-in: no table, not run

    off = built(installed, suite_text("[observers.jsonl-tracker]\nenabled = false\n"))
    assert "jsonl-tracker" not in off and {"figures", "report"} <= set(off)
    figures_off = built(installed, suite_text("[observers.figures]\nenabled = false\n"))
    assert "figures" not in figures_off and "jsonl-tracker" in figures_off


def test_an_opt_in_observer_runs_only_where_the_suite_has_its_table(installed) -> None:
    wanted = built(installed, suite_text('[observers.cloud-log]\nproject = "mine"\n'))
    assert wanted["cloud-log"].settings == {"project": "mine"}
    # switched off, it may leave out the setting it requires
    assert "cloud-log" not in built(
        installed, suite_text("[observers.cloud-log]\nenabled = false\n")
    )
    with pytest.raises(SuiteError, match=r"observers\.cloud-log\.project: required key is missing"):
        built(installed, suite_text("[observers.cloud-log]\n"))


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (
            "[observers.jsonl-tracker]\ncolour = 'red'\n",
            "observers.jsonl-tracker.colour: observer 'jsonl-tracker' takes no setting 'colour'"
            " (it takes: file, level, enabled)",
        ),
        (
            "[observers.jsonl-tracker]\nlevel = 'high'\n",
            "observers.jsonl-tracker.level: Input should be a valid integer",
        ),
        (
            "[observers.jsonl-tracker]\nlevel = -1\n",
            "observers.jsonl-tracker.level: Input should be greater than or equal to 0",
        ),
        (
            "[observers.jsonl-tracker]\nenabled = 'no'\n",
            "observers.jsonl-tracker.enabled: Input should be a valid boolean",
        ),
        (
            "[observers.mlfow]\nuri = 'x'\n",
            "observers.mlfow: unknown observer 'mlfow'; did you mean 'mlflow'?",
        ),
        (
            "[observers.faulty]\nat = 'trial_ended'\n",
            "observers.faulty.at: Input should be 'suite_started', 'trial_started'",
        ),
    ],
    ids=["unknown-key", "wrong-type", "out-of-range", "enabled-not-bool", "unknown", "literal"],
)
def test_a_bad_observer_table_is_one_line_with_its_place_and_nothing_is_written(
    installed, tmp_path, monkeypatch, capsys, tables, expected
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("suite.toml").write_text(suite_text(tables))
    before = snapshot(tmp_path)
    assert main(["run", "suite.toml", "--output", "out"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith(f"aebench: error: suite.toml: {expected}"), line
    assert "Traceback" not in captured.err + captured.out
    assert snapshot(tmp_path) == before


def test_a_store_in_a_system_folder_is_refused_at_its_place(installed) -> None:
    tables = "uri = 'sqlite:////etc/aebench/mlflow.db'\n"
    off = "[observers.mlflow]\nenabled = false\n"
    text = suite_text().replace(off, "[observers.mlflow]\n" + tables)
    with pytest.raises(SuiteError, match=r"observers\.mlflow\.uri: /etc/aebench/mlflow.db is in"):
        built(installed, text)


def test_the_mlflow_table_configures_its_tracker(installed, tmp_path) -> None:
    text = suite_text().replace("enabled = false\n", "")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tables = f"uri = '{uri}'\nexperiment = 'mine'\nlog_model = true\n"
    tracker = built(
        installed, text.replace("[observers.mlflow]\n", "[observers.mlflow]\n" + tables)
    )
    assert tracker["mlflow"].settings.model_dump() == {
        "uri": uri,
        "log_model": True,
        "experiment": "mine",
    }


def test_tracking_is_read_as_observers_mlflow_with_one_deprecation_line(
    installed, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    text = suite_text().replace("[observers.mlflow]\nenabled = false\n", "")
    Path("suite.toml").write_text(text + f"[tracking]\nuri = '{uri}'\nexperiment = 'old'\n")
    suite = load_suite("suite.toml", installed)
    assert capsys.readouterr().err == (
        "aebench: warning: suite.toml: [tracking] is deprecated; write [observers.mlflow]\n"
    )
    [tracker] = [r.observer for r in build_observers(suite, installed) if r.entry.name == "mlflow"]
    assert (tracker.settings.uri, tracker.settings.experiment) == (uri, "old")
    off = text + "[tracking]\nenabled = false\n"
    assert "mlflow" not in built(installed, off)
    with pytest.raises(SuiteError, match=r"tracking\.colour: observer 'mlflow' takes no setting"):
        built(installed, text + "[tracking]\ncolour = 1\n")


def test_tracking_and_observers_mlflow_together_are_refused(installed) -> None:
    text = suite_text() + "[tracking]\nenabled = false\n"
    with pytest.raises(SuiteError, match=r"tracking: give \[observers.mlflow\] alone"):
        built(installed, text)


def test_switching_off_an_observer_not_installed_is_no_error_but_configuring_it_is() -> None:
    plugins = aebench.load_plugins(blocked=["aebench.mlflow"])
    text = suite_text().replace("[observers.mlflow]\nenabled = false\n", "")
    assert "mlflow" not in built(plugins, text + "[tracking]\nenabled = false\n")
    assert "mlflow" not in built(plugins, suite_text())  # [observers.mlflow] enabled = false
    with pytest.raises(SuiteError, match=r"observers\.mlflow: unknown observer 'mlflow'"):
        built(plugins, text + "[observers.mlflow]\nexperiment = 'x'\n")


def test_switching_off_a_misspelt_observer_is_an_error(installed) -> None:
    with pytest.raises(SuiteError, match=r"observers\.mlfow: unknown observer 'mlfow'; did you"):
        built(installed, suite_text("[observers.mlfow]\nenabled = false\n"))
