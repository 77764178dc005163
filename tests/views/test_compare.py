"""`aebench compare NEW BASELINE`: configurations matched without their seeds, a two-sample test
per configuration and column against the column's floor (checked against hand-computed Welch and
Benjamini–Hochberg values), the four verdicts, speed by a relative floor, bad input, exit
statuses; and, slow, a real run against itself and the power to catch a real regression."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from builders import build_suite, entry
from by_hand import seeds_for, welch_p
from timing import scaled

import aebench
from aebench.cli import main
from aebench.contract.columns import COLUMNS_FILE, Column, Vocabulary
from aebench.results.stats import MOST_SEEDS, seeds_needed
from aebench.views.compare import compare
from aebench.views.compare_text import format_comparison
from aebench.views.compare_verdicts import settle, two_sample

NAN = float("nan")

# What the tables' metrics declare (saved beside each table, as `aebench run` does).
VOCABULARY = Vocabulary()
VOCABULARY.add(
    [
        Column("recon_mse", "lower", floor=1e-3),
        Column("knn_acc", "higher", floor=0.01),
        Column("elbo", "higher", floor=0.5),
    ]
)

# Per latent size, per metric: one value per seed (0, 1, 2).
BASELINE = {
    2: {
        "recon_mse": [0.050, 0.052, 0.051],
        "knn_acc": [0.80, 0.90, 0.85],  # noisy over seeds: std 0.05
        "train_samples_per_s": [1000.0, 1100.0, 1050.0],
        "elbo": [NAN, NAN, NAN],  # a deterministic model has none
    },
    8: {
        "recon_mse": [0.020, 0.021, 0.022],
        "knn_acc": [0.950, 0.952, 0.951],
        "train_samples_per_s": [2000.0, 2010.0, 1990.0],
        "elbo": [NAN, NAN, NAN],
    },
}


def results(
    values: dict, seeds=(0, 1, 2), status: str = "ok", run: str = "a", start: str | None = None
) -> pd.DataFrame:
    """A table of ``values`` (latent size -> metric -> one value per seed); with ``start``, each
    trial's ``start_digest`` is it and the seed (without, the column is absent, as in tables
    older than it)."""
    rows = []
    for latent, metrics in values.items():
        for i, seed in enumerate(seeds):
            rows.append(
                {
                    "trial_id": f"{run}{latent}{seed}",  # a hash that includes the seed
                    "dataset": "digits",
                    "model": "ae",
                    "regularizer": "none",
                    "seed": seed,
                    "status": status,
                    "reason": "",
                    "model.latent_dim": latent,
                    "model.hidden": "[64]",
                    "train.epochs": 10,
                    "eval.metrics": None,
                    "device": "cpu",
                    **{name: per_seed[i] for name, per_seed in metrics.items()},
                }
            )
            if start is not None:
                rows[-1]["start_digest"] = f"{start}{latent}-{seed}"
    return pd.DataFrame(rows)


def changed(**changes: list[float]) -> dict:
    """The baseline's values with some replaced: ``recon_mse_8=[...]``."""
    values = copy.deepcopy(BASELINE)
    for key, per_seed in changes.items():
        metric, latent = key.rsplit("_", 1)
        values[int(latent)][metric] = per_seed
    return values


@pytest.fixture
def write(tmp_path: Path):
    def write(table: pd.DataFrame, name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)  # overwritten: a test may compare several tables
        table.to_parquet(folder / "results.parquet", index=False)
        (folder / COLUMNS_FILE).write_text(VOCABULARY.to_json())
        return folder

    return write


def run_compare(write, new: pd.DataFrame, *options: str) -> int:
    baseline = write(results(BASELINE), "baseline")
    return main(["compare", str(write(new, "new")), str(baseline), *options])


def row_of(comparison, latent: int, metric: str) -> pd.Series:
    rows = comparison.rows.set_index(["config", "metric"])
    return rows.loc[(f"digits/ae/none model.latent_dim={latent}", metric)]


def test_the_same_results_under_other_seeds_are_unchanged(write, capsys) -> None:
    # Other seeds, other trial ids, the same numbers: matched by configuration, nothing changed.
    status = run_compare(write, results(BASELINE, seeds=(3, 4, 5), run="b"))
    out = capsys.readouterr().out
    assert status == 0
    assert (
        "6 comparisons over 2 configurations: 0 regressed (0 quality, 0 speed), 0 improved," in out
    )
    assert "6 unchanged, 0 inconclusive" in out


def test_a_table_against_itself_is_unchanged_even_with_one_seed_or_wild_seeds(write) -> None:
    wild = results(changed(knn_acc_8=[0.95, 0.95, 0.10]))  # a seed that collapsed
    for table in (results(BASELINE, seeds=(0,)), wild):
        folder = write(table, "same")
        assert main(["compare", str(folder), str(folder)]) == 0
        assert set(compare(table, table, vocabulary=VOCABULARY).rows["verdict"]) == {"unchanged"}


OTHER_SEEDS = (3, 4, 5)  # NEW's seeds where the sides are independent samples (none shared)


