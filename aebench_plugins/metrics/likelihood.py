"""Likelihood metrics of latent-variable models: ELBO and its terms, log p(x), active units
(all layers together, and per layer of a hierarchy).

The estimators are the core's public ``aebench.likelihood``; these plugins take their number of
samples as a parameter, seed the sampling, and average over the test split. They declare that they
need a likelihood of the data (a latent-variable model whose p(x|z) holds the test data in its
support): the core gives any other model NaN, with the reason, without calling them.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from aebench import Measurement, MetricContext, NotApplicable, latent_layer_slices, quadrature
from aebench import likelihood as estimators

Samples = Annotated[int, Field(ge=1)]
Tolerance = Annotated[float, Field(gt=0, lt=1)]
Inputs = Annotated[int, Field(ge=0)]  # 0: all of them


def elbo(context: MetricContext, samples: Samples = 1) -> dict[str, float]:
    """ELBO in nats, plus columns rate, distortion, bits_per_dim (latent-variable models; else NaN).

    Per test sample, in nats: ``elbo = E_q[log p(x|z)] - KL(q(z|x) || p(z))`` with E_q from
    ``samples`` draws (``[eval.elbo] samples``; alias ``eval.elbo_samples``); ``rate`` is the KL
    (analytic where torch.distributions has it, else Monte Carlo), ``distortion`` is
    ``-E_q[log p(x|z)]``; ``bits_per_dim`` is ``-elbo`` in bits per data dimension (an upper
    bound on the model's bits per dimension).
    """
    names = ("elbo", "rate", "distortion", "bits_per_dim")
    x = context.data.test.x
    with estimators.seeded(context.generator):
        terms = estimators.elbo_terms(context.model, x, samples)
    n_dims = math.prod(x.shape[1:])
    values = (
        terms.bound,
        terms.rate,
        terms.distortion,
        estimators.to_bits_per_dim(terms.bound, n_dims),
    )
    return {name: v.mean().item() for name, v in zip(names, values, strict=True)}


PRECISION_CHECK_INPUTS = 100  # inputs whose bf16 estimate is compared with fp32's


def log_px_iwae(
    context: MetricContext, samples: Samples = 1000, precision: estimators.Precision = "fp32"
) -> Measurement:
    """Importance-weighted log p(x), its errors and diagnostics (latent-variable models; else NaN).

    ``log_px_iwae``: ``log (1/K) sum_k p(x, z_k)/q(z_k|x)`` with z_k ~ q(z|x) and K = ``samples``
    (``[eval.log_px_iwae] samples``; alias ``eval.iwae_samples``), in nats, averaged over the test
    split. Its errors, named apart: ``_test_se`` is the spread over test inputs (what another test
    set would change), ``_mc_se`` the Monte-Carlo error (what other draws would change; the
    delta method on each input's mean weight, from all K draws). ``_ess_mean`` and ``_ess_min``: the
    effective sample size (sum w)^2 / sum w^2 of the K weights, mean and worst over inputs.
    ``_convergence``: the estimate at K minus at K/10 (from the same draws); where it is large, K
    was too small. ``log_px_true_gap``: ``log_px_true - log_px_iwae`` where the data's density is
    known.

    ``precision = "bf16"`` (alias ``eval.precision``) runs the decoder passes in bfloat16, faster
    where the hardware has bf16 matmuls; ``log_px_iwae_precision_error`` is then the mean absolute
    difference, in nats per input, from the fp32 estimate with the same draws on the first 100
    test inputs (NaN in fp32, where there is nothing to compare).
    """
    x = context.data.test.x
    with estimators.seeded(context.generator):
        sampled = estimators.importance_sampling(context.model, x, samples, precision=precision)
    values = sampled.bound
    ess = sampled.effective_sample_size
    gap, error, reasons = math.nan, math.nan, {}
    if context.data.log_density is not None:
        gap = (context.data.log_density(x).double() - values).mean().item()
    else:
        reasons["log_px_true_gap"] = "the data's true density is not known"
    if precision == "fp32":
        reasons["log_px_iwae_precision_error"] = "measured in fp32: no other precision to compare"
    else:
        checked = x[:PRECISION_CHECK_INPUTS]
        by_precision = {}
        for each in (precision, "fp32"):
            with estimators.seeded(context.generator):  # the same draws in both
                by_precision[each] = estimators.iwae_bound(
                    context.model, checked, samples, precision=each
                )
        error = (by_precision[precision] - by_precision["fp32"]).abs().mean().item()
    measured = {
        "log_px_iwae": values.mean().item(),
        "log_px_iwae_test_se": estimators.standard_error(values),
        "log_px_iwae_mc_se": estimators.monte_carlo_error(sampled.mc_variance),
        "log_px_iwae_ess_mean": ess.mean().item(),
        "log_px_iwae_ess_min": ess.min().item(),
        "log_px_iwae_convergence": sampled.convergence.mean().item(),
        "log_px_true_gap": gap,
        "log_px_iwae_precision_error": error,
    }
    return Measurement(measured, reasons=reasons)


def log_px_true(context: MetricContext) -> dict[str, float]:
    """The data's exact log-density, averaged over the test split (data with a known density).

    A property of the data, not of the model: the reference that ``log_px_iwae`` and
    ``log_px_exact`` are read against (their gap to it estimates KL(p_data || p_model)).
    """
    x = context.data.test.x
    return {"log_px_true": context.data.log_density(x).double().mean().item()}


def log_px_exact(
    context: MetricContext,
    tolerance: Tolerance = 1e-6,
    inputs: Inputs = 100,
    samples: Samples = 1000,
) -> dict[str, float]:
    """Exact log p(x) by quadrature (latent-variable models, latents of at most 2 dims; else NaN).

    ``log p(x) = log integral p(x|z) p(z) dz`` for each of the first ``inputs`` test inputs (all
    of them for 0), by adaptive Gauss-Legendre cubature over the prior's box mean +- 7 sd
    (``aebench.quadrature``) to a relative ``tolerance``; ``log_px_exact`` is their mean in nats,
    ``log_px_exact_error`` the estimated quadrature error of that mean, ``log_px_exact_inputs``
    their number. Quadrature costs thousands of decoder passes per input, hence the subset; the
    paired ``log_px_exact_iwae_gap`` = mean of log p(x) minus the IWAE estimate at K = ``samples``
    (alias ``eval.iwae_samples``) on the same inputs is the IWAE estimate's bias, which a mean over
    another set of inputs could not show.
    """
    x = context.data.test.x[:inputs] if inputs else context.data.test.x
    try:
        result = quadrature.exact_log_px(context.model, x, tolerance=tolerance)
    except ValueError as exc:  # too many latent dimensions, a prior with no box
        raise NotApplicable(str(exc)) from None
    with estimators.seeded(context.generator):
        iwae = estimators.iwae_bound(context.model, x, samples)
    return {
        "log_px_exact": result.log_px.mean().item(),
        "log_px_exact_error": result.error.mean().item(),
        "log_px_exact_inputs": float(len(x)),
        "log_px_exact_iwae_gap": (result.log_px - iwae).mean().item(),
    }


def log_px_prior_mc(context: MetricContext, samples: Samples = 1000) -> dict[str, float]:
    """Naive log p(x) from K prior samples (latent-variable models only; else NaN).

    ``log (1/K) sum_k p(x|z_k)`` with z_k ~ p(z) and K = ``samples`` (alias ``eval.iwae_samples``),
    in nats, averaged over the test split: the estimator that the importance-weighted one improves
    on.
    """
    with estimators.seeded(context.generator):
        values = estimators.prior_mc_estimate(context.model, context.data.test.x, samples)
    return {"log_px_prior_mc": values.mean().item()}


# Draws per input for a posterior mean with no closed form (a hierarchy's upper layers, a flow).
MEAN_SAMPLES = 100
MeanSamples = Annotated[int, Field(ge=2)]  # two at least: their spread corrects the estimate
EVAL_BATCH = 256


def posterior_mean_variance(model: nn.Module, x: Tensor, samples: int) -> Tensor:
    """Var_x(E_q[z_d | x]) over the inputs ``x``, per latent dimension d: (latent,), float64.

    E_q[z|x] is the posterior's ``mean`` where it has a closed form. Elsewhere it is the mean of
    ``samples`` draws, whose Monte-Carlo error would add E_x[Var_q(z_d|x)] / S to the variance
    over inputs: that is subtracted, estimated from the draws' own spread, so the result is
    unbiased. With N inputs, E[(1/N) sum_i (m^_i - mean m^)^2] = Var_x(m) + (N-1)/N * mean_i v_i/S
    (v_i the posterior variance of input i, estimated by the draws' unbiased variance).
    """
    means, mc_variances = [], []
    for xb in x.split(EVAL_BATCH):
        posterior = model.posterior(xb)
        try:
            mean = posterior.mean
            mc_variance = torch.zeros_like(mean)
        except NotImplementedError:
            draws = posterior.sample((samples,))  # (S, B, latent)
            mean = draws.mean(0)
            mc_variance = draws.double().var(0) / samples  # of each input's mean of S draws
        means.append(mean.double())
        mc_variances.append(mc_variance.double())
    mean, mc_variance = torch.cat(means), torch.cat(mc_variances)
    n = len(mean)
    return mean.var(0, unbiased=False) - (n - 1) / n * mc_variance.mean(0)


SplitName = Literal["test", "train"]


def _measured_inputs(context: MetricContext, split: SplitName, inputs: int) -> Tensor:
    """The inputs active units are counted on: the split's first ``inputs`` (0: all of them)."""
    x = context.data.train.x if split == "train" else context.data.test.x
    return x[:inputs] if inputs else x


def _active_per_dimension(
    context: MetricContext, samples: int, split: SplitName, inputs: int, binarize: bool = False
) -> Tensor:
    """Whether each latent dimension is active: Var_x(E_q[z_d|x]) > 0.01 over the inputs.

    ``binarize``: each input's pixels are first drawn as Bernoulli(grey level), seeded, as the
    code of Burda et al. (2015) counts on a dynamic binarisation of its 500 training images (the
    grey levels' own posterior means vary less than those of binary draws)."""
    x = _measured_inputs(context, split, inputs)
    if binarize and context.data.info.kind == "real":
        raise NotApplicable("binarize draws pixels as Bernoulli(x): it needs data in [0, 1]")
    with estimators.seeded(context.generator):
        if binarize:
            x = torch.bernoulli(x.float())
        variance = posterior_mean_variance(context.model, x, samples)
    return variance > estimators.ACTIVE_UNIT_THRESHOLD


# Spelled out, as a metric's signature is its schema (the same in active_units_by_layer)
def active_units(
    context: MetricContext,
    samples: MeanSamples = MEAN_SAMPLES,
    split: SplitName = "test",
    inputs: Inputs = 0,
    binarize: bool = False,
) -> dict[str, float]:
    """Active latent units, all layers together (latent-variable models only; else NaN).

    The number of latent dimensions d whose posterior mean E_q[z_d|x] has a variance above 0.01
    over the ``split``'s first ``inputs`` inputs (all for 0; Burda et al. 2015 count them on 500
    training images: ``split = "train"``, ``inputs = 500``). Where the posterior's mean has no
    closed form (a flow, a hierarchy's upper layer) it is estimated from ``samples`` draws per
    input (``[eval.active_units] samples``), the draws' own error taken out of the variance.
    ``binarize = true`` counts on a seeded Bernoulli draw of each input's pixels instead of its
    grey levels, as the paper's code does (data in [0, 1] only; else NaN).
    """
    active = _active_per_dimension(context, samples, split, inputs, binarize)
    return {"active_units": float(active.sum())}


# Spelled out, as a metric's signature is its schema (the same in active_units)
def active_units_by_layer(
    context: MetricContext,
    samples: MeanSamples = MEAN_SAMPLES,
    split: SplitName = "test",
    inputs: Inputs = 0,
    binarize: bool = False,
) -> dict[str, float]:
    """Active units of the first and second latent layer (hierarchies: latent_layers; else NaN).

    As ``active_units`` (the same parameters), counted within each layer the model declares
    (``latent_layers``): ``active_units_layer1`` in the layer nearest the data (z1),
    ``active_units_layer2`` in the next (z2), as Burda et al. (2015) report them per layer. A
    model of one layer has none: NaN, with the reason. Layers above the second count in
    ``active_units`` only.
    """
    x = context.data.test.x
    code_size = context.model.posterior(x[:1]).event_shape[-1]
    layers = list(latent_layer_slices(context.model, code_size).values())
    if len(layers) < 2:
        raise NotApplicable("the model has one latent layer (it declares no latent_layers)")
    active = _active_per_dimension(context, samples, split, inputs, binarize)
    return {
        "active_units_layer1": float(active[layers[0]].sum()),
        "active_units_layer2": float(active[layers[1]].sum()),
    }
