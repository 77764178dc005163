"""Likelihood metrics of latent-variable models: ELBO and its terms, log p(x), active units.

The estimators are the core's public ``aebench.likelihood``; these plugins take their number of
samples as a parameter, seed the sampling, and average over the test split. They declare that they
need a latent-variable model: the core gives any other model NaN without calling them.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from aebench import MetricContext
from aebench import likelihood as estimators

Samples = Annotated[int, Field(ge=1)]


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


def log_px_iwae(context: MetricContext, samples: Samples = 1000) -> dict[str, float]:
    """Importance-weighted log p(x), plus log_px_iwae_se (latent-variable models; else NaN).

    The importance-weighted estimate of log p(x) in nats, ``log (1/K) sum_k p(x, z_k)/q(z_k|x)``
    with z_k ~ q(z|x) and K = ``samples`` (``[eval.log_px_iwae] samples``; alias
    ``eval.iwae_samples``), averaged over the test split; ``_se`` is its standard error over the
    test samples.
    """
    with estimators.seeded(context.generator):
        values = estimators.iwae_bound(context.model, context.data.test.x, samples)
    return {
        "log_px_iwae": values.mean().item(),
        "log_px_iwae_se": estimators.standard_error(values),
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


def active_units(context: MetricContext) -> dict[str, float]:
    """Active latent units (latent-variable models only; else NaN).

    The number of latent dimensions d whose posterior mean E_q[z_d] has a variance above 0.01
    over the test split.
    """
    means = estimators.posterior_means(context.model, context.data.test.x)
    return {"active_units": float(estimators.count_active_units(means))}
