"""Reports: leaderboards over seeds checked against the results table, every figure rendered."""

from __future__ import annotations

import base64
import html
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import as_toml, build_suite, entry
from scipy import stats as scipy_stats

from aebench import Regularizer, hookimpl
from aebench.cli import main
from aebench.contract.columns import Column, Vocabulary
from aebench.observers.trial_figures import TrialFigures
from aebench.plugins.manager import load_plugins
from aebench.results.table import read_results
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite
from aebench.views.blocks import Heading, Paragraph, Table
from aebench.views.cells import format_cell, format_number
from aebench.views.layout import report_blocks, with_notes
from aebench.views.ranking import (
    best_of,
    headline_columns,
    leaderboard,
    median_seed,
    metric_columns,
    note_text,
    ranked,
    ranking_columns,
)
from aebench.views.report import REPORT_HTML, REPORT_MD, build_report

SUITE = build_suite(
    entry("ae", grid={"latent_dim": [2, 3]}, hidden=[8]),
    entry("vae", hidden=[8], latent_dim=2),
    name="reported",
    seeds=[0, 1],
    epochs=1,
    batch_size=256,
    metrics=["recon_mse", "elbo"],
    tracking={"enabled": True},
) | {"regularizers": [entry("none"), entry("picky")]}


class Picky(Regularizer):
    def decline(self, model, info) -> str | None:
        return "picky declines every model"


class PickyPlugin:
    @hookimpl
    def aebench_register_regularizers(self, register) -> None:
        register("picky", Picky)


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three configurations x two seeds trained (ae 2-D, ae 3-D, vae), six trials skipped."""
    folder = tmp_path_factory.mktemp("reported")
    (folder / "suite.toml").write_text(as_toml(SUITE))
    plugins = load_plugins(extra=[PickyPlugin()])
    suite = load_suite(folder / "suite.toml", plugins)
    run = run_trials(suite, plugins, output=folder / "out", observers=[TrialFigures()])
    build_report(run.output)
    return run.output


def _configurations(table: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """ok rows by (model, latent_dim), the only settings that differ in the suite."""
    ok = table[table["status"] == "ok"]
    return {key: rows for key, rows in ok.groupby(["model", "model.latent_dim"])}


def test_leaderboard_is_the_mean_and_std_over_seeds(reported: Path) -> None:
    table = read_results(reported)
    board = leaderboard(table, "digits")
    assert board is not None
    expected = _configurations(table)
    assert len(board.configs) == len(expected) == 3
    for i, config in board.configs.iterrows():
        rows = expected[(config["model"], config["model.latent_dim"])]
        values = rows["recon_mse"].to_numpy(dtype=float)
        assert board.n.iloc[i] == len(values) == 2
        assert board.centre["recon_mse"].iloc[i] == pytest.approx(np.mean(values))


def _headline_cells(markdown: str) -> dict[str, dict[str, str]]:
    """The Markdown headline table: configuration -> column name -> cell text (the label without
    its warning mark and note)."""
    lines = markdown.splitlines()
    start = lines.index("### Headline") + 2
    header = [h.strip().rstrip(" ↑↓") for h in lines[start].strip("|").split(" | ")]
    out = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        out[cells[0].split(" ⚠")[0]] = dict(zip(header, cells, strict=True))
    return out


def _label(model: str, latent_dim: float) -> str:
    """A configuration's label in the suite's report: the one vae needs no latent_dim."""
    return f"ae / none latent_dim={latent_dim:g}" if model == "ae" else "vae / none"


def test_trials_trained_with_warnings_are_marked_beside_their_rows_and_listed(
    reported: Path,
) -> None:
    table = read_results(reported)
    ok = table[table["status"] == "ok"]
    warned = ok[ok["warnings"].fillna("") != ""]
    assert not warned.empty  # one epoch of a VAE on digits: some latent units never wake
    markdown = (reported / REPORT_MD).read_text()
    section = markdown.split("## Warnings", 1)[1]
    for _, row in warned.iterrows():
        assert row["trial_id"] in section and row["warnings"] in section
    # In the headline table each warned configuration has ⚠ and its warnings' text in its row.
    cells = _headline_cells(markdown)
    marked = {label for label, row in cells.items() if "⚠" in row["configuration"]}
    assert marked == {_label(r["model"], r["model.latent_dim"]) for _, r in warned.iterrows()}
    for _, row in warned.iterrows():
        label = _label(row["model"], row["model.latent_dim"])
        for warning in row["warnings"].split("; "):
            assert warning in cells[label]["configuration"]
    # In the HTML, the whole text is the mark's tooltip.
    page = (reported / REPORT_HTML).read_text()
    tips = [html.unescape(t) for t in re.findall(r'<span class="warn" title="([^"]*)">', page)]
    for _, row in warned.iterrows():
        for warning in row["warnings"].split("; "):
            assert any(warning in tip for tip in tips)


def _holm_by_hand(p: list[float]) -> list[float]:
    """Holm's adjusted p-values, step by step: the k-th smallest times (m - k), a running max."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - k) * p[i]))
        out[i] = running
    return out


