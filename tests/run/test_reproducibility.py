"""Reproducibility: the same suite and seeds give the same numbers, trial by trial and run by run.

A suite on a Dask cluster giving the local executor's numbers is tested with the cluster, in
test_executors.py.
"""

import pandas as pd
import torch

from aebench.run.data import DataCache
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite
from aebench.run.trial import run_trial


def test_the_same_seed_gives_identical_metrics_on_the_cpu(plugins, tiny_suite):
    trial = load_suite(tiny_suite, plugins).trials[0]
    first, _ = run_trial(trial, plugins, torch.device("cpu"), DataCache(plugins))
    second, _ = run_trial(trial, plugins, torch.device("cpu"), DataCache(plugins))
    assert first["recon_mse"] == second["recon_mse"]
    assert first["final_loss"] == second["final_loss"]


def test_two_runs_with_the_same_seeds_give_identical_metrics(plugins, tiny_suite, tmp_path):
    suite = load_suite(tiny_suite, plugins)
    first = pd.DataFrame(run_trials(suite, plugins, output=tmp_path / "a").rows)
    second = pd.DataFrame(run_trials(suite, plugins, output=tmp_path / "b").rows)
    for column in ("recon_mse", "recon_bce", "final_loss"):
        assert list(first[column]) == list(second[column])
