"""Published values in suites (``[[references]]``): validation, matching, the report's
Reproduction section, the compare gate, and the Burda et al. 2015 suites."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from builders import as_toml, build_suite, entry
from repo import REPO

from aebench.cli import main
from aebench.contract.columns import Column, Vocabulary, is_config_column
from aebench.plugins.manager import Plugins, load_plugins
from aebench.results.references import (
    Reference,
    ReferencesError,
    canonical,
    matches,
    outcomes,
    read_references,
    stage_ends,
    trial_columns,
)
from aebench.results.table import SUITE_FILE
from aebench.results.trials import CURVES, trial_folder
from aebench.run.optim import make_schedule
from aebench.run.suite import SuiteError, load_suite
from aebench.run.trial import base_row
from aebench.views.compare import compare, parse_kinds
from aebench.views.report import build_report

BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    """One plugin manager for the file: these tests only read it."""
    return load_plugins()


def suite_with(references: list[dict], metrics: list[str] | None = None) -> dict:
    """Digits, a VAE at two latent sizes, two seeds, the default training; and ``references``."""
    vae = entry("vae", grid={"latent_dim": [2, 4]}, hidden=[8])
    metrics = metrics or ["log_px_iwae", "active_units", "knn_acc"]
    built = build_suite(
        vae, name="ref", seeds=[0, 1], epochs=None, batch_size=None, metrics=metrics
    )
    return built | {"references": references}


def reference(**fields) -> dict:
    base = {
        "paper": "Someone 2020",
        "table": "Table 1",
        "metric": "log_px_iwae",
        "value": -20.0,
        "tolerance": 0.5,
        "where": {"model": "vae", "model.latent_dim": 2},
    }
    return base | fields


def test_a_suite_carries_its_references_and_they_match_one_configuration(plugins) -> None:
    suite = load_suite(suite_with([reference(note="NLL 20 nats")]), plugins)

    [published] = suite.spec.references
    assert (published.value, published.tolerance, published.check) == (-20.0, 0.5, "within")
    assert published.label() == "Someone 2020, Table 1"
    assert len(suite.trials) == 4


@pytest.mark.parametrize(
    ("fields", "place", "complaint"),
    [
        ({"metric": "log_px"}, "references[0].metric", "'log_px' is no column of this suite"),
        (
            {"where": {"model": "vae", "model.latent_dim": 3}},
            "references[0].where",
            'no trial of this suite has model = "vae", model.latent_dim = 3',
        ),
        ({"where": {"model": "vae"}}, "references[0].where", "matches 2 configurations"),
        ({"where": {"seed": 0}}, "references[0].where.seed", "not a configuration column"),
        ({"tolerance": 0.0}, "references[0].tolerance", "greater than 0"),
        ({"tolerance": -1.0}, "references[0].tolerance", "greater than 0"),
        ({"value": math.nan}, "references[0].value", "finite number"),
        ({"check": "close"}, "references[0].check", "'within' or 'not-worse'"),
        (
            {"metric": "active_units", "check": "not-worse"},
            "references[0].check",
            "declares no better direction",
        ),
        ({"where": {}}, "references[0].where", "at least 1 item"),
        ({"journal": "x"}, "references[0].journal", "unknown key"),
        (  # a percent for a share: no accuracy of ours could come within it
            {"metric": "knn_acc", "value": 97.3},
            "references[0].value",
            "97.3 ± 0.5 lies outside what 'knn_acc' can take, [0.0, 1.0]",
        ),
    ],
)
def test_a_bad_reference_is_one_line_naming_its_place(plugins, fields, place, complaint) -> None:
    with pytest.raises(SuiteError) as raised:
        load_suite(suite_with([reference(**fields)]), plugins)

    [line] = raised.value.lines
    assert line.startswith(f"<dict>: {place}: "), line
    assert complaint in line, line


def test_a_reference_may_name_a_metric_the_suite_does_not_run_only_as_an_error(plugins) -> None:
    with pytest.raises(SuiteError, match="'elbo' is no column of this suite"):
        load_suite(suite_with([reference(metric="elbo")], metrics=["log_px_iwae"]), plugins)


def test_a_trials_columns_are_those_the_runner_writes_in_its_row(plugins) -> None:
    suite = load_suite(suite_with([reference()]), plugins)
    for trial in suite.trials:
        row = base_row(trial, plugins, torch.device("cpu"))
        written = {k: v for k, v in row.items() if is_config_column(k)}

        assert trial_columns(trial.config()) == written


def test_values_match_as_the_table_spells_them() -> None:
    row = {"model": "vae", "model.latent_dim": 8.0, "model.hidden": "[200, 200]"}

    assert matches(row, {"model": "vae", "model.latent_dim": 8})
    assert matches(row, {"model.hidden": [200, 200]})
    assert not matches(row, {"model.hidden": [200]})
    assert not matches(row, {"model.k": 5})  # a column the row lacks never matches
    assert canonical(np.float64(3.0)) == 3 and canonical(math.nan) is None


def test_runs_under_other_settings_in_one_folder_are_each_compared_and_told_apart() -> None:
    table = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d"],
            "status": ["ok", "ok", "ok", "failed"],
            "dataset": "mnist",
            "model": "iwae",
            "regularizer": "none",
            "model.k": [5, 5, 50, 5],
            "train.epochs": [4, 13, 4, 13],
            "seed": 0,
            "log_px_iwae": [-90.0, -88.0, -86.0, math.nan],
        }
    )
    published = Reference.model_validate(reference(value=-85.54, where={"model.k": 5}, epochs=13))

    later, earlier = outcomes(table, [published])

    assert earlier.configuration == "mnist/iwae/none model.k=5 train.epochs=4"
    assert (earlier.mean, earlier.seeds, earlier.shortened) == (-90.0, 1, True)
    assert later.configuration == "mnist/iwae/none model.k=5 train.epochs=13"
    assert (later.mean, later.trials, later.shortened) == (-88.0, ["b"], False)


def test_stage_ends_are_a_multistep_schedules_milestones_then_the_last_epoch() -> None:
    schedule = json.dumps({"kind": "multistep", "milestones": [1, 4, 13, 40], "gamma": 0.7})

    assert stage_ends(schedule, 13) == [1, 4, 13]
    assert stage_ends(schedule, 50) == [1, 4, 13, 40, 50]
    assert stage_ends(json.dumps({"kind": "constant"}), 10) == [1, 2, 4, 8, 10]


# --- a results folder with references: the report and compare --------------------------------

# latent_dim -> per seed: 2's 95% interval [-20.25, -19.75] within -20 ± 0.5; 4's wholly below
VALUES = {2: [-20.1, -19.9, -20.0], 4: [-25.0, -24.0, -26.0]}
CURVE = [30.0, 25.0, 24.0, 22.0, 21.5, 21.0]  # val_loss per epoch, seed 0; seed s adds s
SCHEDULE = json.dumps({"kind": "multistep", "milestones": [1, 4], "gamma": 0.5})


def results_folder(folder: Path, references: list[dict], epochs: int = 6) -> Path:
    """What a run of ``suite_with`` leaves behind, written by hand: the table, suite.json and each
    trial's curves."""
    rows = []
    for latent, values in VALUES.items():
        for seed, value in enumerate(values):
            trial_id = f"t{latent}s{seed}"
            rows.append(
                {
                    "trial_id": trial_id,
                    "dataset": "digits",
                    "model": "vae",
                    "regularizer": "none",
                    "model.latent_dim": latent,
                    "train.epochs": epochs,
                    "train.schedule": SCHEDULE,
                    "seed": seed,
                    "status": "ok",
                    "reason": "",
                    "log_px_iwae": value,
                }
            )
            trial = trial_folder(folder, trial_id)
            trial.mkdir(parents=True)
            curves = {"val_loss": [v + seed for v in CURVE[:epochs]]}
            (trial / CURVES).write_text(json.dumps(curves))
    pd.DataFrame(rows).to_parquet(folder / "results.parquet", index=False)
    (folder / SUITE_FILE).write_text(json.dumps(suite_with(references)))
    vocabulary = Vocabulary()
    vocabulary.add([Column("log_px_iwae", "higher", floor=0.5, group="likelihood")])
    (folder / "columns.json").write_text(vocabulary.to_json())
    return folder


