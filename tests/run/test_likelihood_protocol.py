"""No non-density is reported as a likelihood: the support check, the reasons written beside NaN,
the protocol columns of a row, and exact references (log_px_true, log_px_exact) beside the
estimates."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
import torch
from builders import Entry, build_suite, entry

import aebench
from aebench import Column, Data, Metric, MetricContext, NotApplicable, Plugins
from aebench.contract.metric import likelihood_support_problem
from aebench.run.measure import PEAK_MEMORY_UNMEASURED, nan_reasons
from aebench.run.nan_reasons import parse_nan_reasons


def context_of(model: torch.nn.Module, data: Data) -> MetricContext:
    return MetricContext(
        model=model.eval(),
        data=data,
        settings={},
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )


def grey_and_binary_digits(plugins: Plugins) -> tuple[Data, Data]:
    digits = plugins.datasets.get("digits").factory
    return digits(), digits(binarize="static")


def test_a_bernoulli_on_grey_levels_gets_nan_likelihoods_and_says_why(plugins) -> None:
    grey, binary = grey_and_binary_digits(plugins)
    elbo = plugins.metrics.get("elbo").factory
    torch.manual_seed(0)
    model = plugins.models.get("vae").factory(grey.info, latent_dim=2, likelihood="bernoulli")
    with torch.no_grad():
        measured = elbo.measure(context_of(model, grey))
        assert all(math.isnan(v) for v in measured.values.values())
        assert "(bernoulli) is not a density of this data" in measured.reason
        # The same model on binarised digits: a mass function of the data, measured.
        on_binary = elbo.measure(context_of(model, binary))
    assert on_binary.reason == "" and math.isfinite(on_binary.values["elbo"])


@pytest.mark.parametrize("binarize", ["none", "static"])
def test_the_default_likelihood_holds_the_data_it_is_chosen_for(binarize: str, plugins) -> None:
    data = plugins.datasets.get("digits").factory(binarize=binarize)
    torch.manual_seed(0)
    model = plugins.models.get("vae").factory(data.info, latent_dim=2)
    with torch.no_grad():
        assert likelihood_support_problem(model, data.test.x) is None
        measured = plugins.metrics.get("elbo").factory.measure(context_of(model, data))
    assert measured.reason == "" and math.isfinite(measured.values["elbo"])


@pytest.mark.parametrize("likelihood", ["continuous-bernoulli", "gaussian"])
def test_a_density_on_discrete_data_gets_nan_likelihoods_and_says_why(likelihood, plugins) -> None:
    """Digits take 17 levels (and binarised, 2): a density there is not a likelihood of them.
    The same values, declared unquantised unit data, are a density's data: measured."""
    grey, binary = grey_and_binary_digits(plugins)
    unquantised = replace(grey, info=replace(grey.info, levels=None))
    elbo = plugins.metrics.get("elbo").factory
    torch.manual_seed(0)
    model = plugins.models.get("vae").factory(grey.info, latent_dim=2, likelihood=likelihood)
    with torch.no_grad():
        for data, values in ((grey, "17 levels"), (binary, "the values 0 and 1")):
            measured = elbo.measure(context_of(model, data))
            assert all(math.isnan(v) for v in measured.values.values())
            assert measured.reason == (
                f"a density on discrete data: p(x|z) ({model.likelihood_name}) is a density, the"
                f" data takes {values}: its log-density is not a log-likelihood of them (a mass"
                " function's is)"
            )
        measured = elbo.measure(context_of(model, unquantised))
    assert measured.reason == "" and math.isfinite(measured.values["elbo"])


def test_not_applicable_from_compute_is_nan_with_its_reason_not_a_failure(plugins) -> None:
    def picky(context: MetricContext) -> dict[str, float]:
        """Raises for every trial."""
        raise NotApplicable("only on Tuesdays")

    metric = Metric(picky, columns=[Column("picky_a"), Column("picky_b")])
    _, binary = grey_and_binary_digits(plugins)
    measured = metric.measure(context_of(torch.nn.Identity(), binary))
    assert measured.reason == "only on Tuesdays"
    assert set(measured.values) == {"picky_a", "picky_b"}
    assert all(math.isnan(v) for v in measured.values.values())
    assert math.isnan(metric(context_of(torch.nn.Identity(), binary))["picky_a"])


