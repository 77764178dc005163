"""MLflow tracking: an experiment per results folder, a run per trial, one per invocation."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow_runs import listed, search_runs
from scipy import stats
from timing import scaled
from torch import nn

from aebench import DataInfo, hookimpl
from aebench.contract.columns import Column, Vocabulary
from aebench.observers.tracking import MlflowTracker
from aebench.observers.tracking_runs import (
    AGGREGATE_PREFIX,
    CURVE_PREFIX,
    EXPERIMENT_KIND,
    HEADLINE_PREFIX,
    aggregate_metrics,
    experiment_name,
    git_commit,
)
from aebench.observers.tracking_store import TrackingError, sqlite_uri, tracking_uri
from aebench.observers.trial_figures import TrialFigures
from aebench.plugins.listing import vocabulary_of
from aebench.plugins.manager import load_plugins
from aebench.results.table import read_results
from aebench.run.loop import run_trials
from aebench.run.suite import TrackingSection, load_suite

EPOCHS = 2
SUITE = """
[suite]
name = "tracked"
seeds = [0]
device = "cpu"

[train]
epochs = {epochs}
batch_size = 256

[eval]
metrics = ["recon_mse"]

[[datasets]]
plugin = "digits"

[[models]]
plugin = "ae"
params = {{ hidden = [8], latent_dim = 2 }}

