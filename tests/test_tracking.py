"""MLflow tracking: an experiment per suite, a parent run per invocation, a run per trial."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow_runs import search_runs
from torch import nn

from aebench import DataInfo, hookimpl
from aebench.figures import TrialFigures
from aebench.plugins import load_plugins
from aebench.results import read_results
from aebench.runner import run_suite
from aebench.suite import TrackingSection, load_suite
from aebench.tracking import (
    CURVE_PREFIX,
    MlflowTracker,
    TrackingError,
    git_commit,
    sqlite_uri,
    tracking_uri,
)

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


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory):
    """A small suite (one ok trial, one failed) run with figures and MLflow into a tmp store."""
    folder = tmp_path_factory.mktemp("tracked")
    suite_path = folder / "suite.toml"
    suite_path.write_text(textwrap.dedent(SUITE.format(epochs=EPOCHS)))
    plugins = load_plugins(extra=[BrokenPlugin()])
    suite = load_suite(suite_path, plugins)
    uri = sqlite_uri(folder / "store" / "mlflow.db")
    tracker = MlflowTracker(TrackingSection(uri=uri, log_model=True))
    with tracker:
        run = run_suite(suite, plugins, output=folder / "out", observers=[TrialFigures(), tracker])

    from mlflow import MlflowClient

    runs = search_runs(uri, experiment_names=["tracked"])
    table = read_results(run.output).set_index("trial_id")
    return MlflowClient(tracking_uri=uri), runs, table


def _same(param: str, value: object) -> bool:
    """An MLflow param (text) against a table cell (an int column with NaNs reads back as float)."""
    if isinstance(value, int | float):
        return float(param) == float(value)
    return param == str(value)


def _nested(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["tags.mlflow.parentRunId"].notna()]


def test_one_parent_and_one_nested_run_per_trial(tracked) -> None:
    _, runs, table = tracked
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 1
    assert parents["status"].item() == "FINISHED"
    nested = _nested(runs)
    assert (nested["tags.mlflow.parentRunId"] == parents["run_id"].item()).all()
    assert sorted(nested["tags.aebench.trial_id"]) == sorted(table.index)


def test_params_and_tags_match_the_results_table(tracked) -> None:
    _, runs, table = tracked
    for _, run in _nested(runs).iterrows():
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
    ok = _nested(runs)[lambda r: r["tags.aebench.status"] == "ok"]
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
    failed = _nested(runs)[lambda r: r["tags.aebench.model"] == "broken"]
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
    failed = _nested(runs)[lambda r: r["tags.aebench.model"] == "broken"]
    assert failed["metrics.recon_mse"].isna().all()  # never measured: not logged as NaN
    values = runs.filter(like="metrics.").to_numpy(dtype=float).ravel()
    assert all(math.isfinite(v) for v in values if not math.isnan(v))


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
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