def test_log_px_true_needs_a_known_density_and_is_its_test_mean(plugins) -> None:
    log_px_true = plugins.metrics.get("log_px_true").factory
    ppca = plugins.datasets.get("ppca").factory(n_train=10, n_test=50)
    measured = log_px_true.measure(context_of(torch.nn.Identity(), ppca))
    expected = ppca.log_density(ppca.test.x).double().mean().item()
    assert measured.values["log_px_true"] == pytest.approx(expected, abs=1e-6)
    grey, _ = grey_and_binary_digits(plugins)
    unknown = log_px_true.measure(context_of(torch.nn.Identity(), grey))
    assert math.isnan(unknown.values["log_px_true"])
    assert unknown.reason == "the data's true density is not known"


def test_metrics_that_share_a_reason_share_its_entry() -> None:
    reasons = {"elbo": "not latent", "kmeans": "no labels", "log_px_iwae": "not latent"}
    assert nan_reasons(reasons) == "elbo, log_px_iwae: not latent; kmeans: no labels"
    assert nan_reasons({}) == ""


def densities_suite(
    datasets: list[Entry], models: list[Entry], metrics: list[str], **eval_params
) -> dict[str, Any]:
    """``models`` on ``datasets``, 8 epochs at a rate of 3e-3, measured by ``metrics``."""
    return build_suite(
        *models,
        name="densities",
        datasets=datasets,
        epochs=8,
        metrics=metrics,
        train={"lr": 3e-3},
        eval=eval_params,
    )


@pytest.fixture(scope="module")
def digits_rows(tmp_path_factory) -> dict[str, dict]:
    """An AE, a default VAE and a Bernoulli VAE on grey digits, with 2-D latents."""
    suite = densities_suite(
        [entry("digits")],
        [
            entry("ae", latent_dim=2, hidden=[64]),
            entry("vae", latent_dim=2, hidden=[64]),
            entry("vae", latent_dim=2, hidden=[64], likelihood="bernoulli"),
        ],
        ["elbo", "log_px_iwae", "log_px_exact", "active_units"],
        log_px_iwae={"samples": 500},
        log_px_exact={"inputs": 25, "samples": 500},
    )
    run = aebench.run_suite(suite, output=tmp_path_factory.mktemp("digits"), device="cpu")
    rows = {}
    for row in run.rows:
        key = row["model"] + ("-bernoulli" if row.get("model.likelihood") == "bernoulli" else "")
        rows[key] = row
    assert {row["status"] for row in run.rows} == {"ok"}
    return rows


@pytest.mark.slow  # a real run of three models, end to end
def test_rows_carry_their_likelihood_protocol(digits_rows) -> None:
    assert digits_rows["vae"]["likelihood"] == "discretized-logistic-17"
    assert digits_rows["vae-bernoulli"]["likelihood"] == "bernoulli"
    assert digits_rows["ae"]["likelihood"] == ""  # no p(x|z)
    assert {row["binarize"] for row in digits_rows.values()} == {"none"}
    # one test split, its digest in every row: what the report and compare compare within
    assert len({row["test_data"] for row in digits_rows.values()}) == 1


def test_only_densities_of_the_data_are_reported(digits_rows) -> None:
    vae, bernoulli, ae = digits_rows["vae"], digits_rows["vae-bernoulli"], digits_rows["ae"]
    for column in ("elbo", "bits_per_dim", "log_px_iwae", "log_px_exact"):
        assert math.isfinite(vae[column]), column
        assert math.isnan(bernoulli[column]) and math.isnan(ae[column]), column
    assert "elbo, log_px_iwae, log_px_exact: p(x|z) (bernoulli)" in bernoulli["nan_reasons"]
    assert "not a latent-variable model" in ae["nan_reasons"]
    # every metric measured: only the columns that cannot be on this data and this CPU are NaN
    assert parse_nan_reasons(vae["nan_reasons"], {*vae, "peak_mem_mb"}) == {
        "log_px_true_gap": "the data's true density is not known",
        "log_px_iwae_precision_error": "measured in fp32: no other precision to compare",
        "peak_mem_mb": PEAK_MEMORY_UNMEASURED,
    }
    # A mass function over 17 levels per pixel: at most 0 nats, at most log2(17) bits to beat.
    assert vae["log_px_exact"] < 0 and 0 < vae["bits_per_dim"] < math.log2(17)


