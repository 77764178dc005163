"""Blame follows the cause: an off-contract model or dataset is named where its output first
enters the core, an error a metric meets inside a model's (or dataset's) method names that
plugin, and a metric's traceback reaches ``aebench.log``."""

from __future__ import annotations

import sys
from pathlib import Path

import aebench_offcontract
import pydantic
import pytest
import torch
from builders import as_toml, build_suite, entry
from fake_plugins import fake_distribution
from repo import SUPPORT

import aebench
from aebench import Regularizer, SuiteObserver
from aebench.cli import main
from aebench.plugins.blame import culprit
from aebench.plugins.manager import load_plugins
from aebench.plugins.registry import Entry
from aebench.run.data import DataCache
from aebench.run.observing import TrialOutcome
from aebench.run.suite import load_suite
from aebench.run.trial import run_trial

ORIGIN = "(aebench_offcontract"  # the package, as it stands in every origin of its plugins


@pytest.fixture
def offcontract():
    return load_plugins(extra=[aebench_offcontract])


class Outcomes(SuiteObserver):
    def __init__(self) -> None:
        self.outcomes: list[TrialOutcome] = []

    def trial_finished(self, trial, row, outcome):
        self.outcomes.append(outcome)


def one_trial(offcontract, tmp_path, model: str, metrics=("recon_mse",), **suite):
    built = build_suite(entry(model, latent_dim=2), epochs=1, metrics=list(metrics), **suite)
    observer = Outcomes()
    run = aebench.run_suite(
        built, output=tmp_path / "out", device="cpu", plugins=offcontract, observers=[observer]
    )
    [row] = run.rows
    [outcome] = observer.outcomes
    return row, outcome


@pytest.mark.parametrize(
    ("model", "returned"), [("encode-3d", "(64, 1, 2)"), ("encode-mu-logvar", "(64, 4)")]
)
def test_an_off_contract_encode_fails_the_trial_naming_the_model(
    offcontract, tmp_path, model, returned
) -> None:
    row, _ = one_trial(offcontract, tmp_path, model)
    assert row["status"] == "failed"
    assert row["reason"].startswith(f"ContractError: model {model!r} {ORIGIN}")
    assert f"encode(x) returned shape {returned}" in row["reason"]
    assert "expected (batch, latent) = (64, 2)" in row["reason"]


@pytest.mark.parametrize(
    ("dataset", "what"),
    [("float64", "train.x is torch.float64; expected torch.float32"), ("grid-swapped", "render")],
)
def test_an_off_contract_dataset_is_named_before_any_model_sees_it(
    offcontract, dataset, what
) -> None:
    """In a trial (an isolated one builds its data afresh): the dataset fails it, not the model."""
    built = build_suite(entry("tidy-vae"), datasets=[entry(dataset)])
    suite = load_suite(built, offcontract)
    trial = suite.trials[0]
    row, outcome = run_trial(trial, offcontract, torch.device("cpu"), DataCache(offcontract))
    assert row["status"] == "failed"
    assert row["reason"].startswith(f"ContractError: dataset {dataset!r} {ORIGIN}")
    assert what in row["reason"] and "model" not in row["reason"].split(":")[1]
    assert outcome.model is None  # nothing trained


def test_a_suite_with_an_off_contract_dataset_stops_before_training(offcontract, tmp_path):
    built = build_suite(entry("tidy-vae"), datasets=[entry("float64")])
    with pytest.raises(aebench.SuiteError, match=r"dataset 'float64' \(aebench_offcontract.*"):
        aebench.run_suite(built, output=tmp_path / "out", device="cpu", plugins=offcontract)
    assert not (tmp_path / "out" / "results.parquet").exists()