def reproduction_lines(folder: Path) -> list[str]:
    markdown, _ = build_report(folder)
    text = markdown.read_text()
    section = text.split("## Reproduction", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")]  # rows, no rules


def test_the_report_sets_ours_beside_the_published_values(tmp_path) -> None:
    inside = reference(value=-20.0, tolerance=0.5, note="NLL 20 nats")
    outside = reference(value=-20.0, tolerance=0.5, where={"model.latent_dim": 4})
    folder = results_folder(tmp_path, [inside, outside])

    header, first, second = reproduction_lines(folder)

    assert "ours − published" in header
    mean, std = np.mean(VALUES[2]), np.std(VALUES[2], ddof=1)
    cells = [c.strip() for c in first.strip("|").split("|")]
    assert cells[1] == "digits/vae/none model.latent_dim=2"
    assert cells[3] == "3"
    # The mean and its 95% t interval over the 3 seeds, worked out here by the formula.
    half = scipy.stats.t.ppf(0.975, 2) * std / np.sqrt(3)
    assert cells[4] == f"{mean:.4g} ± {half:.2g}"
    assert cells[5:9] == ["-20", f"{mean + 20:+.2f}", "±0.5", "inside"]
    assert cells[9] == "NLL 20 nats"
    cells = [c.strip() for c in second.strip("|").split("|")]
    assert cells[6] == f"{np.mean(VALUES[4]) + 20:+.2f}" and cells[8] == "outside"
    report = (folder / "report.md").read_text()
    assert "1 of 2 published values reproduced within their tolerance (1 outside, 0" in report


def scores(by_model: dict[str, list[float]]) -> pd.DataFrame:
    """A results table of ``score`` per seed of each model."""
    rows = [
        {"trial_id": f"{m}{s}", "status": "ok", "dataset": "d", "model": m, "seed": s}
        | {"regularizer": "none", "score": v}
        for m, values in by_model.items()
        for s, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_not_worse_passes_a_better_value_and_fails_a_worse_one() -> None:
    table = scores({"m": [-10.0, -11.0, -9.0], "n": [-30.0, -31.0, -29.0]})
    better = Reference.model_validate(
        reference(metric="score", check="not-worse", value=-20.0, where={"model": "m"})
    )
    worse = better.model_copy(update={"where": {"model": "n"}})

    up, down = outcomes(table, [better, worse])

    assert (up.verdict(+1), down.verdict(+1)) == ("inside", "outside")  # higher is better
    assert (up.verdict(-1), down.verdict(-1)) == ("outside", "inside")  # lower: the other way


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([-20.1, -19.9, -20.0], "inside"),  # [-20.25, -19.75] within -20 +- 0.5
        ([-20.6, -19.6, -20.1], "inconclusive"),  # mean -20.1 inside, its interval is not
        ([-21.5, -20.3, -20.5], "inconclusive"),  # mean -20.77 outside, [-22.36, -19.17] not
        ([-22.1, -21.9, -22.0], "outside"),  # [-22.25, -21.75] wholly below -20.5
        ([-17.0, -17.2], "inconclusive"),  # two seeds: no interval, however far
    ],
)
def test_a_reproduction_is_a_test_on_the_interval_over_seeds(values, expected) -> None:
    """Inside or outside only where the 95% interval of ours lies wholly on one side of the
    tolerance's edge; a mean alone says neither."""
    [outcome] = outcomes(
        scores({"m": values}),
        [Reference.model_validate(reference(metric="score", where={"model": "m"}))],
    )
    ours = outcome.interval()
    if len(values) >= 3:  # the interval is Student's t over the seeds, worked out here
        low, high = scipy.stats.t.interval(
            0.95, len(values) - 1, np.mean(values), scipy.stats.sem(values)
        )
        assert (ours.low, ours.high) == pytest.approx((low, high))
    assert outcome.verdict(+1) == expected


