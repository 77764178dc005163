"""The metric plugins: registration, NaN where a metric does not apply, [eval] settings, columns.

The estimators' mathematics is tested in test_likelihood.py; here the plugins around them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from builders import build_suite, entry
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from aebench import Data, DataInfo, MetricContext, ModelOutput, Split
from aebench.cli import main
from aebench.results.table import read_results
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite

LIKELIHOOD_COLUMNS = {
    "elbo": ["elbo", "rate", "distortion", "bits_per_dim"],
    "log_px_iwae": [
        "log_px_iwae",
        "log_px_iwae_test_se",
        "log_px_iwae_mc_se",
        "log_px_iwae_ess_mean",
        "log_px_iwae_ess_min",
        "log_px_iwae_convergence",
        "log_px_true_gap",
        "log_px_iwae_precision_error",
    ],
    "log_px_exact": [
        "log_px_exact",
        "log_px_exact_error",
        "log_px_exact_inputs",
        "log_px_exact_iwae_gap",
    ],
    "log_px_prior_mc": ["log_px_prior_mc"],
    "active_units": ["active_units"],
}
OTHER_COLUMNS = {
    "recon_mse": ["recon_mse"],
    "recon_bce": ["recon_bce"],
    "recon_psnr": ["recon_psnr"],
    "kmeans": ["kmeans_nmi", "kmeans_ari"],
    "silhouette": ["silhouette"],
    "knn_acc": ["knn_acc"],
    "probe_acc": ["probe_acc"],
    "code_mean_abs": ["code_mean_abs"],
    "code_frac_active": ["code_frac_active"],
    "infer_samples_per_s": ["infer_samples_per_s"],
    "n_params": ["n_params"],
}
COLUMNS = LIKELIHOOD_COLUMNS | OTHER_COLUMNS | {"log_px_true": ["log_px_true"]}
# NaN on digits for every model: no known density, and latents of more than 2 dimensions.
NAN_ON_DIGITS = {
    "log_px_true",
    "log_px_true_gap",
    "log_px_iwae_precision_error",  # evaluated in fp32: nothing to compare
    *LIKELIHOOD_COLUMNS["log_px_exact"],
}


def make_context(model: nn.Module, data: Data, **settings) -> MetricContext:
    return MetricContext(
        model=model.eval(),
        data=data,
        settings=settings,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )


def test_every_metric_is_listed_with_a_description(capsys) -> None:
    assert main(["list", "metrics", "--json"]) == 0
    listed = {m["name"]: m["description"] for m in json.loads(capsys.readouterr().out)["metrics"]}
    assert set(COLUMNS) <= set(listed)
    for name in LIKELIHOOD_COLUMNS:
        assert "latent-variable models" in listed[name]  # says when it applies
    for name in ("kmeans", "silhouette", "knn_acc", "probe_acc"):
        assert "labelled data" in listed[name]


def test_metrics_return_their_documented_columns_for_an_autoencoder_and_a_vae(plugins) -> None:
    data = plugins.datasets.get("digits").factory()
    torch.manual_seed(0)
    ae = plugins.models.get("ae").factory(data.info, latent_dim=4, hidden=[16])
    vae = plugins.models.get("vae").factory(data.info, latent_dim=4, hidden=[16])
    for model, deterministic in ((ae, True), (vae, False)):
        context = make_context(model, data)
        for name, columns in COLUMNS.items():
            # 20 draws: enough for the convergence column (K and K/10)
            params = {"samples": 20} if name in ("log_px_iwae", "log_px_prior_mc") else {}
            with torch.no_grad():
                values = plugins.metrics.get(name).factory(context, **params)
            assert sorted(values) == sorted(columns), name
            for column, value in values.items():
                nan_expected = (deterministic and name in LIKELIHOOD_COLUMNS) or (
                    column in NAN_ON_DIGITS
                )
                assert isinstance(value, float), column
                assert math.isnan(value) == nan_expected, (column, value)


class ExactPPCA(nn.Module):
    """Probabilistic PCA with its exact posterior: every likelihood estimate equals log p(x)."""

    def __init__(self, data_dim: int = 4, latent_dim: int = 2) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(data_dim, latent_dim, generator=g))
        self.bias = nn.Parameter(torch.randn(data_dim, generator=g))
        self.noise = 0.5

    def prior(self) -> Distribution:
        zeros = torch.zeros(self.weight.shape[1])
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def posterior(self, x: Tensor) -> Distribution:
        w = self.weight
        m_inv = torch.linalg.inv(w.T @ w + self.noise**2 * torch.eye(w.shape[1]))
        cov = (self.noise**2 * m_inv).expand(len(x), -1, -1)
        return MultivariateNormal((x - self.bias) @ w @ m_inv, cov)

    def likelihood(self, z: Tensor) -> Distribution:
        return Independent(Normal(z @ self.weight.T + self.bias, self.noise), 1)

    def exact_log_px(self, x: Tensor) -> Tensor:
        cov = self.weight @ self.weight.T + self.noise**2 * torch.eye(len(self.bias))
        return MultivariateNormal(self.bias, cov).log_prob(x)

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x).mean

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.weight.T + self.bias

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return -self.exact_log_px(x)


def ppca_context(n: int = 300, **settings) -> tuple[ExactPPCA, MetricContext]:
    model = ExactPPCA()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        z = torch.randn(n, 2, generator=g)
        x = z @ model.weight.T + model.bias + model.noise * torch.randn(n, 4, generator=g)
    data = Data(DataInfo(shape=(4,), kind="real"), train=Split(x), test=Split(x))
    return model, make_context(model, data, **settings)


def test_likelihood_plugins_are_exact_on_exact_ppca(plugins) -> None:
    model, context = ppca_context(n=100)
    with torch.no_grad():
        exact = model.exact_log_px(context.data.test.x).double()
        iwae = plugins.metrics.get("log_px_iwae").factory(context, samples=3)
        elbo = plugins.metrics.get("elbo").factory(context, samples=1000)
    assert iwae["log_px_iwae"] == pytest.approx(exact.mean().item(), abs=1e-4)
    assert iwae["log_px_iwae_test_se"] == pytest.approx(
        exact.std().item() / math.sqrt(100), rel=1e-3
    )
    assert elbo["elbo"] == pytest.approx(exact.mean().item(), abs=0.02)
    assert elbo["elbo"] == pytest.approx(-(elbo["rate"] + elbo["distortion"]), abs=1e-6)
    assert elbo["bits_per_dim"] == pytest.approx(-elbo["elbo"] / (4 * math.log(2)))


def test_the_samples_parameter_is_used(plugins) -> None:
    # A prior-sampling estimate of this model's log p(x) improves visibly from K = 1 to 2000.
    prior_mc = plugins.metrics.get("log_px_prior_mc").factory
    _, context = ppca_context()
    with torch.no_grad():
        one = prior_mc(context, samples=1)["log_px_prior_mc"]
        many = prior_mc(context, samples=2000)["log_px_prior_mc"]
    assert one < many - 1.0


def test_active_units_counts_varying_posterior_means(plugins) -> None:
    model, context = ppca_context()
    with torch.no_grad():
        means = model.posterior(context.data.test.x).mean.numpy()
        result = plugins.metrics.get("active_units").factory(context)
    assert result["active_units"] == float((means.var(axis=0) > 0.01).sum())
    assert result["active_units"] == 2.0


def test_active_units_count_on_the_split_and_inputs_asked_for(plugins) -> None:
    # Burda et al. count on 500 training images. Here the training split's first 50 inputs are
    # all the same point (no posterior mean varies), and the rest of it is the test split's.
    metric = plugins.metrics.get("active_units").factory
    model, context = ppca_context()
    test = context.data.test.x
    train = torch.cat([model.bias.detach().expand(50, -1), test])
    context = make_context(model, replace(context.data, train=Split(train)))
    with torch.no_grad():
        assert metric(context)["active_units"] == 2.0  # the test split
        assert metric(context, split="train", inputs=50)["active_units"] == 0.0
        assert metric(context, split="train")["active_units"] == 2.0  # all of it


class Shrink(nn.Module):
    """Reconstructs x as 0.9 x: a known reconstruction error."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 2)  # 3 * 2 + 2 = 8 parameters, unused
        self.delay_per_sample_s = 0.0

    def encode(self, x: Tensor) -> Tensor:
        time.sleep(self.delay_per_sample_s * len(x))
        return x

    def decode(self, z: Tensor) -> Tensor:
        return 0.9 * z

    def forward(self, x: Tensor) -> ModelOutput:
        return ModelOutput(code=x, recon=0.9 * x)

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return torch.zeros(len(x))


