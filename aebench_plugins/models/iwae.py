"""The importance-weighted autoencoder (Burda, Grosse & Salakhutdinov 2015).

The VAE's networks and distributions, trained on the k-sample bound
L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)], z_i ~ q(z|x); L_1 is the ELBO, L_k rises to log p(x).
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field
from torch import Tensor

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.networks import Activation, Init
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import LatentDim, LikelihoodName, Sigma, Widths
from aebench_plugins.models.vae import VAE, OutputBias


def importance_weighted_bound(
    log_likelihood: Tensor, log_prior: Tensor, log_posterior: Tensor
) -> Tensor:
    """log (1/k) sum_i w_i with log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x); dim 0 is i."""
    log_weights = log_likelihood + log_prior - log_posterior
    return log_weights.logsumexp(0) - math.log(log_weights.shape[0])


@register_model("iwae")
class IWAE(VAE):
    """Importance-weighted autoencoder: the VAE's networks, trained on the k-sample bound."""

    annealed_weights = ()  # its bound has no KL term to weigh

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        k: Annotated[int, Field(ge=1)] = 5,
        activation: Activation = "relu",
        output_bias: OutputBias = "default",
        init: Init = "default",
    ) -> None:
        super().__init__(
            info,
            latent_dim,
            hidden,
            likelihood,
            sigma,
            beta=1.0,
            mc_samples=k,
            activation=activation,
            output_bias=output_bias,
            init=init,
        )
        self.k = k

    def bound(self, x: Tensor, out: ModelOutput) -> Tensor:
        """The importance-weighted bound per sample, (B,), from the k draws in ``out``."""
        z = out.extras["z"]  # (k, B, latent)
        mu, logvar = out.extras["mu"], out.extras["logvar"]
        posterior = self._posterior_of(mu, logvar)
        return importance_weighted_bound(
            self._likelihood_of(out.extras["decoded"]).log_prob(x),
            self.prior().log_prob(z),
            posterior.log_prob(z),
        )

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return -self.bound(x, out)