[[models]]
plugin = "broken"
"""


class Broken(nn.Module):
    """A model that fails in its first forward pass, so that its trial fails."""

    def __init__(self, info: DataInfo) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("broken on purpose")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("broken on purpose")

    def forward(self, x: torch.Tensor):
        raise RuntimeError("broken on purpose")

    def loss(self, x: torch.Tensor, out: object) -> torch.Tensor:
        raise RuntimeError("broken on purpose")


class BrokenPlugin:
    @hookimpl
    def aebench_register_models(self, register) -> None:
        register("broken", Broken)


def run_tracked(
    folder: Path, output: Path, settings: TrackingSection, suite_text: str = SUITE
) -> MlflowTracker:
    """Run the suite in ``folder`` into ``output`` with figures and an MLflow tracker."""
    suite_path = folder / "suite.toml"
    suite_path.write_text(textwrap.dedent(suite_text.format(epochs=EPOCHS)))
    plugins = load_plugins(extra=[BrokenPlugin()])
    suite = load_suite(suite_path, plugins)
    tracker = MlflowTracker(settings)
    with tracker:
        run_trials(suite, plugins, output=output, observers=[TrialFigures(), tracker])
    return tracker


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory):
    """A small suite (one ok trial, one failed) run with figures and MLflow into a tmp store."""
    folder = tmp_path_factory.mktemp("tracked")
    uri = sqlite_uri(folder / "store" / "mlflow.db")
    tracker = run_tracked(folder, folder / "out", TrackingSection(uri=uri, log_model=True))

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = search_runs(uri, experiment_ids=[tracker.experiment_id])
    table = read_results(folder / "out").set_index("trial_id")
    return client, runs, table


def _same(param: str, value: object) -> bool:
    """An MLflow param (text) against a table cell (an int column with NaNs reads back as float)."""
    if isinstance(value, int | float):
        return float(param) == float(value)
    return param == str(value)


def _trial_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["tags.aebench.trial_id"].notna()]


def test_one_invocation_run_and_one_run_per_trial_linked_by_a_tag(tracked) -> None:
    _, runs, table = tracked
    invocations = runs[runs["tags.aebench.suite"].notna()]
    assert len(invocations) == 1
    assert invocations["status"].item() == "FINISHED"
    trials = _trial_runs(runs)
    assert (trials["tags.aebench.invocation"] == invocations["run_id"].item()).all()
    assert sorted(trials["tags.aebench.trial_id"]) == sorted(table.index)
    assert len(runs) == len(trials) + 1


def test_the_ui_lists_every_trial_run_unfolded(tracked) -> None:
    _, runs, table = tracked
    shown = listed(runs)
    assert len(shown) == len(runs)  # none folded under another
    assert sorted(_trial_runs(shown)["tags.aebench.trial_id"]) == sorted(table.index)


def test_the_experiment_is_one_of_model_training(tracked) -> None:
    client, runs, _ = tracked
    experiment = client.get_experiment(runs["experiment_id"].iloc[0])
    assert EXPERIMENT_KIND.items() <= experiment.tags.items()
    assert experiment.tags["aebench.suite"] == "tracked"
    output = Path(experiment.tags["aebench.output"])
    assert output.name == "out" and output.is_absolute()
    assert experiment.name.startswith("tracked (")  # not the suite's own folder: named by both
    assert experiment.name.endswith("out)")


def test_the_headline_metrics_are_logged_for_the_charts(tracked) -> None:
    _, runs, table = tracked
    output = Path(runs["tags.aebench.output"].dropna().item())
    headlines = vocabulary_of(output).headlines().values()
    ok = _trial_runs(runs)[lambda r: r["tags.aebench.status"] == "ok"]
    measured = 0
    for _, run in ok.iterrows():
        row = table.loc[run["tags.aebench.trial_id"]]
        for name in headlines:
            value = run.get(f"metrics.{HEADLINE_PREFIX}{name}")
            if name in row and not pd.isna(row[name]):
                assert value == pytest.approx(row[name]), name
                measured += 1
            else:
                assert value is None or pd.isna(value), name
    assert measured >= 2  # recon_mse and the throughput, at least
    charted = {c.removeprefix(f"metrics.{HEADLINE_PREFIX}") for c in runs if HEADLINE_PREFIX in c}
    assert charted <= set(headlines)


def test_params_and_tags_match_the_results_table(tracked) -> None:
    _, runs, table = tracked
    for _, run in _trial_runs(runs).iterrows():
        row = table.loc[run["tags.aebench.trial_id"]]
        for column in ("model", "regularizer", "seed", "model.latent_dim", "train.epochs"):
            if column in row and not pd.isna(row[column]):
                assert _same(run[f"params.{column}"], row[column]), column
        assert run["tags.aebench.status"] == row["status"]
        assert run["tags.aebench.dataset"] == "digits"
        assert run["tags.aebench.version.aebench"] == row["version.aebench"]
        if git_commit() is not None:
            assert run["tags.mlflow.source.git.commit"] == git_commit()


def test_ok_trials_have_curves_metrics_and_figures(tracked) -> None:
    client, runs, table = tracked
    ok = _trial_runs(runs)[lambda r: r["tags.aebench.status"] == "ok"]
    assert len(ok) == 1
    for _, run in ok.iterrows():
        row = table.loc[run["tags.aebench.trial_id"]]
        assert run["status"] == "FINISHED"
        assert run["metrics.recon_mse"] == pytest.approx(row["recon_mse"])
        history = client.get_metric_history(run["run_id"], CURVE_PREFIX + "loss")
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
        last = max(history, key=lambda m: m.step).value
        assert last == pytest.approx(row["final_loss"])
        figures = {Path(a.path).name for a in client.list_artifacts(run["run_id"], "figures")}
        assert {"latent.png", "reconstructions.png", "curves.png", "figures.npz"} <= figures
        weights = client.download_artifacts(run["run_id"], "model/state_dict.pt")
        state = torch.load(weights, weights_only=True)
        assert any(k.startswith("encoder") for k in state)


def test_a_failed_trial_ends_failed_with_its_reason(tracked) -> None:
    client, runs, table = tracked
    failed = _trial_runs(runs)[lambda r: r["tags.aebench.model"] == "broken"]
    assert len(failed) == 1
    for _, run in failed.iterrows():
        row = table.loc[run["tags.aebench.trial_id"]]
        assert row["status"] == "failed"
        assert run["status"] == "FAILED"
        assert run["tags.aebench.reason"] == row["reason"]
        assert "broken on purpose" in run["tags.aebench.reason"]
        artifacts = {a.path for a in client.list_artifacts(run["run_id"])}
        assert "traceback.txt" in artifacts


def test_non_finite_metrics_are_left_out(tracked) -> None:
    _, runs, _ = tracked
    failed = _trial_runs(runs)[lambda r: r["tags.aebench.model"] == "broken"]
    assert failed["metrics.recon_mse"].isna().all()  # never measured: not logged as NaN
    values = runs.filter(like="metrics.").to_numpy(dtype=float).ravel()
    assert all(math.isfinite(v) for v in values if not math.isnan(v))


def test_a_run_with_nothing_left_to_do_leaves_no_run(tmp_path: Path) -> None:
    uri = sqlite_uri(tmp_path / "store" / "mlflow.db")
    ae_only = SUITE[: SUITE.index('[[models]]\nplugin = "broken"')]
    first = run_tracked(tmp_path, tmp_path / "out", TrackingSection(uri=uri), ae_only)
    before = search_runs(uri, experiment_ids=[first.experiment_id])
    assert len(before) == 2  # the invocation and its trial

    again = run_tracked(tmp_path, tmp_path / "out", TrackingSection(uri=uri), ae_only)
    assert again.trial_run_ids == {}  # every trial was done
    after = search_runs(uri, experiment_ids=[first.experiment_id])
    assert sorted(after["run_id"]) == sorted(before["run_id"])


# Fails at once: a run per trial without training anything.
BROKEN_ONLY = """
[suite]
name = "fast"
seeds = [0]
device = "cpu"

