"""Importance-weighted variants (Rainforth et al. 2018, "Tighter variational bounds are not
necessarily better"): ``miwae``, ``ciwae`` and ``piwae``.

All three keep the VAE's networks and distributions (a diagonal-Gaussian q(z|x), p(z) = N(0, I))
and change only the training objective, built from the log-weights
log w = log p(x|z) + log p(z) - log q(z|x) of reparameterised draws z ~ q(z|x):

- IWAE(K) = log (1/K) sum_k w_k (Burda et al. 2015); IWAE(1) is the ELBO.
- MIWAE(M, K) = (1/M) sum_m IWAE_m(K): the mean of M independent K-sample bounds.
- CIWAE(beta) = beta * ELBO + (1 - beta) * IWAE(K), the ELBO the mean of the same K log-weights.
- PIWAE: the decoder ascends IWAE(M * K) and the encoder MIWAE(M, K), on the same M * K draws.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field
from torch import Tensor, nn
from torch.func import functional_call

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import LatentDim, LikelihoodName, Sigma, Widths
from aebench_plugins.models.vae import VAE

Count = Annotated[int, Field(ge=1)]


def miwae_bound(log_weights: Tensor, m: int) -> Tensor:
    """MIWAE(M, K) per input from log-weights (M * K, B): draws m*K .. m*K + K - 1 form bound m."""
    s, b = log_weights.shape
    k = s // m
    if k * m != s:
        raise ValueError(f"{s} draws cannot be split into {m} groups of equal size")
    groups = log_weights.view(m, k, b)
    return (groups.logsumexp(1) - math.log(k)).mean(0)


def ciwae_bound(log_weights: Tensor, beta: float) -> Tensor:
    """beta * ELBO + (1 - beta) * IWAE(K) per input, both from the same K log-weights (K, B)."""
    elbo = log_weights.mean(0)
    iwae = log_weights.logsumexp(0) - math.log(log_weights.shape[0])
    return beta * elbo + (1.0 - beta) * iwae


class _WeightedVAE(VAE):
    """The VAE's networks, drawing ``mc_samples`` codes per input; subclasses choose the bound."""

    annealed_weights = ()  # no KL term to warm up: the bounds weigh whole log-weights

    def log_weights(self, x: Tensor, out: ModelOutput) -> Tensor:
        """log p(x|z) + log p(z) - log q(z|x) of the draws in ``out``: (S, B)."""
        z = out.extras["z"]
        posterior = self._posterior_of(out.extras["mu"], out.extras["logvar"])
        log_likelihood = self._likelihood_of(out.extras["decoded"]).log_prob(x)
        return log_likelihood + self.prior().log_prob(z) - posterior.log_prob(z)


class _GroupedVAE(_WeightedVAE):
    """M groups of K draws per input: the parameters of MIWAE and PIWAE."""

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        m: Count = 2,
        k: Count = 5,
    ) -> None:
        super().__init__(info, latent_dim, hidden, likelihood, sigma, beta=1.0, mc_samples=m * k)
        self.m, self.k = m, k


@register_model("miwae")
class MIWAE(_GroupedVAE):
    """MIWAE (Rainforth et al. 2018): the mean of M importance-weighted bounds of K draws each.

    MIWAE(M, 1) is the ELBO with M draws, MIWAE(1, K) the IWAE bound. A latent-variable model
    with a Gaussian q(z|x) and N(0, I) prior: every likelihood metric applies (elbo, log_px_iwae,
    log_px_prior_mc, active_units); ``loss_terms`` reports the VAE's rate and distortion.
    """

    def bound(self, x: Tensor, out: ModelOutput) -> Tensor:
        """MIWAE(M, K) per input, (B,)."""
        return miwae_bound(self.log_weights(x, out), self.m)

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return -self.bound(x, out)


@register_model("ciwae")
class CIWAE(_WeightedVAE):
    """CIWAE (Rainforth et al. 2018): the convex combination beta * ELBO + (1 - beta) * IWAE(K).

    beta = 1 is the VAE's ELBO (with K draws), beta = 0 the IWAE bound. ``beta`` here is that
    mixing weight, not a KL weight, so it is not annealed. A latent-variable model with a Gaussian
    q(z|x) and N(0, I) prior: every likelihood metric applies.
    """

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        k: Count = 5,
        beta: Annotated[float, Field(ge=0, le=1)] = 0.5,
    ) -> None:
        super().__init__(info, latent_dim, hidden, likelihood, sigma, beta=beta, mc_samples=k)
        self.k = k

    def bound(self, x: Tensor, out: ModelOutput) -> Tensor:
        """CIWAE(beta) per input, (B,)."""
        return ciwae_bound(self.log_weights(x, out), self.beta)

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return -self.bound(x, out)


def _detached_parameters(module: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach() for name, p in module.named_parameters()}


@register_model("piwae")
class PIWAE(_GroupedVAE):
    """PIWAE (Rainforth et al. 2018): the decoder trained on IWAE(M*K), the encoder on MIWAE(M, K).

    One optimizer, two objectives routed to disjoint parameters on the same M * K draws: the
    encoder's term is scored through a copy of the decoder with detached parameters (gradients
    reach the encoder through z, none reach the decoder), the decoder's through detached draws and
    posterior parameters (gradients reach the decoder only). The loss's value is -IWAE(M*K), the
    decoder's bound on log p(x); the encoder's term adds gradients, not value. With K = 1 the
    encoder is trained on the ELBO. A latent-variable model with a Gaussian q(z|x) and N(0, I)
    prior: every likelihood metric applies.
    """

    def _routed_log_weights(self, x: Tensor, out: ModelOutput) -> tuple[Tensor, Tensor]:
        """(encoder's, decoder's) log-weights (M*K, B) of the same draws, each carrying gradients
        only to its own network."""
        z, mu, logvar = out.extras["z"], out.extras["mu"], out.extras["logvar"]
        prior = self.prior()
        # Encoder: the decoder's parameters are constants; z, mu and logvar carry gradients.
        lead = z.shape[:-1]
        frozen = functional_call(
            self.decoder, _detached_parameters(self.decoder), (z.reshape(-1, self.latent_dim),)
        ).view(*lead, *self.decoded_shape)
        encoder_log_w = (
            self._likelihood_of(frozen).log_prob(x)
            + prior.log_prob(z)
            - self._posterior_of(mu, logvar).log_prob(z)
        )
        # Decoder: the draws and q's parameters are constants; only the decoder carries gradients.
        z_fixed = z.detach()
        decoder_log_w = (
            self.likelihood(z_fixed).log_prob(x)
            + prior.log_prob(z_fixed)
            - self._posterior_of(mu.detach(), logvar.detach()).log_prob(z_fixed)
        )
        return encoder_log_w, decoder_log_w

    def objectives(self, x: Tensor, out: ModelOutput) -> tuple[Tensor, Tensor]:
        """(MIWAE(M, K) for the encoder, IWAE(M*K) for the decoder) per input, each (B,)."""
        encoder_log_w, decoder_log_w = self._routed_log_weights(x, out)
        return miwae_bound(encoder_log_w, self.m), miwae_bound(decoder_log_w, 1)

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        encoder_bound, decoder_bound = self.objectives(x, out)
        # Value: -IWAE(M*K). Gradient: both bounds, each reaching only its own parameters.
        return -(decoder_bound + (encoder_bound - encoder_bound.detach()))
