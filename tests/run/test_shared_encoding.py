"""The metrics of a trial share the test split's encoding (``MetricContext.codes()``,
``reconstructions()``): with the default metrics the test split goes through the encoder once.

"Once" is one pass over the test split (in batches of ``EVAL_BATCH``) outside inference mode.
Not counted: ``infer_samples_per_s`` times encoder passes (in inference mode, its own), the
probes (``knn_acc``, ``probe_acc``) encode the train split they fit on, and the check that
p(x|z) holds the data encodes one input.
"""

from __future__ import annotations

import math

import aebench_counting
import pytest
import torch
from builders import build_suite, entry

from aebench.contract.metric import EVAL_BATCH, MetricContext
from aebench.plugins.manager import load_plugins
from aebench.run.data import DataCache
from aebench.run.health import health_warnings
from aebench.run.measure import measure_all
from aebench.run.suite import load_suite


def counting_trial(write_suite):
    """A counting-ae trial with the default metrics, its data and a fresh model, the encoder
    calls counted from here on."""
    plugins = load_plugins(extra=[aebench_counting])
    suite = build_suite(entry("counting-ae", latent_dim=2), metrics=None)
    trial = load_suite(write_suite(suite), plugins).trials[0]
    device = torch.device("cpu")
    data = DataCache(plugins).get(trial.dataset, device)
    model = aebench_counting.CountingAE(data.info)
    aebench_counting.reset()
    return plugins, trial, device, data, model


def test_the_default_metrics_encode_the_test_split_once(write_suite) -> None:
    plugins, trial, device, data, model = counting_trial(write_suite)
    training = {"train_s": 1.0, "train_samples_per_s": 1.0, "peak_mem_mb": math.nan}
    row = measure_all(trial, plugins, model, data, device, training)
    assert row["metric_errors"] == ""
    for column in ("recon_mse", "recon_psnr", "code_mean_abs", "kmeans_nmi", "knn_acc"):
        assert math.isfinite(row[column]), column  # they measured, from the shared codes
    n_test = len(data.test)
    assert n_test <= EVAL_BATCH  # one pass is one call here
    passes = [n for n, inference in aebench_counting.ENCODED if n == n_test and not inference]
    assert len(passes) == 1, aebench_counting.ENCODED


def test_the_shared_codes_are_computed_once_and_are_the_models_code() -> None:
    calls = []

    class Model(torch.nn.Module):
        def encode(self, x):
            calls.append(len(x))
            return 2 * x

        def decode(self, z):
            return z / 2

    x = torch.arange(12.0).view(6, 2)
    data = type("D", (), {"test": type("S", (), {"x": x})()})()
    context = MetricContext(Model(), data, {}, torch.device("cpu"), torch.Generator())  # type: ignore[arg-type]
    assert torch.equal(context.codes(), 2 * x)
    assert torch.equal(context.reconstructions(), x)
    assert context.codes() is context.codes()
    assert calls == [6]


@pytest.mark.parametrize("metric", ["recon_mse", "code_mean_abs", "kmeans"])
def test_a_metric_reads_the_shared_codes(metric: str, plugins, monkeypatch) -> None:
    """Planted codes are what the metric sees: it asks the context, not the encoder."""
    from aebench_plugins.metrics import METRICS

    x = torch.rand(40, 1, 4, 4)
    calls = []

    class Model(torch.nn.Module):
        def encode(self, batch):
            calls.append(len(batch))
            return batch.flatten(1)[:, :2]

        def decode(self, z):
            return torch.zeros(len(z), 1, 4, 4)

    data = type("D", (), {})()
    data.test = type("S", (), {"x": x, "y": torch.arange(40) % 2})()
    data.info = type("I", (), {"kind": "grey", "n_classes": 2})()
    context = MetricContext(Model(), data, {}, torch.device("cpu"), torch.Generator())  # type: ignore[arg-type]
    context.codes(), context.reconstructions()
    METRICS[metric].compute(context)
    assert calls == [40]  # the context's one pass; the metric encoded nothing itself


def test_health_warnings_read_the_trials_shared_codes(write_suite) -> None:
    """Given the trial's context, the health checks encode nothing more: they read its codes
    (planted here: a dead second unit the model's own code does not have)."""
    plugins = load_plugins(extra=[aebench_counting])
    suite = build_suite(entry("counting-ae", latent_dim=2), metrics=None)
    trial = load_suite(write_suite(suite), plugins).trials[0]
    data = DataCache(plugins).get(trial.dataset, torch.device("cpu"))
    model = aebench_counting.CountingAE(data.info)
    context = MetricContext(model, data, {}, torch.device("cpu"), torch.Generator())
    planted = torch.zeros(len(data.test), 2)
    planted[:, 0] = torch.linspace(-1, 1, len(data.test))
    context._shared["codes"] = planted
    aebench_counting.reset()
    warnings = health_warnings(model, data, {"loss": [3.0, 2.0]}, context)
    assert aebench_counting.ENCODED == []
    assert warnings == ["1 of 2 code units dead (|a| <= 0.05 on every test input)"]
    health_warnings(model, data, {"loss": [3.0, 2.0]})  # without one: a pass of its own
    assert [n for n, _ in aebench_counting.ENCODED] == [len(data.test)]


def test_a_trained_trial_encodes_the_test_split_once_health_warnings_included(
    write_suite,
) -> None:
    from aebench.run.observing import TrialOutcome
    from aebench.run.train import TrainResult
    from aebench.run.trial import trained_row

    plugins, trial, device, data, model = counting_trial(write_suite)
    result = TrainResult(curves={"loss": [2.0, 1.0]}, train_s=1.0)
    row = trained_row(trial, plugins, model, data, device, result, TrialOutcome())
    assert row["metric_errors"] == ""
    passes = [
        n for n, inference in aebench_counting.ENCODED if n == len(data.test) and not inference
    ]
    assert len(passes) == 1, aebench_counting.ENCODED
