"""The runner: one row per trial with its parameters, metrics and versions.

That the same seeds give the same numbers is in test_reproducibility.py.
"""

import math

import pandas as pd
import torch
from builders import build_tiny_suite, entry

from aebench import hookimpl
from aebench.plugins.manager import load_plugins
from aebench.results.table import PARQUET, read_results
from aebench.run.data import DataCache
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite
from aebench.run.trial import run_trial


def test_a_trial_row_has_params_metrics_and_versions(plugins, tiny_suite):
    trial = load_suite(tiny_suite, plugins).trials[0]
    row, outcome = run_trial(trial, plugins, torch.device("cpu"), DataCache(plugins))
    assert row["status"] == "ok", row["reason"]
    assert row["trial_id"] == trial.id
    assert (row["dataset"], row["model"], row["regularizer"]) == ("digits", "ae", "none")
    assert row["model.hidden"] == "[16]" and row["model.latent_dim"] == 2
    assert row["train.epochs"] == 2 and row["seed"] == 0
    assert row["version.torch"] == torch.__version__ and row["version.aebench"]
    assert 0 < row["recon_mse"] < 1 and row["recon_bce"] > 0
    assert row["train_s"] > 0 and row["device"] == "cpu"
    assert len(outcome.curves["loss"]) == 2 and outcome.model is not None
    # The CPU's peak RSS is the process's, not the trial's: NaN and why, not a misleading 0.
    assert math.isnan(row["peak_mem_mb"])
    assert "peak_mem_mb: peak memory is measured on CUDA devices only" in row["nan_reasons"]


def test_a_trial_row_is_plain_data(plugins, tiny_suite):
    """Rows are pickled to the MLflow worker, which imports no torch: a value of a torch type
    (``torch.__version__`` is a ``TorchVersion``) made it import torch, seconds of CPU taken from
    the trials training beside it."""
    trial = load_suite(tiny_suite, plugins).trials[0]
    row, _ = run_trial(trial, plugins, torch.device("cpu"), DataCache(plugins))
    plain = (str, int, float, bool, type(None))
    assert {k: type(v) for k, v in row.items() if type(v) not in plain} == {}


def test_recon_mse_matches_an_independent_computation(plugins, tiny_suite):
    trial = load_suite(tiny_suite, plugins).trials[0]
    cache = DataCache(plugins)
    row, outcome = run_trial(trial, plugins, torch.device("cpu"), cache)
    x = outcome.data.test.x
    with torch.no_grad():
        recon = outcome.model.decode(outcome.model.encode(x))
    by_hand = ((recon - x) ** 2).sum().item() / x.numel()
    assert math.isclose(row["recon_mse"], by_hand, rel_tol=1e-5)
    p = recon.clamp(1e-7, 1 - 1e-7)
    bce = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean().item()
    assert math.isclose(row["recon_bce"], bce, rel_tol=1e-4)


def test_run_suite_writes_one_row_per_trial(plugins, tiny_suite, tmp_path):
    suite = load_suite(tiny_suite, plugins)
    run = run_trials(suite, plugins, output=tmp_path / "out", device="cpu")
    table = read_results(tmp_path / "out")
    assert sorted(table["trial_id"]) == sorted(t.id for t in suite.trials)
    assert set(table["status"]) == {"ok"}
    assert run.counts == {"ok": 4}
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(csv["trial_id"]) == list(table["trial_id"])
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no temporary file left behind
    assert (tmp_path / "out" / PARQUET).exists()


class Broken:
    """A third-party plugin whose model cannot be built."""

    @hookimpl
    def aebench_register_models(self, register):
        def broken(info, latent_dim: int = 2, hidden: list[int] = ()):
            """Always fails to build."""
            raise RuntimeError("cannot build")

        register("broken", broken)


def test_a_raising_model_is_a_failed_row_and_the_suite_goes_on(write_suite, tmp_path):
    plugins = load_plugins(extra=[Broken()])
    built = build_tiny_suite(entry("broken"), tracking={"enabled": True})
    suite = load_suite(write_suite(built), plugins)
    run = run_trials(suite, plugins, output=tmp_path / "out", device="cpu")
    assert run.counts == {"ok": 4, "failed": 2}
    table = read_results(tmp_path / "out")
    failed = table[table["status"] == "failed"]
    # The reason names the plugin whose code raised (read from the traceback).
    assert set(failed["reason"]) == {"RuntimeError in model 'broken' (Broken): cannot build"}
