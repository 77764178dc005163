"""A search on an executor that runs trials side by side (a real local Dask cluster): every
configuration's search trials run in rounds, sharing the studies' storage in the submitting
process, each configuration with its whole budget, and the workers never read the test split."""

from __future__ import annotations

from pathlib import Path

import aebench_search_probe as probe
import pytest
from builders import build_suite, entry
from fake_plugins import fake_distribution
from repo import SUPPORT

from aebench.plugins.manager import load_plugins
from aebench.run.executors import LocalExecutor
from aebench.run.search_rounds import check_executor, runs_side_by_side
from aebench.run.suite import SuiteError, load_suite
from aebench.session import Session

pytest.importorskip("distributed")


def searched(**search: object) -> dict:
    models = [
        entry("bowl", latent_dim=latent) | {"search": {"knob": {"low": 0, "high": 6}}}
        for latent in (1, 2)
    ]
    suite = build_suite(*models, datasets=[entry("watched")], epochs=2, seeds=[0])
    return suite | {"search": {"trials": 3, "sampler": "random", "seed": 1} | search}


def test_a_pruner_needs_the_local_executor() -> None:
    plugins = load_plugins(extra=[probe])
    suite = load_suite(searched(pruner="median"), plugins)

    class Elsewhere:  # any executor but the local one runs trials out of this process
        def run(self, work, started):
            yield from ()

    assert runs_side_by_side(Elsewhere()) and not runs_side_by_side(LocalExecutor())
    check_executor(suite, LocalExecutor())  # no error
    with pytest.raises(SuiteError, match=r"search\.pruner: needs the local executor"):
        check_executor(suite, Elsewhere())


@pytest.mark.slow
def test_every_configuration_is_searched_on_the_cluster_in_rounds(tmp_path, monkeypatch) -> None:
    from aebench.run.executors import DaskExecutor

    site = fake_distribution(tmp_path / "site", SUPPORT / "aebench_search_probe.py")
    reads = tmp_path / "reads.txt"
    # The workers (spawned: they start with this process's sys.path) find the probe installed.
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(probe.READS_LOG, str(reads))
    plugins = load_plugins()
    assert "watched" in plugins.datasets
    output = tmp_path / "out"

    session = Session.open(
        searched(), plugins=plugins, output=output, executor=DaskExecutor(workers=2)
    )
    session.load_data()
    reads.unlink(missing_ok=True)  # loading and checking the data here reads every split
    searching = []

    class Watch:  # what the search trials (run before the leaderboard) left behind
        def suite_started(self, suite, output_folder, trials):
            searching.append(reads.read_text() if reads.exists() else "")

        def trial_started(self, trial): ...
        def trial_finished(self, trial, row, outcome): ...
        def suite_finished(self, run): ...

    run = session.run(observers=[Watch()])

    import optuna

    from aebench.run.search import counted, storage_url

    storage = storage_url(output)
    summaries = optuna.get_all_study_summaries(storage)
    budgets = [
        len(counted(optuna.load_study(study_name=s.study_name, storage=storage))) for s in summaries
    ]
    assert budgets == [3, 3]
    search_rows = Path(output / "search" / "results.parquet")
    assert search_rows.is_file()
    # No process read the test split while searching, but to check the data as it was built.
    [read] = searching
    readers = {line.split()[2] for line in read.splitlines()}
    assert readers <= {"aebench.contract.data_checks"}, readers
    assert [row["status"] for row in run.rows] == ["ok", "ok"]
    assert {row["search_trials"] for row in run.rows} == {3}