def _paired_p_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p of "a is lower than b" (the top was picked by its values), a t-test on the
    differences by its formula."""
    d = b - a
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return min(1.0, 2 * float(scipy_stats.t.sf(t, len(d) - 1)))


def test_report_shows_the_leaderboard_numbers_and_bolds_only_a_tested_best(
    reported: Path,
) -> None:
    table = read_results(reported)
    cells = _headline_cells((reported / REPORT_MD).read_text())
    values = {}
    for (model, latent_dim), rows in _configurations(table).items():
        label = _label(model, latent_dim)
        values[label] = rows.sort_values("seed")["recon_mse"].to_numpy(dtype=float)
        # two seeds: the mean, and no interval pretended
        mean = format_number(float(np.mean(values[label])))
        assert cells[label]["recon_mse"].strip("*") == f"{mean} (2 seeds: no interval)"
    top = min(values, key=lambda k: values[k].mean())  # recon_mse: lower is better
    others = [k for k in values if k != top]
    adjusted = _holm_by_hand([_paired_p_by_hand(values[top], values[k]) for k in others])
    best = all(p < 0.05 for p in adjusted)
    for label in values:
        assert cells[label]["recon_mse"].startswith("**") == (best and label == top)


def test_every_metric_is_in_the_detail_table_of_its_group(reported: Path) -> None:
    from aebench.plugins.listing import vocabulary_of

    vocabulary = vocabulary_of(reported)
    markdown = (reported / REPORT_MD).read_text()
    details = markdown.split("### Details by group", 1)[1].split("\n### ", 1)[0]
    tables = {}
    for part in details.split("\n#### ")[1:]:
        name, body = part.split("\n", 1)
        header = next(line for line in body.splitlines() if line.startswith("| configuration"))
        tables[name] = [h.strip().rstrip(" ↑↓") for h in header.strip("|").split(" | ")]
    table = read_results(reported)
    ok = table[table["status"] == "ok"]
    for column in metric_columns(ok, vocabulary):
        group = vocabulary.get(column).group or "other"
        assert column in tables[group], (column, group)
    assert "protocol" in tables["likelihood"]  # likelihoods compare only within one protocol
    assert list(tables)[:2] == [g for g in ("likelihood", "reconstruction") if g in tables]


def test_failed_and_skipped_trials_are_listed_with_reasons(reported: Path) -> None:
    table = read_results(reported)
    skipped = table[table["status"] == "skipped"]
    assert len(skipped) == 6
    markdown = (reported / REPORT_MD).read_text()
    for trial_id in skipped["trial_id"]:
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {trial_id} "))
        assert "skipped" in line and "picky declines every model" in line


def _embedded_pngs(page: str) -> list[bytes]:
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [base64.b64decode(data) for data in found]


def test_each_configuration_shows_its_median_seed_and_links_the_others(reported: Path) -> None:
    markdown = (reported / REPORT_MD).read_text()
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    linked = re.findall(r"(?<!!)\[[^\]]*\]\((trials/[^)]+)\)", markdown)
    assert "figures/latent_digits.png" in shown
    assert "figures/rate_distortion_digits.png" in shown
    # Every trial's figures (but its latent scatter, drawn in the grid) are either shown (the
    # median seed's) or one link away (the other seeds'), and none twice.
    table = read_results(reported)
    ok = table[table["status"] == "ok"]
    on_disk = {
        f"trials/{tid}/{png.name}"
        for tid in ok["trial_id"]
        for png in (reported / "trials" / tid).glob("*.png")
        if png.name != "latent.png"
    }
    per_trial = [link for link in shown if link.startswith("trials/")]
    assert sorted(per_trial + linked) == sorted(on_disk)
    shown_trials = {link.split("/")[1] for link in per_trial}
    assert len(shown_trials) == 3  # one seed per configuration
    for trial_id in shown_trials:
        row = ok[ok["trial_id"] == trial_id].iloc[0]
        assert f"Seed {row['seed']} ({trial_id}): the median" in markdown
    # the vae's traversals and interpolations are shown; a plain autoencoder has none
    vae = ok[ok["model"] == "vae"]["trial_id"]
    for name in ("traversals.png", "interpolations.png", "prior_samples.png"):
        assert {link.split("/")[1] for link in shown + linked if link.endswith(name)} == set(vae)
    for link in shown + linked:
        assert (reported / link).read_bytes().startswith(b"\x89PNG")
    page = (reported / REPORT_HTML).read_text()
    pngs = _embedded_pngs(page)
    assert len(pngs) == len(shown) + len(linked)  # the other seeds' behind a <details>
    assert page.count("<details>") == 3
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)


def test_a_report_is_rebuilt_from_the_saved_arrays(reported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(reported, copy)
    for png in copy.rglob("*.png"):
        png.unlink()
    (copy / REPORT_HTML).unlink()
    assert main(["report", str(copy)]) == 0
    linked = re.findall(r"\[[^\]]*\]\(([^)]+)\)", (copy / REPORT_MD).read_text())
    assert linked and all((copy / link).is_file() for link in linked)
    assert len(_embedded_pngs((copy / REPORT_HTML).read_text())) == len(linked)


def test_report_of_a_folder_without_results_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.parquet" in err


def test_why_metrics_gave_nan_is_listed_once_per_configuration(reported: Path) -> None:
    markdown = (reported / REPORT_MD).read_text()
    section = markdown.split("## Not measured", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if "not a latent-variable model" in line]
    # once per configuration, seeds sharing it, each named as the leaderboards name it (before:
    # "ae / none" alone, two latent sizes in one row)
    assert [line.split(" | ")[1] for line in lines] == [
        "ae / none latent_dim=2",
        "ae / none latent_dim=3",
    ]
    assert all("elbo:" in line for line in lines)


def test_values_above_a_declared_flag_are_estimate_notes_not_warnings() -> None:
    vocabulary = Vocabulary()
    vocabulary.add([Column("estimate_convergence", flag_above=0.1), Column("other")])
    table = pd.DataFrame(
        {
            "warnings": ["", "dead units", "", ""],
            "notes": ["", "", "estimate_convergence 0.3 > 0.1", "ess low"],
            "estimate_convergence": [0.02, 0.5, 0.3, float("nan")],
            "other": [9.0, 9.0, 9.0, 9.0],
        }
    )
    noted = with_notes(table, vocabulary)
    assert noted["notes"].tolist() == [
        "",
        "estimate_convergence 0.5 > 0.1",
        "estimate_convergence 0.3 > 0.1",  # the run's own note, not written twice
        "ess low",
    ]
    assert noted["warnings"].tolist() == ["", "dead units", "", ""]  # warnings stay training's
    assert "estimate_convergence" not in table["notes"].iloc[1]  # the table is not changed
    # A table from before runs wrote notes gets them from the declarations alone.
    older = with_notes(table.drop(columns="notes"), vocabulary)
    assert older["notes"].tolist()[:3] == ["", "estimate_convergence 0.5 > 0.1"] + [
        "estimate_convergence 0.3 > 0.1"
    ]


# --- the rules, on synthetic tables -------------------------------------------------------------


def _vocabulary() -> Vocabulary:
    """A made-up vocabulary: nothing the report does may depend on the built-in metric names."""
    vocabulary = Vocabulary(columns={})
    vocabulary.add(
        [
            Column("zing", "lower", group="zest", headline=True),  # no place declared
            Column("zing_spread", group="zest"),
            Column("fit", "higher", group="fits", group_order=1, per_protocol=True, headline=True),
            Column("fit_bound", "higher", group="fits", per_protocol=True),
            Column("sharp", "higher", group="sharpness", group_order=2, headline=True),
            Column("hurry", "higher", noisy=True, group="hurry", group_order=6, headline=True),
            Column("count", group="counts", group_order=3, headline=True),  # no direction
            Column("plain"),  # no group: "other"
        ]
    )
    return vocabulary


def _table(rows: list[dict]) -> pd.DataFrame:
    """Trial rows of one dataset: ``config`` names the model, every other key is a column."""
    out = []
    for i, given in enumerate(rows):
        row = dict(given)
        base = {"dataset": "d", "regularizer": "none", "status": "ok", "trial_id": f"t{i}"}
        base |= {"model": row.pop("config"), "seed": row.pop("seed", 0), "warnings": ""}
        out.append(base | row)
    return pd.DataFrame(out)


JITTER = (-0.01, 0.0, 0.01)  # three seeds: each configuration's offsets, scaled by its place


def _seeds(rows: list[dict]) -> list[dict]:
    """Each row as three seeds, its numbers moved by ``JITTER`` times (1 + its place): a spread
    far below the differences between the rows, so that a test over seeds decides them."""
    return [
        {k: v + jitter * (1 + place) if isinstance(v, float) else v for k, v in row.items()}
        | {"seed": seed}
        for place, row in enumerate(rows)
        for seed, jitter in enumerate(JITTER)
    ]


def _board(rows: list[dict], vocabulary: Vocabulary):
    board = leaderboard(_table(rows), "d", vocabulary)
    assert board is not None
    return board


def _models(board, positions: list[int]) -> list[str]:
    return [board.configs["model"].iloc[i] for i in positions]


def test_headlines_come_from_the_declarations_in_group_order() -> None:
    vocabulary = _vocabulary()
    board = _board(
        [
            {"config": "a", "zing": 1.0, "fit": -3.0, "sharp": 0.5, "hurry": 9.0, "count": 2.0},
            {"config": "b", "zing": 2.0, "fit": -2.0, "sharp": 0.4, "hurry": 8.0, "count": 3.0},
        ],
        vocabulary,
    )
    # the groups by their declared places (fits, sharpness, counts, hurry), then zest
    assert headline_columns(board, vocabulary) == ["fit", "sharp", "count", "hurry", "zing"]
    # ranked by those with a direction that are not noisy: count has none, hurry is noisy
    assert ranking_columns(board, vocabulary) == ["fit", "sharp", "zing"]
    assert _models(board, ranked(board, vocabulary)) == ["b", "a"]  # fit: higher is better


def test_a_headline_without_values_is_left_out() -> None:
    vocabulary = _vocabulary()
    board = _board(
        [{"config": "a", "zing": 1.0, "fit": math.nan}, {"config": "b", "zing": 2.0}], vocabulary
    )
    assert headline_columns(board, vocabulary) == ["zing"]
    assert _models(board, ranked(board, vocabulary)) == ["a", "b"]  # zing: lower is better


def test_configurations_without_the_ranking_value_go_last_ordered_by_the_next() -> None:
    vocabulary = _vocabulary()
    board = _board(
        [
            {"config": "a", "fit": math.nan, "sharp": 0.1},
            {"config": "b", "fit": -5.0, "sharp": 0.2},
            {"config": "c", "fit": math.nan, "sharp": 0.9},
            {"config": "d", "fit": -1.0, "sharp": 0.0},
            {"config": "e", "fit": math.nan, "sharp": math.nan},
        ],
        vocabulary,
    )
    assert ranking_columns(board, vocabulary)[0] == "fit"
    assert _models(board, ranked(board, vocabulary)) == ["d", "b", "c", "a", "e"]


def test_likelihoods_of_different_protocols_neither_rank_nor_compare() -> None:
    vocabulary = _vocabulary()
    rows = [
        {"config": "a", "fit": -1.0, "fit_bound": -2.0, "sharp": 0.1, "likelihood": "bernoulli"},
        {"config": "b", "fit": -9.0, "fit_bound": -8.0, "sharp": 0.3, "likelihood": "bernoulli"},
        {"config": "c", "fit": -5.0, "fit_bound": -5.0, "sharp": 0.2, "likelihood": "gaussian"},
        {"config": "d", "fit": -7.0, "fit_bound": -7.0, "sharp": 0.0, "likelihood": "gaussian"},
    ]
    for row in rows:
        row["binarize"] = "none"
    board = _board(_seeds(rows), vocabulary)
    assert board.protocol == ["bernoulli, binarize=none"] * 2 + ["gaussian, binarize=none"] * 2
    # no one order across protocols: ranked by the next headline
    assert ranking_columns(board, vocabulary)[0] == "sharp"
    assert _models(board, ranked(board, vocabulary)) == ["b", "c", "a", "d"]
    # the best within each protocol
    assert _models(board, best_of(board, "fit", vocabulary)) == ["a", "c"]
    assert _models(board, best_of(board, "fit_bound", vocabulary)) == ["a", "c"]
    # a binarization is a protocol of its own: a and b are now alone in theirs, nobody's best
    rows[0]["binarize"] = "static"
    board = _board(_seeds(rows), vocabulary)
    assert _models(board, best_of(board, "fit", vocabulary)) == ["c"]
    assert _models(board, best_of(board, "sharp", vocabulary)) == ["b"]  # not a likelihood


def test_configurations_measured_on_different_test_splits_are_not_compared(tmp_path) -> None:
    # before: a suite of digits grey and binarized ranked the two by recon_mse and called one
    # best, though each was scored against its own targets (0/1 pixels against grey levels).
    vocabulary = _vocabulary()
    rows = [
        {"config": "a", "sharp": 0.1, "zing": 1.0, "test_data": "grey"},
        {"config": "b", "sharp": 0.3, "zing": 3.0, "test_data": "grey"},
        {"config": "c", "sharp": 0.2, "zing": 2.0, "test_data": "binary"},
        {"config": "d", "sharp": 0.0, "zing": 4.0, "test_data": "binary"},
    ]
    board = _board(_seeds(rows), vocabulary)
    assert _models(board, best_of(board, "sharp", vocabulary)) == ["b", "c"]  # one per split
    assert _models(board, best_of(board, "zing", vocabulary)) == ["a", "c"]
    assert ranking_columns(board, vocabulary) == []  # no one order across two test splits
    text = "\n".join(
        b.text
        for b in report_blocks(tmp_path, _table(_seeds(rows)), vocabulary)
        if isinstance(b, Paragraph)
    )
    assert "Not ranked: the configurations were measured on 2 different test splits" in text
    # A table older than the column, or a row of it, is of the one split the table records.
    for row in rows:
        row["test_data"] = "grey" if row["config"] == "a" else ""
    board = _board(_seeds(rows), vocabulary)
    assert _models(board, best_of(board, "sharp", vocabulary)) == ["b"]
    assert {"sharp", "zing"} <= set(ranking_columns(board, vocabulary))


PROTOCOLS = [  # two likelihood protocols, two configurations each
    {"config": "a", "fit": -1.0, "sharp": 0.1, "likelihood": "bernoulli", "binarize": "none"},
    {"config": "b", "fit": -9.0, "sharp": 0.3, "likelihood": "bernoulli", "binarize": "none"},
    {"config": "c", "fit": -5.0, "sharp": 0.2, "likelihood": "gaussian", "binarize": "none"},
    {"config": "d", "fit": -7.0, "sharp": 0.0, "likelihood": "gaussian", "binarize": "none"},
]


def _detail_tables(folder: Path, rows: list[dict], vocabulary: Vocabulary) -> dict[str, Table]:
    """The report's detail tables of ``rows``, by group, in the report's order."""
    blocks = report_blocks(folder, _table(rows), vocabulary)
    start = next(i for i, b in enumerate(blocks) if b == Heading(3, "Details by group"))
    tables = {}
    for heading, table in zip(blocks[start + 1 :: 2], blocks[start + 2 :: 2], strict=False):
        if not (isinstance(heading, Heading) and heading.level == 4):
            break
        tables[heading.text] = table
    return tables


def test_a_group_of_its_own_declared_per_protocol_is_compared_within_each_protocol(
    tmp_path: Path,
) -> None:
    vocabulary = Vocabulary(columns={})
    vocabulary.add(
        [
            Column("fit", "higher", group="my_fits", per_protocol=True, headline=True),
            Column("sharp", "higher", group="my_sharpness", headline=True),
        ]
    )
    board = _board(_seeds(PROTOCOLS), vocabulary)
    assert _models(board, best_of(board, "fit", vocabulary)) == ["a", "c"]  # per protocol
    assert ranking_columns(board, vocabulary) == ["sharp"]  # no one order across protocols
    tables = _detail_tables(tmp_path, PROTOCOLS, vocabulary)
    assert "protocol" in tables["my_fits"].header
    assert "protocol" not in tables["my_sharpness"].header


def test_a_group_is_compared_across_protocols_unless_it_declares_otherwise_whatever_its_name(
    tmp_path: Path,
) -> None:
    vocabulary = Vocabulary(columns={})
    vocabulary.add([Column("fit", "higher", group="likelihood", headline=True)])
    board = _board(_seeds(PROTOCOLS), vocabulary)
    assert _models(board, best_of(board, "fit", vocabulary)) == ["a"]  # one best of all four
    assert ranking_columns(board, vocabulary) == ["fit"]
    assert "protocol" not in _detail_tables(tmp_path, PROTOCOLS, vocabulary)["likelihood"].header


def test_groups_come_in_the_order_they_declare_then_as_first_seen_then_other(
    tmp_path: Path,
) -> None:
    def order(places: dict[str, int | None]) -> list[str]:
        vocabulary = Vocabulary(columns={})
        vocabulary.add(
            [Column(f"{g}_value", "higher", group=g, group_order=n) for g, n in places.items()]
            + [Column("late_second", group="late", group_order=1), Column("plain")]
        )
        row = {f"{g}_value": 1.0 for g in places} | {"late_second": 1.0, "plain": 1.0}
        tables = _detail_tables(tmp_path, [{"config": "a", **row}], vocabulary)
        return list(tables)

    # "late" declares no place on its first column but 1 on its second: the smallest counts
    assert order({"zest": None, "fits": 20, "late": None, "sharpness": 10, "counts": None}) == [
        "late",
        "sharpness",
        "fits",
        "zest",
        "counts",
        "other",
    ]
    assert order({"zest": 5, "fits": 20, "late": None, "sharpness": 30, "counts": None})[:4] == [
        "late",
        "zest",
        "fits",
        "sharpness",
    ]


def test_best_only_on_columns_with_a_direction_that_are_not_noisy() -> None:
    vocabulary = _vocabulary()
    rows = [
        {"config": "a", "zing": 1.0, "hurry": 1.0, "count": 1.0, "plain": 1.0},
        {"config": "b", "zing": 2.0, "hurry": 2.0, "count": 2.0, "plain": 2.0},
    ]
    board = _board(_seeds(rows), vocabulary)
    assert board.best == {"zing": [0]}  # lower is better; hurry noisy; count, plain: no direction
    one = _board(_seeds([{"config": "a", "zing": 1.0}]), vocabulary)
    assert one.best == {}  # nothing to be better than
    single = _board(rows, vocabulary)  # one seed each: no test can tell them apart
    assert single.best == {} and not single.verdicts["zing"][0].best


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (19790.0, 4, "19790"),  # an integer as an integer, not 1.979e+04
        (-0.0, 4, "0"),
        (6182.3, 4, "6182"),  # four significant digits
        (7071.07, 2, "7100"),  # a spread to two, written out, not 7.1e+03
        (108712.3, 4, "108700"),
        (0.012345, 4, "0.01235"),
        (-0.00723, 4, "-0.00723"),  # trailing zeros dropped
        (0.0004, 2, "0.0004"),
        (3.2e-05, 4, "3.200e-05"),  # beyond ordinary magnitudes: scientific
        (2.5e7 + 0.5, 4, "2.500e+07"),
        (math.nan, 4, "–"),
        (math.inf, 4, "–"),
    ],
)
def test_numbers_are_formatted_for_reading(value: float, digits: int, text: str) -> None:
    assert format_number(value, digits) == text


@pytest.mark.parametrize(
    ("mean", "std", "text"),
    [
        (19790.0, 0.0, "19790"),  # no "± 0" for a spread of exactly 0
        (6182.3, 7071.07, "6182 ± 7100"),
        (0.0123, 0.0004, "0.0123 ± 0.0004"),
        (5.0, 1.414, "5 ± 1.4"),
        (0.8273, math.nan, "0.8273"),  # one seed: no spread
        (0.5, 1.2e-06, "0.5 ± 1.2e-06"),
        (math.nan, 1.0, "–"),
    ],
)
def test_cells_are_mean_and_spread_formatted_for_reading(
    mean: float, std: float, text: str
) -> None:
    assert format_cell(mean, std) == text


def test_the_median_seed_by_the_first_ranking_column_the_trials_have() -> None:
    vocabulary = _vocabulary()
    three = pd.DataFrame(
        {"seed": [0, 1, 2], "fit": [-3.0, -1.0, -2.0], "trial_id": ["x", "y", "z"]}
    )
    trial, column = median_seed(three, ["fit", "sharp"], vocabulary)
    assert (trial["seed"], column) == (2, "fit")
    # of two, the worse: lower is better for zing
    two = pd.DataFrame({"seed": [0, 1], "zing": [5.0, 4.0], "trial_id": ["x", "y"]})
    assert median_seed(two, ["zing"], vocabulary)[0]["seed"] == 0
    two["zing"] = [4.0, 5.0]
    assert median_seed(two, ["zing"], vocabulary)[0]["seed"] == 1
    # seeds without a value are not counted; without the first column, the next decides
    gaps = pd.DataFrame(
        {
            "seed": [0, 1, 2],
            "fit": [math.nan] * 3,
            "sharp": [0.9, math.nan, 0.1],
            "trial_id": list("xyz"),
        }
    )
    trial, column = median_seed(gaps, ["fit", "sharp"], vocabulary)
    assert (trial["seed"], column) == (2, "sharp")  # of 0.9 and 0.1 (higher better): the worse
    trial, column = median_seed(gaps, ["fit"], vocabulary)
    assert (trial["seed"], column) == (0, "")  # nothing to go by: the first seed


def test_a_configurations_warnings_name_their_seeds_unless_all_have_them() -> None:
    trials = pd.DataFrame({"seed": [0, 1, 2], "warnings": ["dead units; slow", "dead units", None]})
    assert note_text(trials) == "dead units (seed 0, 1); slow (seed 0)"
    trials["warnings"] = ["dead units"] * 3
    assert note_text(trials) == "dead units"


def test_loss_curves_show_validation_and_never_hide_one_under_another() -> None:
    from aebench.observers.trial_figures import loss_lines

    same = [3.0, 2.0, 1.0]
    lines = loss_lines(
        {
            "curve_loss": same,
            "curve_model_loss": same,
            "curve_penalty": [0.0] * 3,
            "curve_val_loss": [3.5, 2.5, 2.0],
            "curve_lr": [1e-3] * 3,
        }
    )
    labels = [label for label, _, _ in lines]
    assert labels == ["loss = model_loss (train)", "val_loss (validation)"]
    lines = loss_lines(
        {"curve_loss": [3.0, 2.0], "curve_model_loss": [2.5, 1.5], "curve_penalty": [0.5, 0.5]}
    )
    styles = [(s["linestyle"], s["marker"]) for _, _, s in lines]
    assert len(lines) == 3 and len(set(styles)) == 3  # each its own line style and marker


def test_traversals_and_interpolations_are_captured_for_latent_variable_models_only() -> None:
    import torch

    from aebench.observers.trial_figures import N_PAIRS, TRAVERSAL_SIGMAS, capture
    from aebench.testing import _LinearAutoencoder, _metric_data, _TinyGaussianVAE

    data = _metric_data(labelled=True)
    torch.manual_seed(0)
    vae = _TinyGaussianVAE(data.info, latent_dim=2).eval()
    arrays = capture(vae, data, {}, seed=0)
    steps = len(TRAVERSAL_SIGMAS)
    assert arrays["traversal"].shape == (2, steps, *data.info.shape)
    # row r moves dimension traversal_dims[r] of the prior mean (0) by sigma * its std (1)
    for row, dim in enumerate(arrays["traversal_dims"]):
        for step, sigma in enumerate(TRAVERSAL_SIGMAS):
            z = torch.zeros(1, 2)
            z[0, dim] = float(sigma)
            expected = vae.decode(z)[0].detach().numpy()
            np.testing.assert_allclose(arrays["traversal"][row, step], expected, rtol=1e-5)
    inter = arrays["interpolation"]
    assert inter.shape[0] == N_PAIRS and inter.shape[2:] == data.info.shape
    x, y = data.test.x, data.test.y.numpy()
    firsts = [
        int(np.flatnonzero((x.numpy() == frame).all(axis=(1, 2, 3)))[0]) for frame in inter[:, 0]
    ]
    lasts = [
        int(np.flatnonzero((x.numpy() == frame).all(axis=(1, 2, 3)))[0]) for frame in inter[:, -1]
    ]
    assert all(y[a] != y[b] for a, b in zip(firsts, lasts, strict=True))  # different classes
    with torch.no_grad():  # between the inputs: the decodes from code(a) to code(b)
        for pair, (a, b) in enumerate(zip(firsts, lasts, strict=True)):
            za, zb = vae.encode(x[a : a + 1]), vae.encode(x[b : b + 1])
            np.testing.assert_allclose(inter[pair, 1], vae.decode(za)[0].numpy(), rtol=1e-5)
            np.testing.assert_allclose(inter[pair, -2], vae.decode(zb)[0].numpy(), rtol=1e-5)
            middle = vae.decode((za + zb) / 2)[0].numpy()
            np.testing.assert_allclose(inter[pair, 1 + inter.shape[1] // 2 - 1], middle, rtol=1e-5)

    plain = capture(_LinearAutoencoder(data.info).eval(), data, {}, seed=0)
    assert "inputs" in plain and "traversal" not in plain and "interpolation" not in plain


def test_traversals_and_interpolations_are_drawn_for_images(tmp_path: Path) -> None:
    from aebench.observers.trial_figures import (
        ARRAYS,
        INTERPOLATION_PNG,
        TRAVERSAL_PNG,
        capture,
        render_trial,
    )
    from aebench.testing import _metric_data, _TinyGaussianVAE

    data = _metric_data(labelled=False)
    np.savez(tmp_path / ARRAYS, **capture(_TinyGaussianVAE(data.info).eval(), data, {}, seed=0))
    written = {path.name for path in render_trial(tmp_path, "a title")}
    assert {TRAVERSAL_PNG, INTERPOLATION_PNG} <= written
    assert (tmp_path / TRAVERSAL_PNG).read_bytes().startswith(b"\x89PNG")


def test_a_run_stopped_before_any_trial_finished_reports_nothing_and_no_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aebench.run.observing import SuiteRun
    from aebench.views.report import ReportBuilder

    builder = ReportBuilder()
    builder.suite_finished(SuiteRun(output=tmp_path, rows=[], interrupted=True))
    assert capsys.readouterr().err == ""
    assert builder.paths is None and list(tmp_path.iterdir()) == []
    builder.suite_finished(SuiteRun(output=tmp_path, rows=[]))  # not interrupted: says why
    assert "no results.parquet here" in capsys.readouterr().err
