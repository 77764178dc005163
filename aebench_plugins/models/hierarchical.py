"""VAE and IWAE with two stochastic layers (Burda, Grosse & Salakhutdinov 2015, section 5):
``vae-2layer`` and ``iwae-2layer``.

Generative model p(z2) p(z1|z2) p(x|z1), inference model q(z1|x) q(z2|z1), every conditional a
diagonal Gaussian whose parameters an MLP gives. The hierarchy travels in the flat contract as one
code z = (z1, z2) of ``latent_dim`` numbers: ``prior()`` and ``posterior(x)`` are distributions
over that concatenation, with exact ``log_prob`` (the product of the layers' densities) and
reparameterised samples, so the estimators' importance sampling and Monte-Carlo KL apply
unchanged; ``likelihood(z)`` reads z1 only. The model declares the hierarchy,
``latent_layers = {"z1": ..., "z2": ...}``, so that metrics can tell the layers apart (active
units per layer; the latent-space metrics read z1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.distributions import Distribution, Normal, constraints

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.architectures import mlp_networks
from aebench_plugins.models.networks import Activation, Init, mlp
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import Beta, LikelihoodName, Samples, Sigma, Widths
from aebench_plugins.models.vae import GaussianVAE, OutputBias
from aebench_plugins.models.vae import decoder_shape as data_decoder_shape

_NO_SAMPLES = torch.Size()
GaussianLayer = Callable[[Tensor], tuple[Tensor, Tensor]]  # condition -> (mean, std)


class TwoLayerGaussian(Distribution):
    """p(a) p(b|a) over the concatenation of (a, b) in a given order, both diagonal Gaussians.

    ``first`` gives the mean and std of a (broadcast to the batch); ``second`` those of b from a.
    ``a_first`` says whether a comes first in the concatenated vector.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        first: tuple[Tensor, Tensor],
        second: GaussianLayer,
        total_dim: int,
        batch_shape: torch.Size,
        a_first: bool,
    ) -> None:
        self.first, self.second, self.a_first = first, second, a_first
        self.a_dim = first[0].shape[-1]
        super().__init__(batch_shape, torch.Size([total_dim]), validate_args=False)

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.a_first:
            return z[..., : self.a_dim], z[..., self.a_dim :]
        b_dim = z.shape[-1] - self.a_dim
        return z[..., b_dim:], z[..., :b_dim]

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([a, b] if self.a_first else [b, a], dim=-1)

    def rsample(self, sample_shape: torch.Size = _NO_SAMPLES) -> Tensor:
        mean, std = self.first
        shape = torch.Size(sample_shape) + self.batch_shape + torch.Size([self.a_dim])
        a = mean + std * torch.randn(shape, dtype=mean.dtype, device=mean.device)
        b_mean, b_std = self.second(a)
        b = b_mean + b_std * torch.randn_like(b_mean)
        return self._join(a, b)

    def sample(self, sample_shape: torch.Size = _NO_SAMPLES) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        a, b = self._split(value)
        b_mean, b_std = self.second(a)
        log_a = Normal(*self.first).log_prob(a).sum(-1)
        return log_a + Normal(b_mean, b_std).log_prob(b).sum(-1)


class _GaussianHead(nn.Module):
    """An MLP (in -> hidden -> 2 * out) read as a diagonal Gaussian's mean and std."""

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        out_dim: int,
        activation: Activation = "relu",
        init: Init = "default",
    ) -> None:
        super().__init__()
        self.net = mlp([in_dim, *hidden, 2 * out_dim], activation, init)

    def forward(self, condition: Tensor) -> tuple[Tensor, Tensor]:
        mean, logvar = self.net(condition).chunk(2, dim=-1)
        return mean, torch.exp(0.5 * logvar)


LatentDim2 = Annotated[int, Field(ge=2)]
TopDim = Annotated[int, Field(ge=1)] | None


