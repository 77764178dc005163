"""Fair tuning: every configuration searched with the same budget on validation, resumed after a
kill, pruned on its epochs, and its best parameters run on every seed and measured on test."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aebench_search_probe as probe
import optuna
import pytest
import torch
from builders import build_suite, entry
from repo import SUPPORT

from aebench import Column, Metric, MetricContext, hookimpl
from aebench.plugins.manager import Plugins, load_plugins
from aebench.results.table import read_results
from aebench.run.search import Search, counted, storage_url
from aebench.run.search_configurations import configurations
from aebench.run.search_section import SEARCH_TRIAL_SEED
from aebench.session import Session
from aebench.views.blocks import Paragraph
from aebench.views.layout import report_blocks

WATCHED = entry("watched")


@pytest.fixture
def probing() -> Plugins:
    return load_plugins(extra=[probe])


def bowl(search: dict[str, Any], **params: Any) -> dict[str, Any]:
    return entry("bowl", **params) | {"search": search}


def searched(*models: dict[str, Any], search: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A suite of ``models`` on the watched data with ``[search]`` ``search``."""
    suite = build_suite(*models, **{"datasets": [WATCHED], "epochs": 3} | changes)
    return suite | {"search": search}


def opened(suite: dict[str, Any], plugins: Plugins, output: Path) -> Session:
    session = Session.open(suite, plugins=plugins, output=output)
    session.load_data()
    return session


