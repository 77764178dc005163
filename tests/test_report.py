"""Reports: leaderboards over seeds checked against the results table, every figure rendered."""

from __future__ import annotations

import base64
import html
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aebench import Regularizer, hookimpl
from aebench.cli import main
from aebench.figures import TrialFigures
from aebench.plugins import load_plugins
from aebench.report import (
    REPORT_HTML,
    REPORT_MD,
    build_report,
    format_cell,
    leaderboard,
    metric_columns,
)
from aebench.results import read_results
from aebench.runner import run_suite
from aebench.suite import load_suite

SUITE = """
[suite]
name = "reported"
seeds = [0, 1]
device = "cpu"

[train]
epochs = 1
batch_size = 256

[eval]
metrics = ["recon_mse", "elbo"]

[[datasets]]
plugin = "digits"

[[models]]
plugin = "ae"
params = { hidden = [8] }
grid = { latent_dim = [2, 3] }

[[models]]
plugin = "vae"
params = { hidden = [8], latent_dim = 2 }

[[regularizers]]
plugin = "none"

[[regularizers]]
plugin = "picky"
"""


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
    (folder / "suite.toml").write_text(textwrap.dedent(SUITE))
    plugins = load_plugins(extra=[PickyPlugin()])
    suite = load_suite(folder / "suite.toml", plugins)
    run = run_suite(suite, plugins, output=folder / "out", observers=[TrialFigures()])
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
        assert board.mean["recon_mse"].iloc[i] == pytest.approx(np.mean(values))
        assert board.std["recon_mse"].iloc[i] == pytest.approx(np.std(values, ddof=1))


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


def test_report_shows_the_leaderboard_numbers_and_marks_the_best(reported: Path) -> None:
    table = read_results(reported)
    cells = _headline_cells((reported / REPORT_MD).read_text())
    means = {}
    for (model, latent_dim), rows in _configurations(table).items():
        values = rows["recon_mse"].to_numpy(dtype=float)
        label = _label(model, latent_dim)
        cell = cells[label]["recon_mse"]
        assert cell.strip("*") == format_cell(float(np.mean(values)), float(np.std(values, ddof=1)))
        means[label] = np.mean(values)
    best = min(means, key=means.get)  # recon_mse: lower is better
    for label in means:
        assert cells[label]["recon_mse"].startswith("**") == (label == best)


def test_every_metric_is_in_the_detail_table_of_its_group(reported: Path) -> None:
    from aebench.columns import vocabulary_of

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
    assert len(lines) == 1 and "ae / none" in lines[0] and "elbo:" in lines[0]  # seeds share it


def test_values_above_a_declared_flag_are_added_to_the_rows_warnings() -> None:
    from aebench.columns import Column, Vocabulary
    from aebench.report import with_flags

    vocabulary = Vocabulary()
    vocabulary.add([Column("estimate_convergence", flag_above=0.1), Column("other")])
    table = pd.DataFrame(
        {
            "warnings": ["", "dead units", "", ""],
            "estimate_convergence": [0.02, 0.5, 0.3, float("nan")],
            "other": [9.0, 9.0, 9.0, 9.0],
        }
    )
    flagged = with_flags(table, vocabulary)["warnings"].tolist()
    assert flagged == [
        "",
        "dead units; estimate_convergence 0.5 > 0.1",
        "estimate_convergence 0.3 > 0.1",
        "",
    ]
    assert table["warnings"].tolist() == ["", "dead units", "", ""]  # the table is not changed