def test_a_regression_beyond_the_floor_is_named_with_its_corrected_p(write, capsys) -> None:
    worse = [0.030, 0.031, 0.032]
    new = results(changed(recon_mse_8=worse), seeds=OTHER_SEEDS)
    status = run_compare(write, new)
    out = capsys.readouterr().out
    assert status == 1
    (line,) = [line for line in out.splitlines() if line.strip().startswith("regressed")]
    assert "model.latent_dim=8" in line and "recon_mse" in line
    assert "0.031 [0.02852, 0.03348] (95% CI, 3 seeds)" in line  # 0.031 +- 4.303 x 0.001/sqrt 3
    assert "1 regressed (1 quality, 0 speed)" in out
    assert "0 of 6 paired by seed" in out
    row = row_of(compare(new, results(BASELINE), vocabulary=VOCABULARY), 8, "recon_mse")
    # Lower is better: "the baseline beats NEW by more than the floor" is new - base > 0.001.
    raw = welch_p(worse, BASELINE[8]["recon_mse"], margin=1e-3)
    # Benjamini–Hochberg over 12 tests whose other 11 p-values are 1: the smallest times 12.
    assert row["p"] == pytest.approx(12 * raw) and row["p"] < 0.05
    assert row["pairs"] == 0


def test_seeds_that_started_alike_are_paired_and_a_change_that_moves_them_alike_is_told() -> None:
    # knn_acc of latent 2 over seeds 0, 1, 2: 0.80, 0.90, 0.85 (std 0.05, floor 0.01). NEW moves
    # each seed by about the same, from the same start: paired, the differences are tested.
    base = BASELINE[2]["knn_acc"]
    cases = {
        "unchanged": [0.801, 0.899, 0.851],  # a rerun that moved each seed by 0.001 at most
        "regressed": [0.775, 0.872, 0.826],  # 0.025 worse on each seed, give or take 0.002
    }
    baseline = results(BASELINE, start="w")
    for verdict, values in cases.items():
        new = results(changed(knn_acc_2=values), start="w")
        row = row_of(compare(new, baseline, vocabulary=VOCABULARY), 2, "knn_acc")
        assert (row["verdict"], row["pairs"]) == (verdict, 3)
        assert row["spread"] == pytest.approx(np.std(np.subtract(values, base), ddof=1))
        # Unpaired, the seeds' own spread of 0.05 hides either: the same seeds from other
        # starts (a resized layer), or a table without the column, is inconclusive.
        for other in (
            results(changed(knn_acc_2=values), start="v"),
            results(changed(knn_acc_2=values)),
        ):
            row = row_of(compare(other, baseline, vocabulary=VOCABULARY), 2, "knn_acc")
            assert (row["verdict"], row["pairs"]) == ("inconclusive", 0)
    # A table without the column is named, with what to do.
    text = format_comparison(compare(results(BASELINE), baseline, vocabulary=VOCABULARY))
    assert "the new table does not say what its trials started from" in text
    assert "run it again to pair the seeds that started alike" in text
    assert "started from" not in format_comparison(
        compare(baseline, baseline, vocabulary=VOCABULARY)
    )
    # The regression's p-value: a t-test on the differences by hand, past the floor, times the
    # family of 12 (its other p-values are 1).
    diff = np.subtract(base, cases["regressed"]) - 0.01
    t = diff.mean() / (diff.std(ddof=1) / math.sqrt(3))
    new = results(changed(knn_acc_2=cases["regressed"]), start="w")
    row = row_of(compare(new, baseline, vocabulary=VOCABULARY), 2, "knn_acc")
    assert row["p"] == pytest.approx(12 * scipy.stats.t.sf(t, 2))


def test_a_failed_seed_leaves_the_others_paired_and_too_few_alike_are_not() -> None:
    # Four seeds a side from the same starts; one of NEW's failed: the three both have are
    # paired. Two alike (NEW's seeds 0 and 1 from other starts): too few to pair, two samples.
    values = {2: {"recon_mse": [0.050, 0.052, 0.051, 0.053]}}
    seeds = (0, 1, 2, 3)
    base = results(values, seeds=seeds, start="w")
    new = results(values, seeds=seeds, run="b", start="w")
    new.loc[new["seed"] == 3, "status"] = "failed"
    row = compare(new, base, vocabulary=VOCABULARY).rows.set_index("metric").loc["recon_mse"]
    assert (row["pairs"], row["n_new"], row["n_baseline"]) == (3, 3, 4)
    new = results(values, seeds=seeds, run="b", start="w")
    new.loc[new["seed"] < 2, "start_digest"] = "other"
    row = compare(new, base, vocabulary=VOCABULARY).rows.set_index("metric").loc["recon_mse"]
    assert (row["pairs"], row["n_new"]) == (0, 4)


def test_a_better_value_is_an_improvement_not_a_failure(write, capsys) -> None:
    status = run_compare(write, results(changed(recon_mse_8=[0.010, 0.011, 0.012])))
    out = capsys.readouterr().out
    assert status == 0
    assert "0 regressed" in out and "1 improved" in out


def many_seeds(values: list[float], first: int = 0) -> pd.DataFrame:
    """A table of one configuration with a seed per value of recon_mse, from seed ``first``."""
    seeds = tuple(range(first, first + len(values)))
    return results({8: {"recon_mse": values}}, seeds=seeds)


def test_a_change_inside_the_floor_is_never_a_regression_and_can_be_shown_unchanged() -> None:
    # 16 seeds a side (others on each side), spread 0.0001: a worsening of 0.0009 (inside the
    # floor of 0.001) is certain, and still not a regression; a test of equivalence shows it
    # within the floor.
    rng = np.random.default_rng(0)
    base = list(0.02 + 1e-4 * rng.standard_normal(16))
    new = [v + 9e-4 for v in base]
    (row,) = [
        row
        for _, row in compare(
            many_seeds(new, first=16), many_seeds(base), vocabulary=VOCABULARY
        ).rows.iterrows()
        if row["metric"] == "recon_mse"
    ]
    assert row["verdict"] == "unchanged"
    # Two one-sided tests by hand: new is not worse by the floor, nor better by it.
    tost = max(welch_p(base, new, margin=-1e-3), welch_p(new, base, margin=-1e-3))
    assert row["p"] == pytest.approx(tost) and tost < 0.05