[train]
epochs = {epochs}

[[datasets]]
plugin = "digits"

[[models]]
plugin = "broken"
"""


def test_one_experiment_per_results_folder_unless_the_suite_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = sqlite_uri(tmp_path / "results" / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    # An experiment of the suite's name made before aebench tagged its experiments: reused.
    old = client.create_experiment("fast")
    settings = TrackingSection(uri=uri)
    default = run_tracked(tmp_path, Path("results/fast"), settings, BROKEN_ONLY)
    other = run_tracked(tmp_path, Path("results/new"), settings, BROKEN_ONLY)
    named = TrackingSection(uri=uri, experiment="mine")
    chosen = run_tracked(tmp_path, Path("results/third"), named, BROKEN_ONLY)

    assert default.experiment_id == old
    ids = {default.experiment_id, other.experiment_id, chosen.experiment_id}
    assert len(ids) == 3
    names = {i: client.get_experiment(i).name for i in ids}
    assert names == {
        old: "fast",
        other.experiment_id: "fast (results/new)",
        chosen.experiment_id: "mine",
    }
    for experiment_id in ids:
        experiment = client.get_experiment(experiment_id)
        assert EXPERIMENT_KIND.items() <= experiment.tags.items()
        runs = search_runs(uri, experiment_ids=[experiment_id])
        assert len(runs) == 2  # the invocation and its one trial: nothing of the other folders
        assert runs["tags.aebench.output"].dropna().item() == experiment.tags["aebench.output"]


def test_experiment_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins) -> None:
    monkeypatch.chdir(tmp_path)
    suite = load_suite(
        {
            "suite": {"name": "quick"},
            "datasets": [{"plugin": "digits"}],
            "models": [{"plugin": "ae"}],
        },
        plugins,
    )
    assert experiment_name(suite, Path("results/quick")) == "quick"
    assert experiment_name(suite, tmp_path / "results" / "quick") == "quick"
    assert experiment_name(suite, Path("results/new")) == "quick (results/new)"
    elsewhere = tmp_path.parent / "elsewhere"
    assert experiment_name(suite, elsewhere) == f"quick ({elsewhere.resolve().as_posix()})"
    assert experiment_name(suite, Path("results/new"), "mine") == "mine"


def test_the_suite_uri_wins_then_the_environment_then_results_mlflow_db(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(None) == f"sqlite:///{tmp_path.resolve() / 'results' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(None) == "http://127.0.0.1:5000"
    assert tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "mlruns", "./somewhere"])
def test_the_file_store_is_refused(uri: str) -> None:
    with pytest.raises(TrackingError, match="file store"):
        tracking_uri(uri)


def test_help_and_list_never_import_mlflow() -> None:
    code = textwrap.dedent(
        """
        import contextlib, io, sys
        from aebench.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["list"]) == 0
            try:
                main(["--help"])
            except SystemExit:
                pass
        loaded = sorted(m for m in sys.modules if m == "mlflow" or m.startswith("mlflow."))
        print(loaded)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_the_invocation_run_logs_each_mean_with_its_interval_and_n(tmp_path: Path) -> None:
    three_seeds = SUITE.replace("seeds = [0]", "seeds = [0, 1, 2]")
    three_seeds = three_seeds.replace('[[models]]\nplugin = "broken"\n', "")
    uri = sqlite_uri(tmp_path / "store" / "mlflow.db")
    tracker = run_tracked(tmp_path, tmp_path / "out", TrackingSection(uri=uri), three_seeds)
    runs = search_runs(uri, experiment_ids=[tracker.experiment_id])
    invocation = runs[runs["tags.aebench.suite"].notna()].iloc[0]
    values = read_results(tmp_path / "out")["recon_mse"].to_numpy(dtype=float)
    assert len(values) == 3
    # Student's t interval by formula: mean ± t(0.975, 2) s / sqrt(3)
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
    name = f"metrics.{AGGREGATE_PREFIX}digits/ae - none/recon_mse"
    assert invocation[f"{name}.mean"] == pytest.approx(values.mean())
    assert invocation[f"{name}.low"] == pytest.approx(values.mean() - half)
    assert invocation[f"{name}.high"] == pytest.approx(values.mean() + half)
    assert invocation[f"{name}.n"] == 3


