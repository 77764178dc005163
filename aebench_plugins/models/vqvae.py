"""The vector-quantised autoencoder ``vq-vae`` (van den Oord et al. 2017), on MLPs (and on conv
networks as ``conv-vq-vae``).

The encoder gives ``groups`` vectors z_e of ``embedding_dim`` numbers; each is replaced by its
nearest entry e of a codebook of ``codebook_size`` vectors (shared by the groups), and the
decoder sees the concatenated e. The argmin has no gradient, so the decoder's gradient is copied
to the encoder (the straight-through estimator: z_q = z_e + sg[e - z_e]). Per sample:

    loss = reconstruction(x, D(z_q)) + ||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2

(the codebook loss moves the codes toward the encoder's outputs, the commitment loss keeps the
encoder close to its codes), summed over the groups.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torch import Size, Tensor, nn
from torch.distributions import Distribution

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.ae import reconstruction_loss
from aebench_plugins.models.architectures import Networks, mlp_networks
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import LatentDim, Widths


def nearest(z_e: Tensor, codebook: Tensor) -> Tensor:
    """The index of each vector's nearest code: (..., dim) and (K, dim) -> (...)."""
    flat = z_e.reshape(-1, z_e.shape[-1])
    # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2, without the (N, K, dim) difference tensor
    distances = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ codebook.T + codebook.pow(2).sum(-1)
    return distances.argmin(-1).view(z_e.shape[:-1])


def straight_through(z_e: Tensor, e: Tensor) -> Tensor:
    """e in the forward pass, the identity's gradient to z_e in the backward pass."""
    return z_e + (e - z_e).detach()


def vq_losses(z_e: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
    """(codebook, commitment) per sample, for (B, groups, dim) encoder outputs and their codes:
    ||sg[z_e] - e||^2 trains the codebook only, ||z_e - sg[e]||^2 the encoder only."""
    codebook = (z_e.detach() - e).pow(2).flatten(1).sum(1)
    commitment = (z_e - e.detach()).pow(2).flatten(1).sum(1)
    return codebook, commitment


class UniformCodes(Distribution):
    """Codes made of ``groups`` codebook entries, each drawn uniformly and independently: the
    prior for sampling. Event shape (groups * dim,); ``log_prob`` is -groups * log K on such a
    code and -inf off the codebook's grid."""

    arg_constraints: dict = {}

    def __init__(self, codebook: Tensor, groups: int) -> None:
        self.codebook, self.groups = codebook.detach(), groups
        super().__init__(Size(), Size((groups * codebook.shape[1],)), validate_args=False)

    def sample(self, sample_shape: Size | tuple[int, ...] = ()) -> Tensor:
        shape = (*sample_shape, self.groups)
        indices = torch.randint(len(self.codebook), shape, device=self.codebook.device)
        return self.codebook[indices].flatten(-2)

    def log_prob(self, value: Tensor) -> Tensor:
        vectors = value.unflatten(-1, (self.groups, self.codebook.shape[1]))
        on_grid = (self.codebook[nearest(vectors, self.codebook)] == vectors).all(-1).all(-1)
        mass = -self.groups * math.log(len(self.codebook))
        return torch.where(on_grid, mass, -math.inf).to(value.dtype)


@register_model("vq-vae")
class VQVAE(nn.Module):
    """VQ-VAE (van den Oord et al. 2017): codebook, straight-through; no ELBO, uniform prior.

    The code of ``latent_dim`` numbers is ``latent_dim / embedding_dim`` groups, each a codebook
    vector. ``embedding_dim`` is 1 by default, a codebook of scalars: on small MLPs the stablest
    (30 steps on a batch lowered the loss from every seed tried, where 4-number vectors in one or
    two groups raised it from some). The code ``encode(x)`` is the quantised one,
    so ``decode(encode(x))`` is the reconstruction. The loss (reconstruction: Bernoulli
    cross-entropy on [0, 1] data, half squared error on real) is not a bound on log p(x), so the
    likelihood metrics (``elbo``, ``log_px_iwae``) do not apply; reconstruction and code metrics
    do. ``prior()`` is the prior for sampling: uniform over the codebook, independently per group
    (the paper fits an autoregressive prior afterwards; this one is not fitted): its samples are
    codes for ``decode``; ``codes(indices)`` turns codebook indices (N, groups) into codes.
    """

    code_range = None
    model_name: ClassVar[str]  # a registered model's name (``register_model`` gives it)
    networks: ClassVar[Networks] = staticmethod(mlp_networks)  # conv-vq-vae: conv_networks

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        embedding_dim: Annotated[int, Field(ge=1)] = 1,
        codebook_size: Annotated[int, Field(ge=2)] = 32,
        hidden: Widths = (256, 128),
        beta: Annotated[float, Field(ge=0)] = 0.25,
    ) -> None:
        super().__init__()
        self.info = info
        if latent_dim % embedding_dim:
            raise ValueError(
                f"{self.model_name}: latent_dim {latent_dim} is not a multiple of"
                f" embedding_dim {embedding_dim}"
            )
        self.groups = latent_dim // embedding_dim
        self.embedding_dim, self.beta = embedding_dim, beta
        self.encoder, self.decoder = self.networks(
            self.model_name, info.shape, hidden, latent_dim, latent_dim, info.shape
        )
        # N(0, 1), nn.Embedding's default: spread over the encoder's first outputs, so that many
        # codes are in use from the start (sonnet's +-1/K puts every output on one code at first,
        # and the loss then rose over 30 steps on a batch; with this it falls).
        self.codebook = nn.Parameter(torch.randn(codebook_size, embedding_dim))

    def _quantise(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(z_e, e, z_q): encoder outputs and their codes (B, groups, dim), z_q straight-through."""
        z_e = self.encoder(x).view(len(x), self.groups, self.embedding_dim)
        e = self.codebook[nearest(z_e, self.codebook)]
        return z_e, e, straight_through(z_e, e)

    def _output(self, logits: Tensor) -> Tensor:
        return logits if self.info.kind == "real" else torch.sigmoid(logits)

    def encode(self, x: Tensor) -> Tensor:
        # The quantised code, straight-through: a contractive penalty on it reaches the encoder.
        return self._quantise(x)[2].flatten(1)

    def decode(self, z: Tensor) -> Tensor:
        return self._output(self.decoder(z))

    def forward(self, x: Tensor) -> ModelOutput:
        z_e, e, z_q = self._quantise(x)
        logits = self.decoder(z_q.flatten(1))
        return ModelOutput(
            code=z_q.flatten(1),
            recon=lambda: self._output(logits),
            extras={"logits": logits, "z_e": z_e, "e": e},
        )

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        """Per sample: ``distortion``, ``codebook`` and ``commitment`` (unweighted)."""
        codebook, commitment = vq_losses(out.extras["z_e"], out.extras["e"])
        distortion = reconstruction_loss(x, out.extras["logits"], self.info.kind)
        return {"distortion": distortion, "codebook": codebook, "commitment": commitment}

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        terms = self.loss_terms(x, out)
        return terms["distortion"] + terms["codebook"] + self.beta * terms["commitment"]

    def prior(self) -> Distribution:
        """Uniform over the codebook, per group: codes (latent_dim,) for ``decode``."""
        return UniformCodes(self.codebook, self.groups)

    def codes(self, indices: Tensor) -> Tensor:
        """Codebook indices (N, groups) -> codes (N, latent_dim), for ``decode``."""
        return self.codebook[indices].flatten(-2)