def test_too_few_seeds_to_tell_is_inconclusive_and_says_how_many_would(write, capsys) -> None:
    # knn_acc of latent 2: baseline std 0.05 against a floor of 0.01; a drop of 0.03, on other
    # seeds (two samples).
    new = results(changed(knn_acc_2=[0.81, 0.83, 0.82]), seeds=OTHER_SEEDS)
    comparison = compare(new, results(BASELINE), vocabulary=VOCABULARY)
    row = row_of(comparison, 2, "knn_acc")
    assert row["verdict"] == "inconclusive"
    spread = math.sqrt(
        (np.var([0.80, 0.90, 0.85], ddof=1) + np.var([0.81, 0.83, 0.82], ddof=1)) / 2
    )
    # A t-test's count, at this many seeds the normal formula's or up to two more: the larger of the
    # seeds that call a change of twice the floor beside the family's 12 p-values (no other
    # call: at 0.05 / 12) and those that show no change unchanged (each one-sided test at 90%).
    assert not comparison.rows["verdict"].isin(["regressed", "improved"]).any()
    family = 2 * len(comparison.rows)
    normal = max(seeds_for(spread, 0.01, 1 - 0.05 / family), seeds_for(spread, 0.01, 0.95, 0.9))
    assert row["note"] in {f"needs about {n} seeds a side" for n in range(normal, normal + 3)}
    assert run_compare(write, new) == 0  # inconclusive does not fail by default
    assert "1 inconclusive" in capsys.readouterr().out
    assert run_compare(write, new, "--fail-on", "inconclusive") == 1
    assert run_compare(write, new, "--fail-on", "speed,inconclusive") == 0  # a quality row


def test_one_seed_a_side_is_inconclusive_never_a_crash(write, capsys) -> None:
    one = results(changed(recon_mse_8=[0.5, 0.5, 0.5]), seeds=(7,))
    assert run_compare(write, one) == 0
    out = capsys.readouterr().out
    assert "inconclusive (one seed a side: no spread to test against)" not in out  # 3 vs 1
    comparison = compare(one, results(BASELINE, seeds=(0,)), vocabulary=VOCABULARY)
    row = row_of(comparison, 8, "recon_mse")
    assert row["verdict"] == "inconclusive" and "one seed a side" in row["note"]
    assert "1 seed: no interval" in format_comparison(comparison, show_all=True)


def test_a_collapsed_seed_widens_the_interval_and_is_inconclusive_not_a_pass(write, capsys) -> None:
    # One seed of latent 8 collapsed in NEW: knn_acc 0.95, 0.95, 0.10 against a steady 0.951.
    wild = results(changed(knn_acc_8=[0.95, 0.95, 0.10]))
    wild.loc[(wild["model.latent_dim"] == 8) & (wild["seed"] == 2), "warnings"] = "dead code units"
    row = row_of(compare(wild, results(BASELINE), vocabulary=VOCABULARY), 8, "knn_acc")
    assert row["verdict"] == "inconclusive"
    assert row["new_low"] < row["baseline"] < row["new_high"]  # the interval says why
    assert run_compare(write, wild) == 0
    out = capsys.readouterr().out
    assert (
        "⚠ digits/ae/none model.latent_dim=8 trained with warnings: seed 2: dead code units" in out
    )
    # The same warning on several seeds (a search's, say) is said once, with its seeds.
    wild.loc[wild["model.latent_dim"] == 2, "warnings"] = "search: lr at its edge"
    text = format_comparison(compare(wild, results(BASELINE), vocabulary=VOCABULARY))
    assert (
        "latent_dim=2 trained with warnings: seeds 0, 1, 2: search: lr at its edge\n" in text + "\n"
    )


def test_benjamini_hochberg_spans_everything_compared() -> None:
    # Four worsenings beyond the floor with raw p 0.01, 0.04, 0.03, 0.005 and their improvement
    # p-values 1: BH over 8 gives 0.04, 0.08, 0.08, 0.04 (by hand: 0.005 x 8/1, 0.01 x 8/2,
    # 0.03 x 8/3, 0.04 x 8/4, each the least at or above its rank).
    raw = [0.01, 0.04, 0.03, 0.005]
    rows = pd.DataFrame(
        {
            "verdict": "tested",
            "p_worse": raw,
            "p_better": 1.0,
            "p_same": 1.0,
            "change": -1.0,
            "direction": 1,
            "allowed": 0.5,
            "spread": 1.0,
            "pairs": 0,
            "statistic": "mean",
            "p": NAN,
            "note": "",
        }
    )
    settled = settle(rows, 0.95)
    assert list(settled["p_worse"]) == pytest.approx([0.04, 0.08, 0.08, 0.04])
    assert list(settled["verdict"]) == ["regressed", "inconclusive", "inconclusive", "regressed"]


