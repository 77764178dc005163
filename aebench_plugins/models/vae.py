"""Variational autoencoders (Kingma & Welling 2014): ``vae`` (MLP) and ``conv-vae``.

q(z|x) = N(mu(x), diag sigma^2(x)), p(z) = N(0, I), p(x|z) one of the likelihoods of
``likelihoods.py``, chosen to be a density (or mass function) of the data. The training loss per
sample is -(E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))): the expectation by ``mc_samples``
reparameterised draws, the KL in closed form.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from aebench import DataInfo, ModelOutput
from aebench_plugins.models import likelihoods
from aebench_plugins.models.architectures import (
    CONV_CHANNELS,
    Networks,
    conv_networks,
    mlp_networks,
)
from aebench_plugins.models.gaussian import kl_to_standard_normal, reparameterise
from aebench_plugins.models.networks import Activation, Init, MLPDecoder
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import (
    Beta,
    Channels,
    LatentDim,
    LikelihoodName,
    Samples,
    Sigma,
    Widths,
)

MIN_LOG_SIGMA = likelihoods.MIN_LOG_SIGMA

# The decoder's output bias: torch's default initialisation, or "data-mean": the logit of the mean
# training pixel, clipped to [MEAN_CLIP, 1 - MEAN_CLIP] (Burda et al. 2015; MNIST's border pixels
# are always 0), set by ``fit_before_training``. Bernoulli likelihood and MLP decoders only.
OutputBias = Literal["default", "data-mean"]
MEAN_CLIP = 1e-3


def resolve_likelihood(model: str, name: str, info: DataInfo) -> tuple[str, int | None]:
    """The likelihood to use for this data and, for the discretized logistic, its levels.

    A clear error where the choice cannot describe the data: a likelihood on [0, 1] for real
    data, a discretized logistic for unit data whose levels are unknown.
    """
    if name == "auto":
        if info.kind == "binary":
            return "bernoulli", None
        if info.kind == "unit":
            if info.levels is not None:
                return "discretized-logistic", info.levels
            return "continuous-bernoulli", None
        return "gaussian-learned", None
    if name in ("bernoulli", "continuous-bernoulli", "discretized-logistic") and (
        info.kind == "real"
    ):
        raise ValueError(
            f"{model}: likelihood {name!r} needs data in [0, 1], but this dataset is"
            " real-valued; use likelihood = 'gaussian' or 'gaussian-learned'"
        )
    if name == "discretized-logistic":
        if info.kind == "binary":
            return name, 2
        if info.levels is None:
            raise ValueError(
                f"{model}: likelihood 'discretized-logistic' needs unit data on a grid of known"
                " levels (DataInfo.levels), but this dataset's levels are unknown; use"
                " likelihood = 'continuous-bernoulli' (or 'auto')"
            )
        return name, info.levels
    return name, None


# Likelihoods whose decoder gives a location and a log scale per data element.
TWO_NUMBERS_PER_ELEMENT = ("discretized-logistic", "gaussian-learned")


def decoder_shape(model: str, likelihood: str, info: DataInfo) -> tuple[int, ...]:
    """The decoder's output shape: the data's, its first dimension doubled for a likelihood with
    two numbers per element (a location and a log scale)."""
    if resolve_likelihood(model, likelihood, info)[0] in TWO_NUMBERS_PER_ELEMENT:
        return (2 * info.shape[0], *info.shape[1:])
    return tuple(info.shape)


class GaussianVAE(nn.Module):
    """A VAE around any encoder (x -> 2 * latent_dim numbers) and decoder (z -> data-shaped)."""

    annealed_weights = ("beta",)  # [train] anneal = { beta = { epochs = N } }: KL warm-up
    code_range = None  # the code is a Gaussian sample: unbounded
    model_name: ClassVar[str]  # a registered model's name (``register_model`` gives it)

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
        output_bias: OutputBias = "default",
    ) -> None:
        super().__init__()
        self.info = info
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.likelihood_kind, self.levels = resolve_likelihood(name, likelihood, info)
        # written into every results row: the discretized logistic's name carries its levels
        self.likelihood_name = self.likelihood_kind + (
            f"-{self.levels}" if self.levels is not None else ""
        )
        self.decoded_shape = decoder_shape(name, likelihood, info)
        if output_bias == "data-mean" and (
            self.likelihood_kind != "bernoulli" or not isinstance(decoder, MLPDecoder)
        ):
            raise ValueError(
                f"{name}: output_bias = 'data-mean' sets the logits of a Bernoulli likelihood from"
                f" an MLP decoder; this model's likelihood is {self.likelihood_kind!r}"
            )
        self.output_bias = output_bias
        self.beta = beta
        self.mc_samples = mc_samples
        # fixed sigma ("gaussian"), or the scale the decoder's log sigma is relative to
        self.register_buffer("log_sigma", torch.tensor(sigma).log())
        self.register_buffer("_origin", torch.zeros(latent_dim))  # moves with the model

    @torch.no_grad()
    def fit_before_training(self, x: Tensor) -> None:
        """With ``output_bias = "data-mean"``, the decoder's output bias becomes the logit of the
        mean training pixel (clipped), so that training starts from the data's marginal.

        The core calls it once before training with the stored training inputs: under dynamic
        binarisation their grey levels, whose mean is the mean of the binary draws."""
        if self.output_bias != "data-mean":
            return
        mean = x.float().mean(0).clamp(MEAN_CLIP, 1 - MEAN_CLIP)
        output = self.decoder.net[-1]  # an MLPDecoder's last Linear: one logit per pixel
        output.bias.copy_(torch.logit(mean).flatten())

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
        """The decoder's output (logits, means, or location and log scale) for z of any leading
        shape (..., latent)."""
        lead = z.shape[:-1]
        return self.decoder(z.reshape(-1, self.latent_dim)).view(*lead, *self.decoded_shape)

    def _likelihood_of(self, decoded: Tensor) -> Distribution:
        ndims = len(self.info.shape)
        kind = self.likelihood_kind
        if kind == "bernoulli":
            # No support check in log_prob: data in [0, 1] (not only {0, 1}) is scored by the
            # same formula; ``support.check`` still tells the core that it is not a likelihood.
            return likelihoods.bernoulli(decoded, ndims)
        if kind == "gaussian-learned":
            loc, log_scale = decoded.chunk(2, dim=-ndims)
            return likelihoods.gaussian(loc, self.log_sigma + log_scale, ndims)
        if kind == "gaussian":
            return likelihoods.gaussian(decoded, self.log_sigma, ndims)
        if kind == "continuous-bernoulli":
            base: Distribution = likelihoods.continuous_bernoulli(decoded)
        else:
            assert self.levels is not None
            base = likelihoods.discretized_logistic(decoded, self.levels, dim=-ndims)
        return Independent(base, ndims)

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
        return ModelOutput(
            code=z[0],
            recon=lambda: self._likelihood_of(decoded[0]).mean,  # read by metrics, not the loss
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


def vae_networks(
    networks: Networks,
    name: str,
    info: DataInfo,
    latent_dim: int,
    widths: Sequence[int],
    likelihood: str,
    extra_outputs: int = 0,
) -> dict[str, Any]:
    """A GaussianVAE's encoder (mean and log-variance: 2 * latent_dim numbers, then
    ``extra_outputs`` more, a flow's parameters) and decoder (the likelihood's parameters), with
    its name, latent size and likelihood: its keyword arguments."""
    out_shape = decoder_shape(name, likelihood, info)
    code_size = 2 * latent_dim + extra_outputs
    encoder, decoder = networks(name, info.shape, widths, code_size, latent_dim, out_shape)
    return {
        "encoder": encoder,
        "decoder": decoder,
        "name": name,
        "latent_dim": latent_dim,
        "likelihood": likelihood,
    }


class FamilyVAE(GaussianVAE):
    """A GaussianVAE on the networks its class names: the base of the families that have a conv
    variant (conv_variants.py), whose class says ``networks = conv_networks``."""

    networks: ClassVar[Networks] = staticmethod(mlp_networks)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: int,
        hidden: Sequence[int],
        likelihood: str,
        sigma: float,
        beta: float,
        mc_samples: int,
    ) -> None:
        super().__init__(
            info,
            **vae_networks(self.networks, self.model_name, info, latent_dim, hidden, likelihood),
            sigma=sigma,
            beta=beta,
            mc_samples=mc_samples,
        )


@register_model("vae")
class VAE(GaussianVAE):
    """Variational autoencoder with MLP encoder and decoder; loss -(E_q log p(x|z) - beta KL).

    ``activation``: the hidden layers' nonlinearity; ``output_bias = "data-mean"``: the decoder's
    output bias starts at logit(mean training pixel) (Bernoulli likelihood only); ``init =
    "glorot"``: Glorot-uniform weights and zero biases (Burda et al. 2015), else torch's default.
    """

    # Its seeds may train together as one stacked model ([train] stack = "auto"): its forward
    # pass and loss are vmap-able. A subclass that is not says ``stackable = False``.
    stackable: ClassVar[bool] = True
    # Each sample's loss is its own row's (no batch statistics): the stacked seeds train as one
    # batch, each Linear a batched GEMM (aebench.run.stacked_rows), not under vmap.
    independent_samples: ClassVar[bool] = True

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        mc_samples: Samples = 1,
        activation: Activation = "relu",
        output_bias: OutputBias = "default",
        init: Init = "default",
    ) -> None:
        networks = partial(mlp_networks, activation=activation, init=init)
        super().__init__(
            info,
            **vae_networks(networks, self.model_name, info, latent_dim, hidden, likelihood),
            sigma=sigma,
            beta=beta,
            mc_samples=mc_samples,
            output_bias=output_bias,
        )


@register_model("conv-vae")
class ConvVAE(FamilyVAE):
    """Variational autoencoder with convolutional encoder and decoder, for (C, H, W) images."""

    image_only = True  # needs (C, H, W) images
    networks: ClassVar[Networks] = staticmethod(conv_networks)

    # Spelled out, as every model's signature (schema.py): VAE's parameters but its MLP-only
    # ``activation`` and ``output_bias`` (the conv variants of conv_variants.py derive theirs).
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        channels: Channels = CONV_CHANNELS,
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        mc_samples: Samples = 1,
    ) -> None:
        super().__init__(info, latent_dim, channels, likelihood, sigma, beta, mc_samples)