def test_a_model_method_that_raises_inside_a_metric_is_blamed(offcontract, tmp_path) -> None:
    row, outcome = one_trial(
        offcontract,
        tmp_path,
        "posterior-breaks",
        ["elbo", "recon_mse"],
        datasets=[entry("ppca")],  # real data: the Gaussian p(x|z)'s elbo applies
    )
    assert row["status"] == "ok"
    blamed = f"model 'posterior-breaks' {ORIGIN}"
    assert row["metric_errors"].startswith(blamed) and "in metric 'elbo'" in row["metric_errors"]
    assert "metric 'elbo' (" not in row["metric_errors"]  # not the built-in metric's fault
    [failure] = outcome.metric_tracebacks
    assert failure.startswith(blamed)
    assert "Traceback" in failure and "in rsample" in failure


def test_a_metric_that_raises_itself_is_still_blamed(offcontract, tmp_path) -> None:
    row, outcome = one_trial(offcontract, tmp_path, "tidy-vae", ["breaks"])
    assert row["metric_errors"].startswith(f"metric 'breaks' {ORIGIN}")
    [failure] = outcome.metric_tracebacks
    assert failure.startswith(f"metric 'breaks' {ORIGIN}") and "the metric's own bug" in failure


# A one-module package (as the support packages are): the frame's qualified name decides.
class OneModuleModel:
    def posterior(self) -> None:
        raise RuntimeError("posterior broke")


def one_module_metric(model: OneModuleModel) -> None:
    model.posterior()


def as_entry(kind: str, name: str, thing: object) -> Entry:
    return Entry(
        kind=kind,
        name=name,
        factory=thing,
        plugin="one-module",
        distribution=None,
        version=None,
        params=pydantic.BaseModel,
        callable=thing,
    )


def test_within_one_module_the_class_whose_code_raised_is_blamed() -> None:
    metric = as_entry("metric", "m", one_module_metric)
    model = as_entry("model", "x", OneModuleModel)
    with pytest.raises(RuntimeError) as caught:
        one_module_metric(OneModuleModel())
    assert culprit(caught.value, [metric, model]) is model


# Registered by factory functions that return instances of other classes of the same module.
class OneModuleRegularizer(Regularizer):
    def penalty(self, x, out, model):
        raise RuntimeError("penalty broke")


class OneModuleNet(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("forward broke")


def make_regularizer() -> Regularizer:
    return OneModuleRegularizer()


def make_net(info: object) -> torch.nn.Module:
    return OneModuleNet()


def test_within_one_module_a_factory_functions_plugin_is_blamed_by_the_kind_of_its_self() -> None:
    # before: neither factory's name holds the raising method, and the first suspect (the
    # model, built first) was blamed for the regularizer's penalty.
    model = as_entry("model", "x", make_net)
    regularizer = as_entry("regularizer", "r", make_regularizer)
    with pytest.raises(RuntimeError) as caught:
        make_regularizer().penalty(None, None, None)
    assert culprit(caught.value, [model, regularizer]) is regularizer
    with pytest.raises(RuntimeError) as caught:
        make_net(None)(None)
    assert culprit(caught.value, [regularizer, model]) is model


@pytest.mark.slow  # a suite run, isolated once: 4-7 s
@pytest.mark.parametrize("isolate", [False, True])
def test_a_metric_traceback_is_in_aebench_log(tmp_path, monkeypatch, isolate) -> None:
    """``aebench run`` with a metric that raises: its traceback, headed by the plugin and its
    distribution, is in ``aebench.log``; an isolated trial carries it back from its process."""
    site = fake_distribution(tmp_path / "site", SUPPORT / "aebench_offcontract.py")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "aebench_offcontract", raising=False)
    monkeypatch.chdir(tmp_path)
    built = build_suite(entry("tidy-vae"), epochs=1, metrics=["breaks", "recon_mse"])
    built["suite"] |= {"isolate": isolate, "output": "out"}
    Path("suite.toml").write_text(as_toml(built))
    assert main(["run", "suite.toml"]) == 0
    log = (tmp_path / "out" / "aebench.log").read_text()
    assert "metric 'breaks' (aebench_offcontract 0.1):" in log
    assert "Traceback (most recent call last)" in log and "the metric's own bug" in log