def test_a_heavy_tailed_column_is_tested_by_mann_whitney() -> None:
    heavy = Column("fid", "lower", floor=1.0, heavy_tailed=True)
    base = pd.Series([10.0, 11.0, 12.0], index=[0, 1, 2])
    new = pd.Series([20.0, 40.0, 25.0], index=list(OTHER_SEEDS))
    tested = two_sample(base, new, heavy, 1.0, 0.95)
    # Every new value worse than every baseline value by more than the floor: by counting, one
    # of C(6, 3) = 20 splits is as extreme.
    assert tested.p_worse == pytest.approx(1 / 20)
    assert tested.p_worse != pytest.approx(welch_p(list(new), list(base), margin=1.0))
    # On the same seeds from the same starts, paired: Wilcoxon's signed-rank test, every
    # difference past the floor one of 2^3 = 8 sign patterns.
    paired = two_sample(base, new.set_axis(base.index), heavy, 1.0, 0.95, same_start=[0, 1, 2])
    assert (paired.p_worse, paired.pairs) == (pytest.approx(1 / 8), 3)
    # Declared in columns.json and read back; a file without the field: not heavy-tailed.
    declared = Vocabulary()
    declared.add([heavy])
    assert Vocabulary.from_json(declared.to_json()).get("fid").heavy_tailed
    older = declared.to_json().replace('"heavy_tailed": true,', "")
    assert not Vocabulary.from_json(older).get("fid").heavy_tailed


def test_a_heavy_tailed_column_compares_medians_and_says_so() -> None:
    # One baseline seed far off (a collapsed sample): the mean would say NEW improved by 6, the
    # medians that nothing moved (the rank test agrees: inconclusive, not improved).
    heavy = Vocabulary()
    heavy.add([Column("fid", "lower", floor=1.0, heavy_tailed=True)])
    seeds = tuple(range(6))
    base = results({8: {"fid": [10.0, 11.0, 12.0, 10.5, 11.5, 47.0]}}, seeds=seeds)
    new = results({8: {"fid": [10.2, 11.1, 11.9, 10.4, 11.6, 12.2]}}, seeds=seeds)
    comparison = compare(new, base, vocabulary=heavy)
    (row,) = (r for _, r in comparison.rows.iterrows() if r["metric"] == "fid")
    assert row["statistic"] == "median"
    assert (row["baseline"], row["new"]) == (11.25, 11.35)
    assert row["change"] == pytest.approx(0.1) and row["verdict"] != "improved"
    # 6 seeds hold a median at 95% between the lowest and the highest: 1 - 2 / 2**6 = 0.969.
    assert (row["baseline_low"], row["baseline_high"]) == (10.0, 47.0)
    text = format_comparison(comparison, show_all=True)
    assert "median 11.25 [10, 47] (95% CI, 6 seeds)" in text
    three = compare(new.head(3), base.head(3), vocabulary=heavy)
    assert "median 11 (3 seeds: no interval, a median's needs 6)" in format_comparison(
        three, show_all=True
    )


def test_a_slowdown_beyond_the_relative_floor_fails_only_when_speed_counts(write) -> None:
    slower = results(changed(train_samples_per_s_8=[1400.0, 1410.0, 1390.0]))  # 30% slower
    assert run_compare(write, slower) == 1
    assert run_compare(write, slower, "--fail-on", "quality") == 0
    assert run_compare(write, slower, "--speed-tolerance", "0.5") == 0
    slightly = results(changed(train_samples_per_s_8=[1800.0, 1810.0, 1790.0]))  # 10% slower
    assert run_compare(write, slightly) == 0


def test_a_tuned_configuration_is_matched_on_what_was_fixed_before_its_search() -> None:
    # Two runs of a tuned suite whose searches picked other learning rates (a code change moves
    # the picks): the same configurations, compared; untuned rows with those rates are not.
    def tuned(lr: float, searched: str | None = "train.lr") -> pd.DataFrame:
        table = results(BASELINE).assign(**{"train.lr": lr})
        return table if searched is None else table.assign(search_params=searched)

    comparison = compare(tuned(0.002), tuned(0.001), vocabulary=VOCABULARY)
    assert comparison.only_in_new == comparison.only_in_baseline == []
    assert set(comparison.rows["config"]) == {
        "digits/ae/none model.latent_dim=2",
        "digits/ae/none model.latent_dim=8",
    }
    assert set(comparison.rows["verdict"]) == {"unchanged"}
    apart = compare(tuned(0.002, None), tuned(0.001, None), vocabulary=VOCABULARY)
    assert apart.rows.empty and len(apart.only_in_new) == len(apart.only_in_baseline) == 2
    # A parameter searched in one table only is a configuration of its own: not matched.
    mixed = compare(tuned(0.001), tuned(0.001, None), vocabulary=VOCABULARY)
    assert mixed.rows.empty


def test_a_speed_change_at_the_tolerance_is_called_unchanged_at_most_as_often_as_stated() -> None:
    # "Not better by more than 20%" is a test of NEW against the baseline's seeds times 1.2, by
    # formula: the baseline's spread counts in it, scaled, not a floor of 0.2 x its mean taken
    # as exact (which said "unchanged" 7.8% of the time at 95%, 2,000 draws, where NEW was 20%
    # faster and the baseline's seeds spread 30%).
    speed = Column("train_samples_per_s", "higher", speed=True)
    base = pd.Series([700.0, 1300.0, 1000.0, 1100.0], index=range(4))
    new = pd.Series([1190.0, 1210.0, 1205.0, 1195.0], index=range(10, 14))
    tested = two_sample(base, new, speed, 0.2 * base.mean(), 0.95, tolerance=0.2)
    assert tested.p_same == pytest.approx(welch_p(list(1.2 * base), list(new)))
    # By simulation: at the edge, 1,000 draws, "unchanged" at most 5% + 3 standard errors; a
    # truly unchanged speed is still shown so, a third of the time with this spread.
    rng = np.random.default_rng(3)
    seeds, others = range(10), range(10, 20)

    def unchanged(ratio: float, draws: int) -> float:
        said = 0
        for _ in range(draws):
            base = pd.Series(rng.normal(1000.0, 300.0, 10), index=seeds)
            new = pd.Series(rng.normal(1000.0 * ratio, 20.0, 10), index=others)
            floor = 0.2 * base.mean()  # what the verdict shows, as compare gives it
            said += two_sample(base, new, speed, floor, 0.95, tolerance=0.2).p_same < 0.05
        return said / draws

    assert unchanged(1.2, 1000) <= 0.07
    assert unchanged(1.0, 200) >= 0.2


