"""The lines a run ends with (the best configuration per dataset, the references' standing) are
kept beside the results they came from: a rerun with nothing to do prints them again without
repeating the tests (nor importing scipy for them), and any change to the results computes them
anew."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from aebench.contract.columns import COLUMNS_FILE
from aebench.results.table import PARQUET
from aebench.views import verdict_words
from aebench.views.standing import MEMO, standing


@pytest.fixture
def ranked(monkeypatch) -> list[int]:
    """How often the best configurations were computed (still computed)."""
    calls: list[int] = []
    real = verdict_words.best_configurations

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(verdict_words, "best_configurations", counted)
    return calls


@pytest.fixture(scope="module")
def ran_once(tmp_path_factory) -> tuple[Path, str]:
    """The tiny suite run once for this module: its results folder, and what the run printed."""
    from conftest import TINY_SUITE

    from aebench.cli import main

    root = tmp_path_factory.mktemp("standing")
    suite = root / "tiny.toml"
    suite.write_text(TINY_SUITE)
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()) as out:
        patch.chdir(root)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main(["run", str(suite), "--output", str(root / "out")]) == 0
    return root, out.getvalue()


@pytest.fixture
def finished(ran_once, tmp_path, monkeypatch) -> tuple[Path, str]:
    """A copy of that results folder (``out``, beside its suite ``tiny.toml``) for one test."""
    root, printed = ran_once
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "out", printed


def _best_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("top on ")]


def test_a_rerun_with_nothing_to_do_prints_the_kept_lines_without_ranking_again(
    aebench, finished, ranked
) -> None:
    output, first = finished
    tiny_suite = output.parent / "tiny.toml"
    assert _best_lines(first)  # the run printed its best configuration
    again = aebench("run", str(tiny_suite), "--output", str(output))
    assert again.returncode == 0, again.stderr
    assert "nothing left to run" in again.stdout
    assert _best_lines(again.stdout) == _best_lines(first)
    assert ranked == []


def test_changed_results_are_ranked_anew(finished, ranked) -> None:
    output, first = finished
    kept = standing(output)
    assert ranked == [] and [f"top on {d}: {b}" for d, b in kept.best.items()] == _best_lines(first)

    table = pd.read_parquet(output / PARQUET)
    table["recon_mse"] = table["recon_mse"] * 10  # a different result: a different standing
    table.to_parquet(output / PARQUET)
    changed = standing(output)
    assert ranked == [1]
    assert standing(output) == changed and ranked == [1]  # kept again


@pytest.mark.parametrize("torn", ["", "{", '{"key": 1}', '{"key": "x", "best": 3}', "[]"])
def test_a_torn_or_foreign_memo_is_computed_again(finished, ranked, torn) -> None:
    output, _ = finished
    expected = standing(output)
    (output / MEMO).write_text(torn)
    assert standing(output) == expected
    assert ranked == [1]
    assert json.loads((output / MEMO).read_text())["best"] == expected.best  # and kept anew


def test_a_folder_without_its_vocabulary_is_never_kept(finished, ranked) -> None:
    # its columns would be ranked by what the installed plugins declare: not in the key
    output, _ = finished
    (output / COLUMNS_FILE).unlink()
    (output / MEMO).unlink()
    standing(output)
    standing(output)
    assert ranked == [1, 1]
    assert not (output / MEMO).exists()


@pytest.mark.slow  # a fresh interpreter: 8 s
def test_the_rerun_imports_no_scipy(finished) -> None:
    output, first = finished
    tiny_suite = output.parent / "tiny.toml"
    script = (
        "import sys; from aebench.cli import main;"
        f" status = main(['run', {str(tiny_suite)!r}, '--output', {str(output)!r}]);"
        " print('scipy loaded:', 'scipy.stats' in sys.modules); sys.exit(status)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "scipy loaded: False" in done.stdout
    assert _best_lines(done.stdout) == _best_lines(first)