@pytest.mark.parametrize("lost", ["diverged", "nan", "-inf"])
def test_seeds_that_gave_no_value_keep_a_reproduction_from_being_inside(lost: str) -> None:
    # Three seeds near the published value and one that gave none: "inside" on the three would
    # speak for a configuration whose every seed it does not describe.
    table = scores({"m": [-20.1, -19.9, -20.0, -20.0]})
    if lost == "diverged":
        table.loc[3, ["status", "score"]] = ["diverged", math.nan]
    else:
        table.loc[3, "score"] = float(lost)
    published = Reference.model_validate(reference(metric="score", where={"model": "m"}))
    [outcome] = outcomes(table, [published])
    assert outcome.seeds == 3 and outcome.lost == 1 and outcome.seeds_text == "3 of 4"
    assert outcome.verdict(+1) == "inconclusive"
    [whole] = outcomes(scores({"m": [-20.1, -19.9, -20.0]}), [published])
    assert whole.lost == 0 and whole.seeds_text == "3" and whole.verdict(+1) == "inside"
    # Far off on the seeds that gave one, it is still outside.
    table.loc[:2, "score"] = [-22.1, -21.9, -22.0]
    assert outcomes(table, [published])[0].verdict(+1) == "outside"
    # compare says so beside the verdict
    row = _reproduction_row(table, published)
    assert "a value on 3 of 4 seeds" in row["note"]


