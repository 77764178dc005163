"""Likelihood metrics of latent-variable models: ELBO and its terms, log p(x), active units.

The estimators are the core's (``aebench.likelihood``); these plugins read the suite's [eval]
settings, seed the sampling, and average over the test split. A deterministic model gets NaN.
"""

from __future__ import annotations

import math

from aebench import LatentVariableModel, MetricContext
from aebench import likelihood as estimators

NAN = float("nan")
DEFAULT_IWAE_SAMPLES = 1000
DEFAULT_ELBO_SAMPLES = 1


def elbo(context: MetricContext) -> dict[str, float]:
    """ELBO in nats, plus columns rate, distortion, bits_per_dim (latent-variable models; else NaN).

    Per test sample, in nats: ``elbo = E_q[log p(x|z)] - KL(q(z|x) || p(z))`` with E_q from
    ``eval.elbo_samples`` draws; ``rate`` is the KL (analytic where torch.distributions has it,
    else Monte Carlo), ``distortion`` is ``-E_q[log p(x|z)]``; ``bits_per_dim`` is ``-elbo`` in
    bits per data dimension (an upper bound on the model's bits per dimension).
    """
    names = ("elbo", "rate", "distortion", "bits_per_dim")
    if not isinstance(context.model, LatentVariableModel):
        return dict.fromkeys(names, NAN)
    x = context.data.test.x
    n_samples = context.settings.get("elbo_samples", DEFAULT_ELBO_SAMPLES)
    with estimators.seeded(context.generator):
        terms = estimators.elbo_terms(context.model, x, n_samples)
    n_dims = math.prod(x.shape[1:])
    values = (terms.elbo, terms.rate, terms.distortion, estimators.bits_per_dim(terms.elbo, n_dims))
    return {name: v.mean().item() for name, v in zip(names, values, strict=True)}


def log_px_iwae(context: MetricContext) -> dict[str, float]:
    """Importance-weighted log p(x), plus log_px_iwae_se (latent-variable models; else NaN).

    The importance-weighted estimate of log p(x) in nats, ``log (1/K) sum_k p(x, z_k)/q(z_k|x)``
    with z_k ~ q(z|x) and K = ``eval.iwae_samples``, averaged over the test split; ``_se`` is
    its standard error over the test samples.
    """
    if not isinstance(context.model, LatentVariableModel):
        return {"log_px_iwae": NAN, "log_px_iwae_se": NAN}
    n_samples = context.settings.get("iwae_samples", DEFAULT_IWAE_SAMPLES)
    with estimators.seeded(context.generator):
        values = estimators.log_px_iwae(context.model, context.data.test.x, n_samples)
    return {
        "log_px_iwae": values.mean().item(),
        "log_px_iwae_se": estimators.standard_error(values),
    }


def log_px_prior_mc(context: MetricContext) -> dict[str, float]:
    """Naive log p(x) from K prior samples (latent-variable models only; else NaN).

    ``log (1/K) sum_k p(x|z_k)`` with z_k ~ p(z) and K = ``eval.iwae_samples``, in nats, averaged
    over the test split: the estimator that the importance-weighted one improves on.
    """
    if not isinstance(context.model, LatentVariableModel):
        return {"log_px_prior_mc": NAN}
    n_samples = context.settings.get("iwae_samples", DEFAULT_IWAE_SAMPLES)
    with estimators.seeded(context.generator):
        values = estimators.log_px_prior_mc(context.model, context.data.test.x, n_samples)
    return {"log_px_prior_mc": values.mean().item()}


def active_units(context: MetricContext) -> dict[str, float]:
    """Active latent units (latent-variable models only; else NaN).

    The number of latent dimensions d whose posterior mean E_q[z_d] has a variance above 0.01
    over the test split.
    """
    if not isinstance(context.model, LatentVariableModel):
        return {"active_units": NAN}
    means = estimators.posterior_means(context.model, context.data.test.x)
    return {"active_units": float(estimators.active_units(means))}