def test_aggregates_of_two_seeds_have_n_and_no_bounds() -> None:
    table = pd.DataFrame(
        {
            "dataset": "digits",
            "model": "ae",
            "regularizer": "none",
            "model.latent_dim": [2, 2, 3, 3, 4, 4],
            "seed": [0, 1, 0, 1, 0, 1],
            "status": "ok",
            "fit": [1.0, 2.0, 3.0, float("nan"), float("nan"), float("nan")],
        }
    )
    vocabulary = Vocabulary(columns={})
    vocabulary.add([Column("fit", "higher", group="g", headline=True)])
    # latent_dim 4 never measured it (an autoencoder's fid, say): no "n = 0" logged for it.
    assert aggregate_metrics(table, vocabulary) == {
        "seeds/digits/ae - none latent_dim_2/fit.mean": 1.5,
        "seeds/digits/ae - none latent_dim_2/fit.n": 2.0,
        "seeds/digits/ae - none latent_dim_3/fit.mean": 3.0,
        "seeds/digits/ae - none latent_dim_3/fit.n": 1.0,
    }


def test_a_heavy_tailed_aggregate_is_logged_as_the_median_it_is() -> None:
    far_off = [1.0, 2.0, 3.0, 4.0, 5.0, 90.0]  # mean 17.5, median 3.5
    table = pd.DataFrame(
        {
            "dataset": "digits",
            "model": "ae",
            "regularizer": "none",
            "seed": range(6),
            "status": "ok",
            "fid": far_off,
        }
    )
    vocabulary = Vocabulary(columns={})
    vocabulary.add([Column("fid", "lower", group="g", headline=True, heavy_tailed=True)])
    # 6 seeds hold the median between the lowest and the highest at 95% (1 - 2 / 2**6).
    assert aggregate_metrics(table, vocabulary) == {
        "seeds/digits/ae - none/fid.median": 3.5,
        "seeds/digits/ae - none/fid.low": 1.0,
        "seeds/digits/ae - none/fid.high": 90.0,
        "seeds/digits/ae - none/fid.n": 6.0,
    }
