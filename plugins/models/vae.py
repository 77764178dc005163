"""Variational autoencoders (Kingma & Welling 2014): ``vae`` (MLP) and ``conv-vae``.

q(z|x) = N(mu(x), diag sigma^2(x)), p(z) = N(0, I), p(x|z) Bernoulli or Gaussian. The training loss
per sample is -(E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))): the expectation by ``mc_samples``
reparameterised draws, the KL in closed form.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.ae import Widths
from aebench_plugins.models.gaussian import kl_to_standard_normal, reparameterise
from aebench_plugins.models.networks import (
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    require_image,
)

# "auto": bernoulli for binary or [0, 1] data, gaussian for real data.
# "gaussian" keeps sigma fixed; "gaussian-learned" learns one shared sigma, starting at ``sigma``.
LikelihoodName = Literal["auto", "bernoulli", "gaussian", "gaussian-learned"]

MIN_LOG_SIGMA = math.log(1e-3)  # a learned sigma may not collapse to 0 (log-density to infinity)


def resolve_likelihood(model: str, name: str, info: DataInfo) -> str:
    """The likelihood to use for this data; a clear error for a Bernoulli on real data."""
    if name == "auto":
        return "gaussian" if info.kind == "real" else "bernoulli"
    if name == "bernoulli" and info.kind == "real":
        raise ValueError(
            f"{model}: likelihood 'bernoulli' needs data in [0, 1], but this dataset is"
            " real-valued; use likelihood = 'gaussian'"
        )
    return name


class GaussianVAE(nn.Module):
    """A VAE around any encoder (x -> 2 * latent_dim numbers) and decoder (z -> data-shaped)."""

    annealed_weights = ("beta",)  # [train] anneal = { beta = { epochs = N } }: KL warm-up

    code_range = None  # the code is a Gaussian sample: unbounded

    def __init__(
        self,
        info: DataInfo,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        name: str,
        latent_dim: int,
        likelihood: str,
        sigma: float,
        beta: float,
        mc_samples: int,
    ) -> None:
        super().__init__()
        self.info = info
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.likelihood_name = resolve_likelihood(name, likelihood, info)
        self.beta = beta
        self.mc_samples = mc_samples
        log_sigma = torch.tensor(math.log(sigma))
        if self.likelihood_name == "gaussian-learned":
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        self.register_buffer("_origin", torch.zeros(latent_dim))  # moves with the model

    # -- the three distributions -------------------------------------------------------------

    def prior(self) -> Distribution:
        return Independent(Normal(self._origin, torch.ones_like(self._origin)), 1)

    def _posterior_params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    @staticmethod
    def _posterior_of(mu: Tensor, logvar: Tensor) -> Distribution:
        return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)

    def posterior(self, x: Tensor) -> Distribution:
        return self._posterior_of(*self._posterior_params(x))

    def _decoded(self, z: Tensor) -> Tensor:
        """The decoder's output (logits or means) for z of any leading shape (..., latent)."""
        lead = z.shape[:-1]
        return self.decoder(z.reshape(-1, self.latent_dim)).view(*lead, *self.info.shape)

    def _likelihood_of(self, decoded: Tensor) -> Distribution:
        ndims = len(self.info.shape)
        if self.likelihood_name == "bernoulli":
            # No support check: data in [0, 1] (not only {0, 1}) is scored by the same formula.
            base = Bernoulli(logits=decoded, validate_args=False)
            return Independent(base, ndims, validate_args=False)
        sigma = self.log_sigma.clamp(min=MIN_LOG_SIGMA).exp().expand_as(decoded)
        return Independent(Normal(decoded, sigma), ndims)

    def likelihood(self, z: Tensor) -> Distribution:
        return self._likelihood_of(self._decoded(z))

    # -- the autoencoder contract ------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        return self._posterior_params(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return self.likelihood(z).mean

    def forward(self, x: Tensor) -> ModelOutput:
        mu, logvar = self._posterior_params(x)
        z = reparameterise(mu, logvar, self.mc_samples)  # (S, B, latent)
        decoded = self._decoded(z)
        recon = self._likelihood_of(decoded[0]).mean
        return ModelOutput(
            code=z[0],
            recon=recon,
            hidden=mu,  # sparsity penalties act on the deterministic code, not on the noise
            extras={"mu": mu, "logvar": logvar, "z": z, "decoded": decoded},
        )

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        terms = self.loss_terms(x, out)
        return terms["distortion"] + self.beta * terms["rate"]

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        """Per sample: ``rate`` = KL(q(z|x) || p(z)), ``distortion`` = -E_q log p(x|z)."""
        log_likelihood = self._likelihood_of(out.extras["decoded"]).log_prob(x).mean(0)
        kl = kl_to_standard_normal(out.extras["mu"], out.extras["logvar"])
        return {"rate": kl, "distortion": -log_likelihood}


LatentDim = Annotated[int, Field(ge=1)]
Sigma = Annotated[float, Field(gt=0)]
Beta = Annotated[float, Field(ge=0)]
Samples = Annotated[int, Field(ge=1)]


class VAE(GaussianVAE):
    """Variational autoencoder with MLP encoder and decoder; loss -(E_q log p(x|z) - beta KL)."""

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        mc_samples: Samples = 1,
    ) -> None:
        super().__init__(
            info,
            MLPEncoder(info.shape, hidden, 2 * latent_dim),
            MLPDecoder(latent_dim, list(reversed(hidden)), info.shape),
            name="vae",
            latent_dim=latent_dim,
            likelihood=likelihood,
            sigma=sigma,
            beta=beta,
            mc_samples=mc_samples,
        )


class ConvVAE(GaussianVAE):
    """Variational autoencoder with convolutional encoder and decoder, for (C, H, W) images."""

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        channels: Annotated[Widths, Field(min_length=1)] = (32, 64),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        mc_samples: Samples = 1,
    ) -> None:
        shape = require_image("conv-vae", info.shape)
        encoder = ConvEncoder(shape, channels, 2 * latent_dim)
        super().__init__(
            info,
            encoder,
            ConvDecoder(latent_dim, encoder, shape[0]),
            name="conv-vae",
            latent_dim=latent_dim,
            likelihood=likelihood,
            sigma=sigma,
            beta=beta,
            mc_samples=mc_samples,
        )