def test_a_configuration_that_no_longer_trains_is_a_quality_regression(write, capsys) -> None:
    new = results(BASELINE)
    new.loc[new["model.latent_dim"] == 8, "status"] = "diverged"
    assert run_compare(write, new) == 1
    out = capsys.readouterr().out
    assert "regressed (diverged)" in out and "status" in out


def test_a_configuration_that_failed_on_every_seed_in_the_baseline_is_told_if_it_trains(
    write, capsys
) -> None:
    # before: left out without a word (the baseline's trained rows alone were compared), and
    # an all-failed table against itself was "no configuration matches ... (their settings)"
    base, new = results(BASELINE), results(BASELINE)
    base.loc[base["model.latent_dim"] == 8, "status"] = "diverged"
    comparison = compare(new, base, vocabulary=VOCABULARY)
    status = row_of(comparison, 8, "status")
    assert status["verdict"] == "inconclusive"  # 3 of 3 against 0 of 3: Fisher's p = 1/20
    assert status["note"] == "seeds: 3 ok; baseline 3 diverged"
    assert not (
        comparison.rows["config"].str.contains("latent_dim=8")
        & (comparison.rows["metric"] != "status")
    ).any()  # no values of the baseline to test
    failed = results(BASELINE).assign(status="diverged")
    write(failed, "baseline")
    assert main(["compare", str(write(failed, "new")), str(write(failed, "baseline"))]) == 0
    assert "unchanged" in capsys.readouterr().out


def test_configurations_on_one_side_only_are_listed_not_failed(write, capsys) -> None:
    new = results({2: BASELINE[2], 16: BASELINE[8]})
    assert run_compare(write, new) == 0
    out = capsys.readouterr().out
    assert "only in the baseline: digits/ae/none model.latent_dim=8" in out
    assert "only in the new table: digits/ae/none model.latent_dim=16" in out
    # A column measured only by a configuration NEW lacks is not "NaN in every row" of NEW.
    base = results(changed(elbo_8=[-90.0, -91.0, -92.0]))
    assert compare(results({2: BASELINE[2]}), base, vocabulary=VOCABULARY).only_in_baseline


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["missing", "baseline"], "missing: no such results table"),
        (["new", "baseline", "--fail-on", "memory"], "--fail-on: memory is not one of"),
        (["new", "baseline", "--speed-tolerance", "-1"], "--speed-tolerance must be"),
        (["new", "baseline", "--confidence", "1.5"], "--confidence 1.5: must be between 0.5"),
        (["new", "baseline", "--confidence", "0.5"], "--confidence 0.5: must be between 0.5"),
        (["not-a-table", "baseline"], "not an aebench results table"),
        (["empty/results.parquet", "baseline"], "empty/results.parquet: holds no trials"),
        (["empty", "baseline"], "empty/results.parquet: holds no trials"),
        (["other", "baseline"], "no configuration matches one of"),
        (["other", "baseline"], "baseline (model.latent_dim)"),  # the setting apart, named
        (["unmeasured", "baseline"], "the new table: knn_acc is NaN in every row that trained"),
        (["absent", "baseline"], "the new table: knn_acc is no column, and the other table has"),
    ],
)
def test_bad_input_is_one_line_and_status_2(write, tmp_path, capsys, arguments, message) -> None:
    write(results(BASELINE), "baseline")
    write(results(BASELINE), "new")
    write(pd.DataFrame({"x": [1]}), "not-a-table")
    write(results(BASELINE).iloc[:0], "empty")  # a table of no trials
    write(results({4: BASELINE[2]}), "other")
    write(results(changed(knn_acc_2=[NAN] * 3, knn_acc_8=[NAN] * 3)), "unmeasured")
    write(results(BASELINE).drop(columns="knn_acc"), "absent")  # not even a column: as NaN
    status = main(
        ["compare", *(str(tmp_path / a) if i < 2 else a for i, a in enumerate(arguments))]
    )
    captured = capsys.readouterr()
    assert status == 2
    assert message in captured.err and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err and captured.out == ""