def image_context(model: nn.Module, kind: str = "unit") -> MetricContext:
    x = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    if kind == "real":
        x = 4 * x - 1
    data = Data(DataInfo(shape=(1, 2, 2), kind=kind), train=Split(x), test=Split(x))
    return make_context(model, data)


@pytest.mark.parametrize("kind", ["unit", "real"])
def test_psnr_by_hand(kind: str, plugins) -> None:
    context = image_context(Shrink(), kind)
    x = context.data.test.x.numpy().reshape(6, -1)
    peak = 1.0 if kind == "unit" else x.max() - x.min()
    mse = ((0.9 * x - x) ** 2).mean(axis=1)
    expected = np.mean(10 * np.log10(peak**2 / mse))
    psnr = plugins.metrics.get("recon_psnr").factory(context)["recon_psnr"]
    assert psnr == pytest.approx(expected, rel=1e-4)


def test_n_params_and_inference_throughput(plugins) -> None:
    model = Shrink()
    model.delay_per_sample_s = 1e-3  # at most 1,000 samples per second
    context = image_context(model)
    assert plugins.metrics.get("n_params").factory(context) == {"n_params": 8.0}
    rate = plugins.metrics.get("infer_samples_per_s").factory(context)["infer_samples_per_s"]
    assert 100 < rate < 1000  # sleeping bounds it above; overhead on a busy machine below