def studies(output: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Each study's trials counted against its budget."""
    storage = storage_url(output)
    return {
        summary.study_name: counted(
            optuna.load_study(study_name=summary.study_name, storage=storage)
        )
        for summary in optuna.get_all_study_summaries(storage)
    }


def test_the_known_best_parameter_is_found_and_run_on_every_seed(tmp_path, probing):
    suite = searched(
        bowl({"knob": {"low": 0, "high": 6}}),
        search={"trials": 7, "sampler": "grid"},
        seeds=[0, 1],
    )
    run = opened(suite, probing, tmp_path / "out").run()

    (trials,) = studies(tmp_path / "out").values()
    assert sorted(t.params["model.knob"] for t in trials) == list(range(7))  # each knob once
    assert sorted(row["seed"] for row in run.rows) == [0, 1]
    # The search trained at a seed of its own: no row is the winning search trial again (at
    # seed 0, as it once was, that row's validation loss was the search's best to the digit).
    searched_at = set(read_results(tmp_path / "out" / "search")["seed"])
    assert searched_at == {SEARCH_TRIAL_SEED}
    assert all(row["best_val_loss"] != row["search_best_value"] for row in run.rows)
    for row in run.rows:
        assert row["status"] == "ok"
        assert row["model.knob"] == probe.BEST_KNOB
        assert row["search_trials"] == 7
        assert row["search_params"] == "model.knob"  # what compare does not match on
        assert row["search_best_value"] == min(t.value for t in trials)  # validation's best
        assert math.isfinite(row["recon_mse"])  # measured on test, unlike the search trials
        assert "edge" not in row["warnings"]


def test_a_best_value_on_the_edge_of_its_range_is_a_warning_of_the_row(tmp_path, probing):
    suite = searched(bowl({"knob": [1, 2, 3]}), search={"trials": 3, "sampler": "grid"})
    (row,) = opened(suite, probing, tmp_path / "out").run().rows
    assert row["model.knob"] == 3
    assert "the best model.knob = 3 is at the top of its range [1, 3]" in row["warnings"]
    # and in search.md's flag column, beside the budget: tuned no further than the range allowed
    (line,) = [
        line
        for line in (tmp_path / "out" / "search.md").read_text().splitlines()
        if line.startswith("| watched/")
    ]
    assert line.endswith("| model.knob = 3 at the top of its range [1, 3] |")


def test_the_search_report_has_the_budget_in_its_headline_and_a_figure_per_study(tmp_path, probing):
    suite = searched(
        bowl({"knob": {"low": 0, "high": 9}}, latent_dim=1),
        bowl({"knob": [2, 3]}, latent_dim=2),  # a grid of 2: fewer trials than the budget
        entry("ae", hidden=[4]),  # nothing searched: no budget at all
        search={"trials": 4, "sampler": "grid"},
    )
    rows = opened(suite, probing, tmp_path / "out").run().rows

    text = (tmp_path / "out" / "search.md").read_text()
    assert text.startswith("# Tuned with 4 trials each on validation")
    assert text.count("different budget: 2 trials, not 4") == 1
    assert "| watched/ae/none | 0 |" in text and "different budget: nothing searched" in text
    (untuned,) = [row for row in rows if row["model"] == "ae"]
    assert "not tuned: nothing is searched" in untuned["warnings"]
    figures = sorted(p.name for p in (tmp_path / "out" / "search-figures").iterdir())
    assert len([f for f in figures if f.endswith("-history.png")]) == 2
    assert len([f for f in figures if f.endswith("-importance.png")]) == 2
    # The results report says so too, flagging the unequal budgets.
    out = tmp_path / "out"
    report = [b.text for b in report_blocks(out, read_results(out)) if isinstance(b, Paragraph)]
    assert any(
        line.startswith("⚠ Tuned on validation with different budgets (0, 4 trials)")
        and "search.md" in line
        for line in report
    )


def test_the_report_headline_says_how_many_trials_tuned_each(tmp_path, probing):
    suite = searched(
        bowl({"knob": {"low": 0, "high": 9}}, latent_dim=1),
        bowl({"knob": {"low": 0, "high": 9}}, latent_dim=2),
        search={"trials": 3, "sampler": "random"},
    )
    opened(suite, probing, tmp_path / "out").run()
    out = tmp_path / "out"
    report = [b.text for b in report_blocks(out, read_results(out)) if isinstance(b, Paragraph)]
    assert "Tuned with 3 trials each on validation (histories and parameter importances:" in (
        " ".join(report)
    )


def test_every_configuration_gets_the_same_budget(tmp_path, probing):
    suite = searched(
        bowl({"knob": {"low": 0, "high": 9}}),
        entry("ae", hidden=[4]) | {"search": {"latent_dim": [1, 2, 3]}},
        search={"trials": 4, "sampler": "random"},
        train={"lr": 1e-2},
    )
    run = opened(suite, probing, tmp_path / "out").run()

    assert {name: len(trials) for name, trials in studies(tmp_path / "out").items()} == {
        name: 4 for name in studies(tmp_path / "out")
    }
    assert len(studies(tmp_path / "out")) == 2
    assert [row["search_trials"] for row in run.rows] == [4, 4]


def test_a_budget_in_seconds_stops_each_search_once_spent(tmp_path, probing):
    suite = searched(bowl({"knob": {"low": 0, "high": 9}}), search={"budget_s": 0.5})
    opened(suite, probing, tmp_path / "out").run()
    (trials,) = studies(tmp_path / "out").values()
    spent = [t.user_attrs["spent_s"] for t in trials]
    assert sum(spent) >= 0.5 > sum(spent[:-1])  # it stopped at the first trial past the budget


def test_the_test_split_is_never_read_while_searching(tmp_path, probing):
    # The objective is a metric's column: measured, like the health checks, on validation.
    suite = searched(
        bowl({"knob": {"low": 0, "high": 4}}),
        search={"trials": 3, "objective": "recon_mse"},
    )
    session = opened(suite, probing, tmp_path / "out")
    probe.WatchedSplit.reads = 0

    tuned = Search(session.suite, probing, session.output, session.device, session.cache).run()

    assert probe.WatchedSplit.reads == 0
    assert tuned[0].trials == 3 and math.isfinite(tuned[0].best_value)
    session.run()  # the leaderboard: measured on test
    assert probe.WatchedSplit.reads > 0


def test_a_failing_search_trial_is_recorded_and_the_search_goes_on(tmp_path, probing):
    suite = searched(
        entry("bowl"),
        search={"trials": 2, "sampler": "grid", "train": {"lr": [1e-2, 1e30]}},
    )
    (row,) = opened(suite, probing, tmp_path / "out").run().rows
    (trials,) = studies(tmp_path / "out").values()
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "FAIL"]
    assert row["status"] == "ok" and row["train.lr"] == 1e-2


def test_the_pruner_stops_bad_trials_early(tmp_path, probing):
    epochs = 6
    suite = searched(
        bowl({"knob": {"low": 0, "high": 100}}),  # wide: no knob drawn twice (read back)
        search={"trials": 10, "sampler": "random", "pruner": "median", "seed": 1},
        epochs=epochs,
    )
    opened(suite, probing, tmp_path / "out").run()
    (trials,) = studies(tmp_path / "out").values()
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned, [t.params for t in trials]
    assert all(t.user_attrs["epochs"] < epochs for t in pruned)
    assert all(t.user_attrs["epochs"] == epochs for t in complete)
    assert len(trials) == 10  # pruned trials count against the budget


