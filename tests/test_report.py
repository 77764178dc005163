"""Reports: leaderboards over seeds checked against the results table, every figure rendered."""

from __future__ import annotations

import base64
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
from aebench.report import REPORT_HTML, REPORT_MD, build_report, format_cell, leaderboard
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


def _leaderboard_cells(markdown: str) -> dict[str, dict[str, str]]:
    """The Markdown leaderboard: configuration -> column name -> cell text."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| configuration |"))
    header = [h.strip().rstrip(" ↑↓") for h in lines[start].strip("|").split(" | ")]
    out = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        out[cells[0].removesuffix(" ⚠")] = dict(zip(header, cells, strict=True))
    return out


def test_trials_trained_with_warnings_are_marked_and_listed(reported: Path) -> None:
    table = read_results(reported)
    warned = table[(table["status"] == "ok") & (table["warnings"].fillna("") != "")]
    assert not warned.empty  # one epoch of a VAE on digits: some latent units never wake
    markdown = (reported / REPORT_MD).read_text()
    section = markdown.split("## Warnings", 1)[1]
    for _, row in warned.iterrows():
        assert row["trial_id"] in section and row["warnings"] in section
    marked = [line for line in markdown.splitlines() if " ⚠ |" in line]
    assert {line.split(" / ")[0].strip("| ") for line in marked} == set(warned["model"])


def test_report_shows_the_leaderboard_numbers_and_marks_the_best(reported: Path) -> None:
    table = read_results(reported)
    cells = _leaderboard_cells((reported / REPORT_MD).read_text())
    means = {}
    for (model, latent_dim), rows in _configurations(table).items():
        values = rows["recon_mse"].to_numpy(dtype=float)
        # the one vae configuration needs no latent_dim to be told apart
        label = f"ae / none latent_dim={latent_dim:g}" if model == "ae" else "vae / none"
        cell = cells[label]["recon_mse"]
        assert cell.strip("*") == format_cell(float(np.mean(values)), float(np.std(values, ddof=1)))
        means[label] = np.mean(values)
    best = min(means, key=means.get)  # recon_mse: lower is better
    for label in means:
        assert cells[label]["recon_mse"].startswith("**") == (label == best)


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


def test_every_figure_is_rendered_and_embedded(reported: Path) -> None:
    markdown = (reported / REPORT_MD).read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    # latent grid + rate-distortion + (reconstructions + curves) x 3 configurations x 2 seeds
    # + the vae's samples on each seed: every seed's figures, not the first seed's alone
    assert len(linked) == 2 + 2 * 3 * 2 + 2
    assert "figures/latent_digits.png" in linked
    assert "figures/rate_distortion_digits.png" in linked
    assert sum(link.endswith("prior_samples.png") for link in linked) == 2
    for link in linked:
        assert (reported / link).read_bytes().startswith(b"\x89PNG")
    pngs = _embedded_pngs((reported / REPORT_HTML).read_text())
    assert len(pngs) == len(linked)
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)


def test_a_report_is_rebuilt_from_the_saved_arrays(reported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(reported, copy)
    for png in copy.rglob("*.png"):
        png.unlink()
    (copy / REPORT_HTML).unlink()
    assert main(["report", str(copy)]) == 0
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (copy / REPORT_MD).read_text())
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