def metrics_suite(metrics: list[str] | None = None) -> dict:
    """An ``ae`` and a ``vae`` on digits, one epoch: ``metrics`` (None: the default ones)."""
    return build_suite(
        entry("ae", hidden=[16], latent_dim=4),
        entry("vae", hidden=[16], latent_dim=4),
        name="metrics",
        seeds=[0],
        epochs=1,
        batch_size=128,
        metrics=metrics,
        eval={"iwae_samples": 10},
        tracking={"enabled": True},
    )


def test_a_suite_records_every_column_nan_where_it_does_not_apply(
    write_suite, tmp_path, plugins
) -> None:
    suite = load_suite(write_suite(metrics_suite()), plugins)
    run_trials(suite, plugins, output=tmp_path / "all", device="cpu")
    table = read_results(tmp_path / "all").set_index("model")
    assert set(table["status"]) == {"ok"}
    for name, columns in COLUMNS.items():
        for column in columns:
            if column in NAN_ON_DIGITS:
                assert math.isnan(table.loc["vae", column]), column
                assert math.isnan(table.loc["ae", column]), column
                continue
            assert not math.isnan(table.loc["vae", column]), column
            is_nan = math.isnan(table.loc["ae", column])
            assert is_nan == (name in LIKELIHOOD_COLUMNS), column
    reasons = dict(entry.split(": ", 1) for entry in table.loc["ae", "nan_reasons"].split("; "))
    not_latent = set(
        next(k for k, v in reasons.items() if "not a latent-variable" in v).split(", ")
    )
    assert {"elbo", "log_px_iwae", "active_units"} <= not_latent
    assert "log_px_exact: the latent has 4 dimensions" in table.loc["vae", "nan_reasons"]


def test_eval_metrics_selects_metrics_by_name(write_suite, tmp_path, plugins) -> None:
    suite = load_suite(write_suite(metrics_suite(["elbo", "n_params"])), plugins)
    run_trials(suite, plugins, output=tmp_path / "some", device="cpu")
    table = read_results(tmp_path / "some")
    assert {"elbo", "rate", "distortion", "bits_per_dim", "n_params"} <= set(table.columns)
    assert not {"log_px_iwae", "kmeans_nmi", "recon_psnr"} & set(table.columns)


def test_compare_checks_a_likelihood_once_not_again_through_its_rescalings() -> None:
    # bits_per_dim = -elbo / (D ln 2) and log_px_true_gap = log_px_true - log_px_iwae: with floors
    # of their own, a 1-nat regression of a 784-pixel ELBO (8 seeds, paired) read "regressed" on
    # elbo and "unchanged" on bits_per_dim. They are shown; compare checks the columns they rescale.
    import pandas as pd

    from aebench.plugins.listing import installed_vocabulary
    from aebench.views.compare import compare

    vocabulary = installed_vocabulary()
    rng = np.random.default_rng(0)
    base = -100.0 + rng.normal(0.0, 0.3, 8)
    rows = []
    for run, elbo in (("old", base), ("new", base - 1.0 + rng.normal(0.0, 0.05, 8))):
        for seed, value in enumerate(elbo):
            rows.append(
                {"run": run, "dataset": "mnist", "model": "vae", "regularizer": "none"}
                | {"seed": seed, "status": "ok", "start_digest": f"s{seed}", "elbo": value}
                | {"bits_per_dim": -value / (784 * math.log(2))}
            )
    table = pd.DataFrame(rows)
    new, old = (table[table["run"] == r].drop(columns="run") for r in ("new", "old"))
    verdicts = compare(new, old, vocabulary=vocabulary).rows.set_index("metric")["verdict"]
    assert verdicts.to_dict() == {"elbo": "regressed"}


class NotANumberCode(Shrink):
    """Shrink, the first input's code not a number."""

    def encode(self, x: Tensor) -> Tensor:
        code = x.flatten(1).clone()
        code[0, 0] = math.nan
        return code


def test_a_metric_that_cannot_measure_says_why_beside_its_nan(plugins) -> None:
    # The promise: a number that is not what its name says is NaN with a reason, never a bare NaN.
    bce = plugins.metrics.get("recon_bce").factory.measure(image_context(Shrink(), "real"))
    assert math.isnan(bce.values["recon_bce"]) and "real-valued" in bce.reason
    x = torch.rand(40, 4, generator=torch.Generator().manual_seed(0))
    labels = (x[:, 1] > 0.5).long()
    data = Data(
        DataInfo(shape=(4,), kind="unit", n_classes=2),
        train=Split(x, labels),
        test=Split(x, labels),
    )
    for name, split in (("kmeans", "test"), ("silhouette", "test"), ("knn_acc", "train")):
        found = plugins.metrics.get(name).factory.measure(make_context(NotANumberCode(), data))
        assert all(math.isnan(v) for v in found.values.values()), name
        assert found.reason == f"the codes of 1 of 40 {split} inputs are not numbers", name
    unlabelled = Data(DataInfo(shape=(4,), kind="unit"), train=Split(x), test=Split(x))
    found = plugins.metrics.get("probe_acc").factory.measure(make_context(Shrink(), unlabelled))
    assert math.isnan(found.values["probe_acc"]) and found.reason