def test_the_pruner_stops_the_worse_trials_of_a_maximized_objective(tmp_path, probing, monkeypatch):
    # before: it heard each epoch's validation loss as is, and a study that maximizes its
    # objective (recon_psnr, say) cut the trials of the lowest losses, the best. (The direction
    # is set here: the probe's model has no higher-is-better column of its own.)
    import aebench.run.search as search_module

    monkeypatch.setattr(search_module, "direction", lambda *args, **kwargs: "maximize")
    suite = searched(
        bowl({"knob": {"low": 0, "high": 100}}),
        search={"trials": 10, "sampler": "random", "pruner": "median", "seed": 1},
        epochs=6,
    )
    opened(suite, probing, tmp_path / "out").run()
    (trials,) = studies(tmp_path / "out").values()
    state = optuna.trial.TrialState

    def off(trial: optuna.trial.FrozenTrial) -> int:  # how far its knob is from the best
        return abs(trial.params["model.knob"] - probe.BEST_KNOB)

    pruned = [off(t) for t in trials if t.state == state.PRUNED]
    complete = [off(t) for t in trials if t.state == state.COMPLETE]
    assert pruned and complete
    # cut: worse than the median of those that ran on (before: 6 to 37 cut, 3 to 69 run on)
    assert min(pruned) > statistics.median(complete), (pruned, complete)


def shared_rows(context: MetricContext) -> dict[str, float]:
    """How many of the measured rows the metric could fit on too (in its training split)."""
    train, test = context.data.train.x.flatten(1), context.data.test.x.flatten(1)
    return {"shared_rows": float((torch.cdist(test, train) == 0).any(1).sum())}


class SharedRows:
    @hookimpl
    def aebench_register_metrics(self, register):
        register("shared_rows", Metric(shared_rows, columns=[Column("shared_rows", "lower")]))


def test_metrics_never_fit_on_the_rows_a_search_measures(tmp_path):
    # before: with [train] val_fraction, a search trial was measured on the held-out rows while
    # its metrics fitted on the whole training split, those rows in it: a 1-neighbour kNN scored
    # 1.0 on every trial, and the search had nothing to tell them apart by.
    plugins = load_plugins(extra=[probe, SharedRows()])
    suite = searched(
        bowl({"knob": {"low": 0, "high": 9}}),
        search={"trials": 2, "seed": 1, "objective": "shared_rows"},
        train={"val_fraction": 0.25},
        metrics=["shared_rows"],
    )
    opened(suite, plugins, tmp_path / "out").run()
    (trials,) = studies(tmp_path / "out").values()
    assert [t.value for t in trials] == [0.0, 0.0]


def test_without_a_pruner_every_trial_trains_all_its_epochs(tmp_path, probing):
    suite = searched(bowl({"knob": {"low": 0, "high": 9}}), search={"trials": 6, "seed": 1})
    opened(suite, probing, tmp_path / "out").run()
    (trials,) = studies(tmp_path / "out").values()
    assert {t.user_attrs["epochs"] for t in trials} == {3}


SEARCH_IN_A_CHILD = """
import json, sys
import aebench_search_probe as probe
from aebench.plugins.manager import load_plugins
from aebench.session import Session
from aebench.views.blocks import Paragraph
from aebench.views.layout import report_blocks
session = Session.open(json.loads(sys.argv[1]), plugins=load_plugins(extra=[probe]),
                       output=sys.argv[2])
session.load_data()
session.run()
"""


def finished_trials(database: Path, running: bool = False) -> list[tuple[int, str]]:
    """(number, completion time) of the trials the search has told, read as another process;
    ``running``: empty unless a trial is under way too (to be killed in it)."""
    if not database.exists():
        return []
    try:
        with sqlite3.connect(database) as connection:
            told = connection.execute(
                "SELECT number, datetime_complete FROM trials WHERE state != 'RUNNING'"
                " ORDER BY number"
            ).fetchall()
            under_way = connection.execute("SELECT count(*) FROM trials WHERE state = 'RUNNING'")
            return [] if running and under_way.fetchone() == (0,) else told
    except sqlite3.OperationalError:  # the tables are not made yet, or are being written
        return []