def test_a_column_added_since_the_baseline_is_listed_not_compared(write, capsys) -> None:
    # A metric new since the baseline: nothing to compare it with, and no fault of NEW's.
    baseline = write(results(BASELINE).drop(columns="knn_acc"), "baseline")
    assert main(["compare", str(write(results(BASELINE), "new")), str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "columns the baseline has none of (not compared): knn_acc" in out
    comparison = compare(results(BASELINE), results(BASELINE).drop(columns="knn_acc"))
    assert comparison.new_columns == []  # undeclared: the core's vocabulary alone
    comparison = compare(
        results(BASELINE), results(BASELINE).drop(columns="knn_acc"), vocabulary=VOCABULARY
    )
    assert comparison.new_columns == ["knn_acc"]
    assert "knn_acc" not in set(comparison.rows["metric"])


def test_the_old_tolerance_flags_are_accepted_and_ignored_with_a_line(write, capsys) -> None:
    new = results(changed(recon_mse_8=[0.030, 0.031, 0.032]))
    assert run_compare(write, new, "--unstable-spread", "1000", "--quality-tolerance", "9") == 1
    err = capsys.readouterr().err
    assert "--unstable-spread is deprecated and ignored" in err
    assert "--quality-tolerance is deprecated and ignored" in err


def test_tables_of_other_aebench_versions_are_compared_and_said_so(write, capsys) -> None:
    new, base = results(BASELINE), results(BASELINE)
    new["version.aebench"], base["version.aebench"] = "0.2.0", "0.1.0"
    assert main(["compare", str(write(new, "new")), str(write(base, "base"))]) == 0
    assert "other aebench versions: new 0.2.0, baseline 0.1.0" in capsys.readouterr().out


def test_the_command_exits_1_on_a_regression_from_the_shell(write) -> None:
    baseline = write(results(BASELINE), "baseline")
    new = write(results(changed(knn_acc_8=[0.5, 0.51, 0.52])), "new")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aebench.cli",
            "compare",
            str(new / "results.parquet"),
            str(baseline),
        ],
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert done.returncode == 1, done.stderr
    assert "knn_acc" in done.stdout and done.stderr == ""


def test_csv_tables_and_integer_valued_floats_match_their_parquet_twins(write, tmp_path) -> None:
    baseline = results(BASELINE)
    new = results(BASELINE).astype({"model.latent_dim": float})  # 8.0 after a NaN, say
    csv = tmp_path / "new.csv"
    new.to_csv(csv, index=False)
    comparison = compare(pd.read_csv(csv), baseline, vocabulary=VOCABULARY)
    assert not comparison.only_in_new and not comparison.only_in_baseline
    assert len(comparison.rows) == 6 and not math.isnan(comparison.rows["new"].iloc[0])


def test_rows_of_another_likelihood_protocol_are_refused_not_compared(write, capsys) -> None:
    # The same numbers, but latent 8's likelihood was a Bernoulli in the baseline: its ELBO
    # would be a mass of binarised pixels against a density of grey levels.
    base, new = results(BASELINE), results(BASELINE, seeds=(3, 4, 5), run="b")
    for table, likelihood in ((base, "bernoulli"), (new, "discretized-logistic-17")):
        table["likelihood"] = np.where(table["model.latent_dim"] == 8, likelihood, "same")
        table["binarize"] = "none"
    status = main(["compare", str(write(new, "new")), str(write(base, "baseline"))])
    out = capsys.readouterr().out
    assert status == 1
    (line,) = [line for line in out.splitlines() if line.strip().startswith("incomparable")]
    assert "model.latent_dim=8" in line and "likelihood=bernoulli, binarize=none -> " in line
    assert "discretized-logistic-17" in line
    assert "1 incomparable" in out and "0 regressed" in out
    # Latent 2, of one protocol on both sides, is compared as before; latent 8 is not at all.
    comparison = compare(new, base, vocabulary=VOCABULARY)
    assert set(comparison.rows.loc[comparison.rows["metric"] != "protocol", "config"]) == {
        "digits/ae/none model.latent_dim=2"
    }


def test_rows_of_another_test_split_are_refused_not_compared(write, capsys) -> None:
    # The same numbers, but latent 8 was measured on another test split in the new table (its
    # dataset's code drew another one): a change in its scores would be a change of data.
    base, new = results(BASELINE), results(BASELINE, seeds=(3, 4, 5), run="b")
    base["test_data"] = "0123456789abcdef"
    new["test_data"] = np.where(new["model.latent_dim"] == 8, "fedcba9876543210", base["test_data"])
    status = main(["compare", str(write(new, "new")), str(write(base, "baseline"))])
    out = capsys.readouterr().out
    assert status == 1
    (line,) = [line for line in out.splitlines() if line.strip().startswith("incomparable")]
    assert "model.latent_dim=8" in line and "0123456789abcdef -> fedcba9876543210" in line
    assert "1 incomparable (another likelihood protocol or test split)" in out
    # A baseline older than the column is compared as before: nothing says its split differs.
    comparison = compare(new, base.drop(columns="test_data"), vocabulary=VOCABULARY)
    assert "incomparable" not in set(comparison.rows["verdict"])


@pytest.mark.parametrize("fail_on", ["both", "quality,speed"])
def test_fail_on_both_means_quality_and_speed(write, fail_on: str) -> None:
    slower = results(changed(train_samples_per_s_8=[1400.0, 1410.0, 1390.0]))
    assert run_compare(write, slower, "--fail-on", fail_on) == 1


# --- real runs --------------------------------------------------------------------------------


def vae_run(tmp_path: Path, name: str, seeds: list[int], hidden: int, lr: float = 2e-3) -> Path:
    """A small VAE on digits, 5 epochs, its ELBO measured; the results folder."""
    suite = build_suite(
        entry("vae", hidden=[hidden], latent_dim=8),
        name=name,
        seeds=seeds,
        epochs=5,
        metrics=["elbo"],
        threads=1,
        train={"lr": lr},
    )
    aebench.run_suite(suite, output=tmp_path / name)
    return tmp_path / name


def test_a_real_run_against_itself_exits_0(tmp_path, capsys) -> None:
    folder = vae_run(tmp_path, "itself", [0, 1, 2], hidden=16)
    assert main(["compare", str(folder), str(folder)]) == 0
    assert (
        "0 regressed (0 quality, 0 speed), 0 improved, 2 unchanged, 0 inconclusive"
        in capsys.readouterr().out
    )


@pytest.mark.slow
def test_a_real_rerun_at_another_rate_is_paired_and_a_resized_layer_is_not(tmp_path) -> None:
    base = vae_run(tmp_path, "base", [0, 1, 2], hidden=16)
    for name, changes, pairs in (("rate", {"lr": 3e-3}, 3), ("half", {"hidden": 8}, 0)):
        new = vae_run(tmp_path, name, [0, 1, 2], **({"hidden": 16} | changes))
        as_base = {"model.hidden": "[16]", "train.lr": 2e-3}  # matched as one configuration
        comparison = compare(
            pd.read_parquet(new / "results.parquet").assign(**as_base),
            pd.read_parquet(base / "results.parquet"),
            vocabulary=VOCABULARY,
        )
        assert len(comparison.rows) and set(comparison.rows["pairs"]) == {pairs}, name


@pytest.mark.slow
def test_a_zoo_subset_with_every_default_metric_against_itself_exits_0(tmp_path, capsys) -> None:
    # Models of several families, each with the metrics its data allows (NaN columns included).
    models = [entry("ae", hidden=[16]), entry("vae", hidden=[16]), entry("wae-mmd", hidden=[16])]
    suite = build_suite(*models, name="zoo-subset", seeds=[0, 1], epochs=1, metrics=None)
    aebench.run_suite(suite, output=tmp_path / "zoo")
    assert main(["compare", str(tmp_path / "zoo"), str(tmp_path / "zoo")]) == 0
    out = capsys.readouterr().out
    assert "0 regressed (0 quality, 0 speed), 0 improved" in out and " 0 inconclusive" in out


@pytest.mark.slow
def test_a_real_regression_is_caught_with_4_seeds_and_inconclusive_with_2(tmp_path) -> None:
    # The VAE's hidden layer halved (64 -> 32 units): its ELBO falls by about 3.6 nats, with a
    # seed spread of about 1 nat.
    verdicts = {}
    for seeds in ([0, 1], [0, 1, 2, 3]):
        name = f"{len(seeds)}"
        base = vae_run(tmp_path, f"base{name}", seeds, hidden=64)
        new = vae_run(tmp_path, f"half{name}", seeds, hidden=32)
        comparison = compare(
            pd.read_parquet(new / "results.parquet").assign(**{"model.hidden": "[64]"}),
            pd.read_parquet(base / "results.parquet"),
            vocabulary=VOCABULARY,
        )
        (verdicts[len(seeds)],) = comparison.rows.loc[
            comparison.rows["metric"] == "elbo", "verdict"
        ]
    assert verdicts == {2: "inconclusive", 4: "regressed"}


def test_seeds_that_stopped_training_are_tested_not_left_out(write, capsys) -> None:
    # 8 seeds a side; in NEW, 6 diverge and the 2 that train score as before. The columns see 2
    # seeds like the baseline's: only the share that trained shows the change, by Fisher's
    # exact test: P(all 6 failures in NEW's 8 of 16 | 6 in all) = C(8, 6) / C(16, 6).
    values = {8: {"recon_mse": [0.02 + 0.001 * s for s in range(8)]}}
    seeds = tuple(range(8))
    baseline = results(values, seeds=seeds)
    new = results(values, seeds=seeds, run="b")
    new.loc[2:, "status"] = "diverged"
    comparison = compare(new, baseline, vocabulary=VOCABULARY)
    rows = comparison.rows.set_index("metric")  # one configuration: labelled by its plugins
    row = rows.loc["status"]
    assert row["verdict"] == "regressed" and row["kind"] == "quality"
    family = 2 * len(comparison.rows)  # worse and better of each row, Benjamini-Hochberg
    raw = math.comb(8, 6) / math.comb(16, 6)
    assert row["p"] == pytest.approx(min(1.0, raw * family))  # the smallest p of the family
    assert row["note"] == "seeds: 6 diverged, 2 ok; baseline 8 ok"
    # Each side's share that trained, with Clopper-Pearson's interval (its beta quantiles).
    assert (row["new"], row["baseline"], row["baseline_high"]) == (0.25, 1.0, 1.0)
    assert row["new_low"] == pytest.approx(scipy.stats.beta.ppf(0.025, 2, 7))
    assert row["new_high"] == pytest.approx(scipy.stats.beta.ppf(0.975, 3, 6))
    assert row["baseline_low"] == pytest.approx(scipy.stats.beta.ppf(0.025, 8, 1))
    assert rows.loc["recon_mse", "verdict"] != "regressed"
    assert run_compare_tables(write, new, baseline) == 1

    # One seed of 3 lost: too few seeds to tell, and said so with the counts.
    new = results(BASELINE, run="b")
    new.loc[0, "status"] = "failed"
    row = row_of(compare(new, results(BASELINE), vocabulary=VOCABULARY), 2, "status")
    assert row["verdict"] == "inconclusive"
    assert row["note"] == "seeds: 1 failed, 2 ok; baseline 3 ok"
    assert run_compare(write, new) == 0  # inconclusive does not fail by default


@pytest.mark.parametrize("broken", [NAN, -math.inf], ids=["metric raised", "collapsed"])
def test_values_that_are_no_number_on_seeds_that_trained_are_tested_not_left_out(
    write, broken: float
) -> None:
    # 8 seeds a side, all trained; in NEW, knn_acc is no number on 6 (its metric raised, or a
    # collapsed seed's value is infinite) and the other 2 score as before. Its own test sees 2
    # seeds like the baseline's: only the share that are numbers shows the change, by Fisher's
    # exact test: P(all 6 in NEW's 8 of 16 | 6 in all) = C(8, 6) / C(16, 6).
    values = {8: {"knn_acc": [0.90 + 0.001 * s for s in range(8)]}}
    seeds = tuple(range(8))
    baseline = results(values, seeds=seeds)
    new = results(values, seeds=seeds, run="b")
    new.loc[2:, "knn_acc"] = broken
    if math.isnan(broken):
        new["metric_errors"] = ["", ""] + ["knn_acc: ValueError: no neighbours"] * 6
    comparison = compare(new, baseline, vocabulary=VOCABULARY)
    rows = comparison.rows.set_index("metric")
    row = rows.loc["knn_acc measured"]
    assert row["verdict"] == "regressed" and row["kind"] == "quality"
    family = 2 * len(comparison.rows)  # worse and better of each row, Benjamini-Hochberg
    raw = math.comb(8, 6) / math.comb(16, 6)
    assert row["p"] == pytest.approx(min(1.0, raw * family))
    assert row["note"] == "a number on 2 of 8 seeds; baseline 8 of 8"
    assert (row["new"], row["baseline"]) == (0.25, 1.0)
    assert row["new_low"] == pytest.approx(scipy.stats.beta.ppf(0.025, 2, 7))
    assert rows.loc["knn_acc", "verdict"] != "regressed" and rows.loc["knn_acc", "n_new"] == 2
    assert run_compare_tables(write, new, baseline) == 1
    if math.isnan(broken):  # what broke is said beside the configuration
        (said,) = comparison.warnings.values()
        assert said == "seeds 2, 3, 4, 5, 6, 7: metric errors: knn_acc: ValueError: no neighbours"

    # The same seeds without a number in both tables: tested, and not a regression.
    baseline.loc[2:, "knn_acc"] = broken
    row = (
        compare(new, baseline, vocabulary=VOCABULARY)
        .rows.set_index("metric")
        .loc["knn_acc measured"]
    )
    assert (
        row["verdict"] == "inconclusive"
        and row["note"] == "a number on 2 of 8 seeds; baseline 2 of 8"
    )
    # Every value a number on both sides: no such row.
    assert "knn_acc measured" not in set(compare(baseline, baseline).rows["metric"])


def run_compare_tables(write, new: pd.DataFrame, baseline: pd.DataFrame) -> int:
    return main(["compare", str(write(new, "new")), str(write(baseline, "baseline"))])


def test_two_seeds_a_side_without_spread_are_inconclusive_not_a_certain_change(capsys) -> None:
    # Two seeds of a coarse column agreeing is no evidence of no spread: not a p of 0.
    base = results({8: {"knn_acc": [0.96, 0.96]}}, seeds=(0, 1))
    new = results({8: {"knn_acc": [0.90, 0.90]}}, seeds=(0, 1), run="b")
    comparison = compare(new, base, vocabulary=VOCABULARY)
    row = comparison.rows.set_index("metric").loc["knn_acc"]
    assert row["verdict"] == "inconclusive"
    print(format_comparison(comparison))
    out = capsys.readouterr().out
    assert "inconclusive" in out and "nan" not in out.lower()


def test_a_side_whose_seeds_are_all_equal_shows_no_interval_and_says_why() -> None:
    base = results({8: {"knn_acc": [0.96] * 3}})
    new = results({8: {"knn_acc": [0.90, 0.91, 0.92]}}, run="b")
    text = format_comparison(compare(new, base, vocabulary=VOCABULARY))
    assert "0.96 (3 seeds, all equal: no interval)" in text
    assert "0.91 [" in text  # NEW's seeds spread: its interval


def test_seeds_trained_stacked_count_once_for_their_speed() -> None:
    # A stack of 4 seeds measures its speed once, each row a copy: one sample a side, not four
    # (run twice, the copies read "improved, p = 0"). Quality stays one value a seed.
    def stacked(speed: float, run: str, group: str) -> pd.DataFrame:
        table = results(
            {8: {"recon_mse": [0.020, 0.021, 0.022, 0.023], "train_samples_per_s": [speed] * 4}},
            seeds=(0, 1, 2, 3),
            run=run,
            start="s",
        )
        return table.assign(stack_group=group)

    comparison = compare(
        stacked(15089.0, "b", "g2"), stacked(13210.0, "a", "g1"), vocabulary=VOCABULARY
    )
    rows = comparison.rows.set_index("metric")
    speed = rows.loc["train_samples_per_s"]
    assert speed["verdict"] == "inconclusive" and speed["n_new"] == speed["n_baseline"] == 1
    assert rows.loc["recon_mse", "n_new"] == 4
    # Trained alone, each seed is its own measurement, as before.
    alone = compare(
        stacked(15089.0, "b", ""),
        stacked(13210.0, "a", ""),
        speed_tolerance=0.1,
        vocabulary=VOCABULARY,
    )
    assert alone.rows.set_index("metric").loc["train_samples_per_s", "n_new"] == 4


def test_a_seed_that_exploded_is_inconclusive_not_a_crash(write, capsys) -> None:
    # before: how many seeds would settle it was searched for past int64 degrees of freedom, and
    # scipy's traceback ended the command with exit status 1, read by CI as "regressed".
    exploded = results(changed(recon_mse_8=[0.050, 0.052, 1e8]))
    assert run_compare(write, exploded) == 0
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if "recon_mse" in ln and "latent_dim=8" in ln]
    assert "inconclusive" in line and "needs more than 1,000,000 seeds a side" in line
    assert seeds_needed(1e8, 1e-3) == MOST_SEEDS + 1


def test_a_speed_columns_share_of_numbers_fails_as_speed_not_quality(write, capsys) -> None:
    # before: its "measured" row was of kind quality, and --fail-on quality (runners whose speed
    # is not trusted) failed on a speed column.
    unmeasured = results(changed(train_samples_per_s_8=[NAN, NAN, 1050.0]))
    assert run_compare(write, unmeasured, "--fail-on", "quality") == 0
    comparison = compare(unmeasured, results(BASELINE), vocabulary=VOCABULARY)
    row = row_of(comparison, 8, "train_samples_per_s measured")
    assert row["kind"] == "speed"
