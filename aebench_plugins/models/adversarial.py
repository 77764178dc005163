"""Models trained against a discriminator of codes: ``aae`` and ``factor-vae``.

Both own a discriminator trained by an optimizer of its own, through the core's auxiliary hook
(``auxiliary_parameters`` and ``auxiliary_loss``, docs/plugins.md): the main optimizer steps the
autoencoder on its loss, which reads the discriminator; the discriminator then takes one step on
its own loss, on the main step's codes detached.

A discriminator gives one logit l(z); D(z) = sigmoid(l(z)) is the probability that z is "real"
(a prior sample for the AAE, a code of q(z) rather than a permuted one for FactorVAE), so that
-log D = softplus(-l), -log(1 - D) = softplus(l) and log(D / (1 - D)) = l.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.ae import CodeAutoencoder, reconstruction_loss
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import LatentDim, LikelihoodName, Sigma, Weight, Widths
from aebench_plugins.models.vae import FamilyVAE

Rate = Annotated[float, Field(gt=0)] | None  # None: the trial's learning rate


class Discriminator(nn.Module):
    """(N, latent) -> (N,) logits: an MLP with leaky ReLUs (as GAN discriminators use)."""

    def __init__(self, latent_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(0.2)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).squeeze(-1)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Per pair: -log D(real) - log(1 - D(fake)), the discriminator's cross-entropy."""
    return F.softplus(-real_logits) + F.softplus(fake_logits)


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Per sample: -log D(fake), the non-saturating loss of the code that should pass as real."""
    return F.softplus(-fake_logits)


def permute_dims(z: Tensor) -> Tensor:
    """Each dimension of ``z`` (B, latent) permuted across the batch, independently of the others:
    samples of prod_j q(z_j) when the rows are samples of q(z) (Kim & Mnih 2018, Algorithm 1).

    The argsort of i.i.d. uniforms is a uniform permutation, one per column."""
    order = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, order)


@register_model("aae")
class AAE(CodeAutoencoder):
    """Adversarial AE (Makhzani et al. 2016): codes matched to N(0, I) by a discriminator; no ELBO.

    The encoder gives the code z = E(x) and the decoder its reconstruction. Per sample, the
    autoencoder minimises the reconstruction loss (Bernoulli cross-entropy on [0, 1] data, half
    squared error on real) plus ``adversarial_weight`` * -log D(E(x)); the discriminator, trained
    by its own optimizer (rate ``disc_lr``, else the trial's), minimises
    -log D(z_p) - log(1 - D(E(x))) with z_p ~ p(z) = N(0, I). The paper's reconstruction and
    regularisation phases are one main step and one discriminator step per batch here.
    ``prior()`` is p(z), for sampling with ``decode``; the code has no density of its own, so the
    likelihood metrics (``elbo``, ``log_px_iwae``) do not apply: the reconstruction and code
    metrics do.
    """

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 8,
        hidden: Widths = (256, 128),
        disc_hidden: Widths = (128, 128),
        adversarial_weight: Weight = 1.0,
        disc_lr: Rate = None,
    ) -> None:
        encoder, decoder = self.networks(
            self.model_name, info.shape, hidden, latent_dim, latent_dim, info.shape
        )
        super().__init__(info, encoder, decoder, "linear")
        self.discriminator = Discriminator(latent_dim, disc_hidden)
        self.adversarial_weight = adversarial_weight
        self.auxiliary_optimizer: dict[str, Any] = {} if disc_lr is None else {"lr": disc_lr}
        self.register_buffer("_origin", torch.zeros(latent_dim))  # moves with the model

    def prior(self) -> Distribution:
        """p(z) = N(0, I), which the codes are trained to match."""
        return Independent(Normal(self._origin, torch.ones_like(self._origin)), 1)

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        """Per sample: ``distortion`` (the reconstruction loss) and ``adversarial`` (-log D(z))."""
        return {
            "distortion": reconstruction_loss(x, out.extras["logits"], self.info.kind),
            "adversarial": generator_loss(self.discriminator(out.code)),
        }

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        terms = self.loss_terms(x, out)
        return terms["distortion"] + self.adversarial_weight * terms["adversarial"]

    def auxiliary_parameters(self) -> Iterator[nn.Parameter]:
        return self.discriminator.parameters()

    def auxiliary_loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        """The discriminator's loss: prior samples are real, the (detached) codes are fake."""
        real = self.prior().sample((len(out.code),))
        return discriminator_loss(self.discriminator(real), self.discriminator(out.code))


@register_model("factor-vae")
class FactorVAE(FamilyVAE):
    """FactorVAE (Kim & Mnih 2018): VAE + gamma * TC by a discriminator; ELBO, log p(x) apply.

    Per sample, the VAE minimises -E_q log p(x|z) + beta * KL(q(z|x) || p(z)) + gamma * TC, with
    TC estimated as log(D(z) / (1 - D(z))) = the discriminator's logit at the posterior sample z.
    The discriminator, with its own optimizer (Adam's betas (0.5, 0.9) as in the paper; rate
    ``disc_lr``, else the trial's), minimises 1/2 (-log D(z) - log(1 - D(z_perm))), where z_perm
    permutes each latent dimension across the batch independently (samples of prod_j q(z_j)).
    The permuted codes come from the same batch (as disentanglement_lib does), not a second one.
    p(z), q(z|x) and p(x|z) are the VAE's, so the likelihood metrics apply; the training loss is
    not the ELBO (its TC term).
    """

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 10,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        gamma: Weight = 10.0,
        disc_hidden: Widths = (256, 256),
        disc_lr: Rate = None,
    ) -> None:
        super().__init__(info, latent_dim, hidden, likelihood, sigma, beta=1.0, mc_samples=1)
        self.gamma = gamma
        self.discriminator = Discriminator(latent_dim, disc_hidden)
        self.auxiliary_optimizer: dict[str, Any] = {"betas": (0.5, 0.9)}
        if disc_lr is not None:
            self.auxiliary_optimizer["lr"] = disc_lr

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        """Per sample: the VAE's ``rate`` and ``distortion``, and ``tc``, the TC estimate."""
        return super().loss_terms(x, out) | {"tc": self.discriminator(out.code)}

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        terms = self.loss_terms(x, out)
        return terms["distortion"] + self.beta * terms["rate"] + self.gamma * terms["tc"]

    def auxiliary_parameters(self) -> Iterator[nn.Parameter]:
        return self.discriminator.parameters()

    def auxiliary_loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        """1/2 (-log D(z) - log(1 - D(z_perm))): codes of q(z) are real, permuted ones fake."""
        z = out.code
        return 0.5 * discriminator_loss(self.discriminator(z), self.discriminator(permute_dims(z)))