@pytest.mark.slow
def test_a_search_killed_midway_resumes_without_repeating_finished_trials(tmp_path, probing):
    trials = 8
    suite = searched(
        bowl({"knob": {"low": 0, "high": 50}}),
        search={"trials": trials, "sampler": "random"},
        epochs=30,
        train={"batch_size": 8},
    )
    output = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{SUPPORT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen(
        [sys.executable, "-c", SEARCH_IN_A_CHILD, json.dumps(suite), str(output)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while len(finished_trials(output / "search.db", running=True)) < 2:
            assert child.poll() is None, "the search ended before it could be killed"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    before = finished_trials(output / "search.db")
    assert len(before) < trials

    run = opened(suite, probing, output).run()

    (counted_trials,) = studies(output).values()
    assert len(counted_trials) == trials  # the budget, not the budget plus what ran before
    after = finished_trials(output / "search.db")
    assert after[: len(before)] == before  # the finished trials were kept, not run again
    assert run.rows[0]["search_trials"] == trials
    with sqlite3.connect(output / "search.db") as connection:  # the killed trial was run again
        left = connection.execute("SELECT count(*) FROM trials WHERE state = 'RUNNING'")
        assert left.fetchone() == (0,)


def test_a_regularizer_and_a_train_setting_are_searched_too(tmp_path, probing):
    suite = searched(
        entry("bowl"),
        search={"trials": 3, "sampler": "random", "train": {"lr": {"low": 1e-3, "high": 1e-2}}},
    )
    suite["regularizers"] = [
        {"plugin": "denoising", "params": {"kind": "masking"}, "search": {"p": [0.1, 0.3]}}
    ]
    (row,) = opened(suite, probing, tmp_path / "out").run().rows
    (trials,) = studies(tmp_path / "out").values()
    best = min((t for t in trials if t.value is not None), key=lambda t: t.value)
    assert row["regularizer.p"] == best.params["regularizer.p"]
    assert row["train.lr"] == best.params["train.lr"]


def test_search_trials_are_mlflow_runs_in_the_search_folders_experiment(tmp_path, probing):
    from mlflow_runs import search_runs

    from aebench.observers.tracking_store import sqlite_uri

    uri = sqlite_uri(tmp_path / "store" / "mlflow.db")
    suite = searched(
        bowl({"knob": {"low": 0, "high": 9}}, latent_dim=1),
        search={"trials": 3, "sampler": "random"},
        tracking={"uri": uri},
    )
    session = opened(suite, probing, tmp_path / "out")
    session.start_observers()
    session.run()

    searched_ids = {
        row["trial_id"] for row in read_results(tmp_path / "out" / "search").to_dict("records")
    }
    runs = search_runs(uri, search_all_experiments=True)
    # Trial runs name their invocation's run, which names the results folder.
    folders = runs.set_index("run_id")["tags.aebench.output"].dropna()
    trial_runs = runs[runs["tags.aebench.trial_id"].notna()]
    folder_of = trial_runs["tags.aebench.invocation"].map(folders)
    by_folder = trial_runs.groupby(folder_of)["tags.aebench.trial_id"].agg(set)
    assert by_folder[str((tmp_path / "out" / "search").resolve())] == searched_ids
    assert len(by_folder[str((tmp_path / "out").resolve())]) == 1  # the leaderboard's one seed
    assert set(trial_runs["status"]) == {"FINISHED"}


def test_a_study_is_named_by_how_it_searches_and_not_by_its_budget(tmp_path, probing):
    # Reopened under an old name, a study kept its old objective's direction and pooled two
    # objectives' values. The budget alone may change: a larger one goes on with the study.
    def name(metrics: tuple[str, ...] = ("recon_mse",), **search: Any) -> str:
        suite = searched(bowl({"knob": [1, 2, 3]}), search={"trials": 3} | search, metrics=metrics)
        (configuration,) = configurations(
            Session.open(suite, plugins=probing, output=tmp_path).suite
        )
        return configuration.study_name

    first = name()
    assert name(trials=6) == first
    for other in (
        {"objective": "recon_mse"},
        {"sampler": "random"},
        {"seed": 1},
        {"trial_seed": 7},
    ):
        assert name(**other) != first, other
    # What is measured makes another study only where the objective is a metric.
    assert name(metrics=("recon_mse", "recon_bce")) == first
    metric = name(objective="recon_mse")
    assert name(metrics=("recon_mse", "recon_bce"), objective="recon_mse") != metric


def test_search_md_shows_this_runs_studies_not_those_of_a_search_since_changed(tmp_path, probing):
    suite = searched(bowl({"knob": [1, 2, 3]}), search={"trials": 3, "sampler": "grid"})
    opened(suite, probing, tmp_path / "out").run()
    suite["search"] = {"trials": 3, "sampler": "random"}  # another study, the first one kept
    opened(suite, probing, tmp_path / "out").run()
    assert len(studies(tmp_path / "out")) == 2
    text = (tmp_path / "out" / "search.md").read_text()
    assert "random sampler" in text
    assert len([line for line in text.splitlines() if line.startswith("| watched/")]) == 1