def _reproduction_row(table: pd.DataFrame, published: Reference) -> pd.Series:
    rows = compare(table, table, references=[published]).rows
    (row,) = rows[rows["kind"] == "reproduction"].to_dict("records")
    return pd.Series(row)


def test_not_worse_is_inconclusive_where_the_interval_reaches_past_the_margin() -> None:
    # higher is better, allowed down to -20.5: [-20.93, -19.07] reaches below it
    table = scores({"m": [-20.0, -19.6, -20.4]})
    published = reference(metric="score", check="not-worse", value=-20.0, where={"model": "m"})
    [outcome] = outcomes(table, [Reference.model_validate(published)])
    assert outcome.verdict(+1) == "inconclusive"
    assert outcome.verdict(+1, confidence=0.5) == "inside"  # a narrower interval: inside


def test_a_shortened_run_is_marked_and_its_learning_curve_shown(tmp_path) -> None:
    published = reference(epochs=3280, curve={"name": "val_loss", "scale": -1.0})
    folder = results_folder(tmp_path, [published], epochs=6)

    lines = reproduction_lines(folder)

    assert "inside (shortened: 6 of 3,280 epochs)" in lines[1]
    curve_header = next(line for line in lines if "epoch 1 " in line)
    assert [c.strip() for c in curve_header.strip("|").split("|")] == [
        "configuration",
        "curve",
        "epoch 1",
        "epoch 4",
        "epoch 6",
        "published",
    ]
    row = lines[lines.index(curve_header) + 1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    seeds = np.arange(3)  # the curve of seed s is CURVE + s; the reference scales it by -1
    expected = [-np.mean(CURVE[e - 1] + seeds) for e in (1, 4, 6)]
    assert cells[1] == "-1 × val_loss"
    assert cells[2:5] == [f"{v:.4g}" for v in expected]
    assert cells[5] == "-20 (epoch 3,280)"


def test_a_full_length_run_is_not_marked_shortened(tmp_path) -> None:
    folder = results_folder(tmp_path, [reference(epochs=6, curve={"name": "val_loss"})], epochs=6)

    lines = reproduction_lines(folder)

    assert "shortened" not in "".join(lines)
    assert not any("epoch 1 " in line for line in lines)


def test_a_folder_without_references_has_no_reproduction_section(tmp_path) -> None:
    folder = results_folder(tmp_path, [])

    markdown, _ = build_report(folder)

    assert "Reproduction" not in markdown.read_text()


def test_a_run_reports_its_reproduction_and_the_folder_keeps_the_references(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    vae = entry("vae", latent_dim=2, hidden=[8])
    suite = build_suite(vae, name="tiny-reproduction", threads=1, batch_size=128, metrics=["elbo"])
    published = {"paper": "Nobody 2024", "metric": "elbo", "value": 1e6, "tolerance": 1.0}
    published |= {"epochs": 100, "where": {"model": "vae"}}
    (tmp_path / "suite.toml").write_text(as_toml(suite | {"references": [published]}))

    assert main(["run", "suite.toml"]) == 0

    out = capsys.readouterr().out
    # one seed: no interval, so however far from the published value, not shown outside it
    assert "reproduction: of 1 published values, 0 inside its tolerance, 0 outside" in out
    assert "1 inconclusive (95% over seeds, outside Holm-corrected); 1 of the runs shortened" in out
    folder = tmp_path / "results" / "tiny-reproduction"
    [kept] = read_references(folder)
    assert kept.value == 1e6
    (folder / "report.md").unlink()
    assert main(["report", str(folder)]) == 0  # rebuilt from the folder alone
    report = (folder / "report.md").read_text()
    assert "inconclusive (1 seed: no interval; shortened: 2 of 100 epochs)" in report


def test_compare_fails_on_reproduction_only_when_asked(tmp_path, capsys) -> None:
    inside = reference(where={"model.latent_dim": 2})
    outside = reference(where={"model.latent_dim": 4})
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good = results_folder(tmp_path / "good", [inside])
    bad = results_folder(tmp_path / "bad", [inside, outside])

    assert main(["compare", str(good), str(good), "--fail-on", "reproduction"]) == 0
    assert main(["compare", str(bad), str(good), "--fail-on", "reproduction"]) == 1
    out = capsys.readouterr().out
    assert "outside" in out and "2 published values" in out and "1 outside" in out
    # ours is shown with the interval the verdict tests: Student's t over the 3 seeds
    values = VALUES[4]
    low, high = scipy.stats.t.interval(0.95, 2, np.mean(values), scipy.stats.sem(values))
    assert f"{np.mean(values):.4g} [{low:.4g}, {high:.4g}] (95% CI, 3 seeds)" in out
    assert main(["compare", str(bad), str(good)]) == 0  # quality and speed only, by default
    assert main(["compare", str(bad), str(good), "--fail-on", "all"]) == 1


def test_references_that_cannot_be_read_are_said_not_dropped(tmp_path, capsys) -> None:
    # before: one entry aebench could not read (a key of another version) dropped them all, and
    # `compare --fail-on reproduction` passed a reproduction that was never checked.
    folder = results_folder(tmp_path, [reference(where={"model.latent_dim": 4})])
    suite = json.loads((folder / SUITE_FILE).read_text())
    suite["references"][0]["journal"] = "x"
    (folder / SUITE_FILE).write_text(json.dumps(suite))
    with pytest.raises(ReferencesError, match=r"references\[0\]\.journal: Extra inputs"):
        read_references(folder)
    assert main(["compare", str(folder), str(folder), "--fail-on", "reproduction"]) == 2
    err = capsys.readouterr().err
    assert "references[0].journal" in err and "Traceback" not in err
    markdown, _ = build_report(folder)
    assert "## Reproduction\n\nNot checked: " in markdown.read_text()


def test_not_worse_without_a_declared_direction_is_inconclusive_not_inside() -> None:
    # The suite refuses it; a folder whose declarations are gone reaches it: no direction says
    # which side is worse, so no value is inside (before: any value was, 100 below as well).
    table = scores({"m": [-120.0, -121.0, -119.0]})
    published = Reference.model_validate(
        reference(metric="score", check="not-worse", value=-20.0, where={"model": "m"})
    )
    [outcome] = outcomes(table, [published])
    assert outcome.verdict(0) == "inconclusive"
    assert math.isnan(outcome.outside_p(0))
    assert outcome.verdict(+1) == "outside"


def test_an_unmatched_reference_is_outside_not_silently_passed(tmp_path) -> None:
    folder = results_folder(tmp_path, [reference(where={"model": "iwae"})])
    table = pd.read_parquet(folder / "results.parquet")

    comparison = compare(
        table, table, references=[Reference.model_validate(reference(where={"model": "iwae"}))]
    )

    [row] = comparison.rows[comparison.rows["kind"] == "reproduction"].to_dict("records")
    assert row["verdict"] == "outside" and "not measured" in row["note"]
    assert not comparison.regressions(parse_kinds("reproduction")).empty


def test_fail_on_reproduction_is_a_kind_and_a_typo_is_refused() -> None:
    assert parse_kinds("quality,reproduction") == ("quality", "reproduction")
    assert parse_kinds("all") == ("quality", "speed", "reproduction")
    assert parse_kinds("both") == ("quality", "speed")
    with pytest.raises(ValueError, match="reproducion is not one of"):
        parse_kinds("reproducion")


# --- the Burda et al. 2015 suites -----------------------------------------------------------


@pytest.mark.parametrize(("name", "trials"), [("burda2015", 10), ("burda2015-short", 6)])
def test_the_burda_suites_validate_with_a_reference_per_trial(plugins, name, trials) -> None:
    suite = load_suite(BENCHMARKS / f"{name}.toml", plugins)

    assert len(suite.trials) == trials
    assert len(suite.spec.references) == trials  # Table 1: one published NLL per configuration
    nll = {
        (r.where["model"], r.where.get("model.k", r.where.get("model.mc_samples"))): -r.value
        for r in suite.spec.references
    }
    table1 = {
        ("vae", 1): 86.76,
        ("vae", 5): 86.47,
        ("vae", 50): 86.35,
        ("iwae", 5): 85.54,
        ("iwae", 50): 84.78,
        ("vae-2layer", 1): 85.33,
        ("vae-2layer", 5): 85.01,
        ("vae-2layer", 50): 84.78,
        ("iwae-2layer", 5): 83.89,
        ("iwae-2layer", 50): 82.90,
    }
    assert nll == {key: value for key, value in table1.items() if key in nll}
    train = suite.trials[0].train
    assert (train["batch_size"], train["betas"], train["eps"]) == (20, [0.99, 0.999], 1e-4)
    assert all(r.epochs == 3280 for r in suite.spec.references)


@pytest.mark.parametrize("name", ["burda2015", "burda2015-short"])
def test_the_burda_suites_train_at_the_papers_rates(plugins, name) -> None:
    """Stage i of 3^i epochs at 1e-3 * 10^(-i/7), i = 0..7: all of it, or its first epochs."""
    trial = load_suite(BENCHMARKS / f"{name}.toml", plugins).trials[0]
    train = trial.train
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=train["lr"])
    schedule = make_schedule(optimizer, trial.settings())
    rates = []
    for _ in range(train["epochs"]):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: nothing changes, but it comes before the schedule's step
        schedule.step()

    papers = [1e-3 * 10 ** (-i / 7) for i in range(8) for _ in range(3**i)]
    assert rates == pytest.approx(papers[: train["epochs"]], rel=1e-9)


def test_the_vampprior_suite_validates_with_its_reference(plugins) -> None:
    suite = load_suite(BENCHMARKS / "tomczak2018.toml", plugins)

    [trial] = suite.trials
    [published] = suite.spec.references
    assert (trial.model.plugin, trial.model.params["components"]) == ("vampprior", 500)
    assert trial.model.params["latent_dim"] == 40 and published.value == -85.57
    assert trial.train["anneal"] == {"beta": {"epochs": 100, "steps": None}}
    assert trial.train["early_stopping"]["patience"] == 50


def test_the_full_burda_suite_dry_runs_its_ten_trials(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)

    status = main(["run", str(BENCHMARKS / "burda2015.toml"), "--dry-run"])

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].startswith("10 trials in suite 'burda2015' (10 to train")
    assert sum(line.strip().startswith("pending") for line in lines) == 10
    assert not (tmp_path / "results").exists()