@register_model("vae-2layer")
class TwoLayerVAE(GaussianVAE):
    """VAE with two stochastic layers (Burda et al. 2015 architecture): z1 from x, z2 from z1.

    ``latent_dim`` counts both layers; ``top_dim`` of them are z2 (default a third, at least 1).
    ``hidden`` are the deterministic widths between x and z1, ``top_hidden`` between z1 and z2
    (the paper: 200-200 and 100-100, with z1 = 100, z2 = 50). The loss is the ELBO with a
    Monte-Carlo KL on ``mc_samples`` draws. A latent-variable model: every likelihood metric
    applies (elbo through a Monte-Carlo KL, log_px_iwae, log_px_prior_mc, active_units of both
    layers and active_units_by_layer of each); ``encode`` is (mu1(x), mean of
    q(z2 | z1 = mu1(x))), and the latent-space metrics read its z1.
    """

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim2 = 150,
        top_dim: TopDim = None,
        hidden: Widths = (200, 200),
        top_hidden: Widths = (100, 100),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        mc_samples: Samples = 1,
        activation: Activation = "relu",
        output_bias: OutputBias = "default",
        init: Init = "default",
    ) -> None:
        name = self.model_name
        top = max(1, latent_dim // 3) if top_dim is None else top_dim
        if top >= latent_dim:
            raise ValueError(f"{name}: top_dim ({top}) must be below latent_dim ({latent_dim})")
        bottom = latent_dim - top
        shape = data_decoder_shape(name, likelihood, info)
        super().__init__(
            info,
            *mlp_networks(name, info.shape, hidden, 2 * bottom, bottom, shape, activation, init),
            name=name,
            latent_dim=latent_dim,
            likelihood=likelihood,
            sigma=sigma,
            beta=beta,
            mc_samples=mc_samples,
            output_bias=output_bias,
        )
        self.bottom_dim, self.top_dim = bottom, top
        # the hierarchy in the flat code z = (z1, z2), the layer nearest the data first
        self.latent_layers = {"z1": bottom, "z2": top}
        self.q_top = _GaussianHead(bottom, list(top_hidden), top, activation, init)  # q(z2|z1)
        self.p_bottom = _GaussianHead(top, list(reversed(top_hidden)), bottom, activation, init)
        self.register_buffer("_top_origin", torch.zeros(top))

    # -- the three distributions over z = (z1, z2) ------------------------------------------

    def prior(self) -> Distribution:
        zeros = self._top_origin
        first = (zeros, torch.ones_like(zeros))
        return TwoLayerGaussian(first, self.p_bottom, self.latent_dim, torch.Size(), False)

    def _posterior_of_bottom(self, mu: Tensor, logvar: Tensor) -> Distribution:
        first = (mu, torch.exp(0.5 * logvar))
        return TwoLayerGaussian(first, self.q_top, self.latent_dim, mu.shape[:-1], True)

    def posterior(self, x: Tensor) -> Distribution:
        return self._posterior_of_bottom(*self._posterior_params(x))

    def _decoded(self, z: Tensor) -> Tensor:
        z1 = z[..., : self.bottom_dim]  # p(x|z1): the top layer reaches x through z1 only
        lead = z1.shape[:-1]
        return self.decoder(z1.reshape(-1, self.bottom_dim)).view(*lead, *self.decoded_shape)

    # -- the autoencoder contract ------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        mu, _ = self._posterior_params(x)
        return torch.cat([mu, self.q_top(mu)[0]], dim=-1)

    def forward(self, x: Tensor) -> ModelOutput:
        mu, logvar = self._posterior_params(x)
        q = self._posterior_of_bottom(mu, logvar)
        z = q.rsample(torch.Size([self.mc_samples]))  # (S, B, latent)
        decoded = self._decoded(z)
        return ModelOutput(
            code=z[0],
            recon=lambda: self._likelihood_of(decoded[0]).mean,
            hidden=torch.cat([mu, self.q_top(mu)[0]], dim=-1),
            extras={"mu": mu, "logvar": logvar, "z": z, "log_q": q.log_prob(z), "decoded": decoded},
        )

    def log_weights(self, x: Tensor, out: ModelOutput) -> Tensor:
        """log p(x|z1) + log p(z1, z2) - log q(z1, z2|x) of the draws in ``out``: (S, B)."""
        log_likelihood = self._likelihood_of(out.extras["decoded"]).log_prob(x)
        return log_likelihood + self.prior().log_prob(out.extras["z"]) - out.extras["log_q"]

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        """Per sample: ``rate`` = KL(q(z1, z2|x) || p(z1, z2)) by Monte Carlo on the forward
        pass's draws, ``distortion`` = -E_q log p(x|z1)."""
        log_likelihood = self._likelihood_of(out.extras["decoded"]).log_prob(x).mean(0)
        rate = (out.extras["log_q"] - self.prior().log_prob(out.extras["z"])).mean(0)
        return {"rate": rate, "distortion": -log_likelihood}


@register_model("iwae-2layer")
class TwoLayerIWAE(TwoLayerVAE):
    """IWAE with two stochastic layers (Burda et al. 2015): the two-layer VAE on the k-sample bound.

    The networks and distributions of ``vae-2layer``; the loss is -log (1/k) sum_i w_i with
    w_i = p(x|z1_i) p(z1_i|z2_i) p(z2_i) / (q(z1_i|x) q(z2_i|z1_i)). A latent-variable model:
    every likelihood metric applies.
    """

    annealed_weights = ()  # its bound has no KL term to weigh

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim2 = 150,
        top_dim: TopDim = None,
        hidden: Widths = (200, 200),
        top_hidden: Widths = (100, 100),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        k: Annotated[int, Field(ge=1)] = 5,
        activation: Activation = "relu",
        output_bias: OutputBias = "default",
        init: Init = "default",
    ) -> None:
        layers = (latent_dim, top_dim, hidden, top_hidden)
        # beta 1 (no KL term is weighed), k draws per input
        super().__init__(info, *layers, likelihood, sigma, 1.0, k, activation, output_bias, init)
        self.k = k

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        log_w = self.log_weights(x, out)
        return -(log_w.logsumexp(0) - math.log(len(log_w)))
