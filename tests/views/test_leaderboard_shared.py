"""Each leaderboard (a table's dataset, under one vocabulary and confidence) is computed once and
shared by all that shows it: the report's dataset blocks and its ranks across datasets, and the
best configurations a run prints after its report (issue 31: the same verdicts were tested three
and four times over). Sharing changes no verdict: a table that differs is ranked anew."""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from score_tables import score_table

from aebench.contract.columns import Column, Vocabulary
from aebench.views import ranking
from aebench.views.blocks import Heading
from aebench.views.layout import report_blocks
from aebench.views.ranking import SharedLeaderboards, leaderboard
from aebench.views.ranking_stats import aligned
from aebench.views.verdict_words import best_configurations

SCORES = {  # dataset -> model -> its score on seeds 0, 1, 2 (higher is better)
    "d1": {"a": [3.0, 3.1, 2.9], "b": [2.0, 2.2, 1.9], "c": [1.0, 1.1, 0.8]},
    "d2": {"a": [2.0, 2.1, 2.2], "b": [3.0, 3.3, 3.1], "c": [1.0, 0.9, 1.2]},
}


def _vocabulary() -> Vocabulary:
    vocabulary = Vocabulary(columns={})
    vocabulary.add([Column("score", "higher", group="g", headline=True)])
    return vocabulary


def _table() -> pd.DataFrame:
    return pd.concat(
        [
            score_table({model: dict(enumerate(v)) for model, v in models.items()}, dataset)
            for dataset, models in SCORES.items()
        ],
        ignore_index=True,
    )


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each dataset's leaderboard was computed: its metric columns are chosen once per
    computation, on the dataset's ``ok`` trials."""
    counts: Counter[str] = Counter()
    real = ranking.metric_columns

    def counted(table: pd.DataFrame, vocabulary: Vocabulary) -> list[str]:
        counts.update(set(table["dataset"]))
        return real(table, vocabulary)

    monkeypatch.setattr(ranking, "metric_columns", counted)
    return counts


@pytest.fixture
def labelled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each configuration label worked out (``results.rows.label`` as the leaderboard calls it)."""
    calls: list[str] = []
    real = ranking.label

    def counted(row: pd.Series, *args: object, **kwargs: object) -> str:
        calls.append(f"{row['model']}")
        return real(row, *args, **kwargs)

    monkeypatch.setattr(ranking, "label", counted)
    return calls


def test_a_report_computes_each_datasets_leaderboard_once(
    tmp_path: Path, computed: Counter[str], labelled: list[str]
) -> None:
    blocks = report_blocks(tmp_path, _table(), _vocabulary())

    assert Heading(2, "Ranks across datasets") in blocks  # shown too
    assert computed == {"d1": 1, "d2": 1}  # the dataset blocks' and the ranks across datasets'
    assert sorted(labelled) == ["a", "a", "b", "b", "c", "c"]  # once per configuration each


def test_a_runs_summary_reuses_its_reports_leaderboards(
    tmp_path: Path, computed: Counter[str]
) -> None:
    shared = SharedLeaderboards()
    with shared.shared():
        report_blocks(tmp_path, _table(), _vocabulary())
    reported = dict(computed)
    with shared.shared():  # the same results, read again, and their vocabulary read again
        best = best_configurations(_table(), _vocabulary())

    assert computed == reported == {"d1": 1, "d2": 1}
    assert best == best_configurations(_table(), _vocabulary())  # as computed alone
    assert computed == {"d1": 2, "d2": 2}  # outside the scope nothing is kept


def test_a_table_that_differs_is_ranked_anew_and_keeps_its_own_verdicts(
    computed: Counter[str],
) -> None:
    table, vocabulary = _table(), _vocabulary()
    changed = table.copy()
    changed.loc[(changed["dataset"] == "d1") & (changed["model"] == "c"), "score"] = 9.0
    with SharedLeaderboards().shared():
        first = leaderboard(table, "d1", vocabulary)
        table.loc[table["model"] == "a", "score"] = 0.0  # changed in place after it was ranked
        other = leaderboard(changed, "d1", vocabulary)
        again = leaderboard(_table(), "d1", vocabulary)
        looser = leaderboard(_table(), "d1", vocabulary, confidence=0.5)

    assert first is not None and other is not None and looser is not None
    assert again is first  # equal to the table as it was ranked: shared
    assert first.verdicts["score"][0].top == 0 and other.verdicts["score"][0].top == 2
    assert looser is not first and looser.confidence == 0.5
    assert computed == {"d1": 3}


def test_the_summary_lines_of_a_run_rank_its_results_once(
    aebench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, computed: Counter[str]
) -> None:
    from conftest import TINY_SUITE

    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE + "\n[observers.mlflow]\nenabled = false\n")
    with contextlib.redirect_stderr(io.StringIO()):
        done = aebench("run", str(suite), "--output", str(tmp_path / "out"))

    assert done.returncode == 0, done.stderr
    assert "top on digits: " in done.stdout and (tmp_path / "out" / "report.html").is_file()
    assert computed == {"digits": 1}  # the report's, the ranks across and the summary's


def test_samples_pair_by_seed_whatever_order_the_trials_come_in() -> None:
    a = pd.Series([3.0, 1.0, 2.0], index=[2, 0, 1])
    b = pd.Series([10.0, 30.0, float("nan"), 20.0], index=[0, 2, 5, 1])
    x, y, paired = aligned(a, b)
    assert paired and x.tolist() == [1.0, 2.0, 3.0] and y.tolist() == [10.0, 20.0, 30.0]
    x, y, paired = aligned(a, b.drop(2))  # a seed missing: not paired, as measured
    assert not paired and x.tolist() == [3.0, 1.0, 2.0] and y.tolist() == [10.0, 20.0]