def test_the_exact_log_px_is_above_the_iwae_estimate_on_the_same_inputs(digits_rows) -> None:
    vae = digits_rows["vae"]
    assert vae["log_px_exact_inputs"] == 25
    assert vae["log_px_exact_error"] < 1e-3
    # The IWAE estimate at K = 500 is below log p(x) in expectation; its Monte-Carlo error on 25
    # inputs is about sqrt(359 / 25) times that of the whole split.
    allowance = 3 * vae["log_px_iwae_mc_se"] * math.sqrt(359 / 25)
    assert -allowance <= vae["log_px_exact_iwae_gap"] < 1.0
    assert vae["elbo"] <= vae["log_px_iwae"] + 3 * vae["log_px_iwae_mc_se"]


@pytest.mark.slow  # an end-to-end run of 12-13 s
def test_on_a_trained_2d_vae_elbo_below_iwae_below_exact(tmp_path) -> None:
    """Every test input integrated, so the three are means over the same inputs."""
    suite = densities_suite(
        [entry("mixture2d", n_train=3000, n_test=150)],
        [entry("vae", latent_dim=2, hidden=[64])],
        ["elbo", "log_px_iwae", "log_px_exact", "log_px_true"],
        log_px_exact={"inputs": 0},
        elbo={"samples": 200},  # its Monte-Carlo error, 0.03 nats with one sample, to 0.002
    )
    suite["train"]["epochs"] = 30  # a posterior that has left the prior: the three differ
    (row,) = aebench.run_suite(suite, output=tmp_path / "exact", device="cpu").rows
    assert row["status"] == "ok" and row["log_px_exact_inputs"] == 150
    allowance = 3 * row["log_px_iwae_mc_se"]
    assert row["elbo"] < row["log_px_iwae"] - 0.02  # measured: -1.854 against -1.770
    assert row["log_px_iwae"] <= row["log_px_exact"] + allowance + row["log_px_exact_error"]
    assert row["log_px_exact_iwae_gap"] == pytest.approx(
        row["log_px_exact"] - row["log_px_iwae"], abs=1e-9
    )
    # The truth is known here: the model's distance to it is reported, and is no gain.
    assert row["log_px_true_gap"] == pytest.approx(row["log_px_true"] - row["log_px_iwae"])
    assert row["log_px_true"] >= row["log_px_exact"] - 3 * row["log_px_iwae_test_se"]


@pytest.mark.slow
def test_on_ppca_a_default_trained_vae_comes_within_0_3_nats_of_the_true_density(tmp_path) -> None:
    """Default training ([train] defaults) and default metric settings, on a VAE whose latent is
    the data's size (2): with the default 16 dimensions the gap was 0.52 nats (measured). Over
    draws of the data (ppca seeds 0, 1) and seeds 0-2 it was 0.21-0.39 nats, one seed 3.4 (stuck
    in a poorer optimum); here, ppca seed 0 and seed 0, 0.23 (test-set standard error 0.06)."""
    suite = build_suite(
        entry("vae", latent_dim=2),
        name="ppca",
        datasets=[entry("ppca")],
        epochs=None,  # the defaults
        batch_size=None,
        metrics=["log_px_iwae", "log_px_true"],
    )
    (row,) = aebench.run_suite(suite, output=tmp_path / "ppca", device="cpu").rows
    assert row["status"] == "ok" and row["likelihood"] == "gaussian-learned"
    assert 0 <= row["log_px_true_gap"] < 0.3, row["log_px_true_gap"]
    assert row["log_px_true_gap"] == pytest.approx(row["log_px_true"] - row["log_px_iwae"])
