"""Disentangling objectives on the VAE: ``beta-tcvae``, ``dip-vae-i``, ``dip-vae-ii``,
``annealed-vae``.

Each keeps the VAE's networks and distributions (a latent-variable model: the ELBO and IWAE
estimators apply) and changes only what the loss does with the KL. The beta-VAE (Higgins et al.
2017) is ``vae`` with its ``beta``.

- beta-TCVAE (Chen et al. 2018) splits E_x KL(q(z|x) || p(z)) into the index-code mutual
  information, the total correlation of q(z) and the dimension-wise KL, weighted by alpha, beta,
  gamma, with log q(z) and log q(z_d) estimated on the minibatch (minibatch-weighted sampling).
- DIP-VAE (Kumar et al. 2018) adds a penalty pulling a covariance of the codes to the identity:
  of the posterior means (I), or of q(z) itself, E_x[diag sigma^2(x)] + Cov_x[mu(x)] (II).
- AnnealedVAE (Burgess et al. 2018): -E_q log p(x|z) + gamma |KL - C|, the capacity C raised
  linearly from 0 to ``capacity`` over ``capacity_steps`` training steps.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import (
    Beta,
    LatentDim,
    LikelihoodName,
    Samples,
    Sigma,
    Weight,
    Widths,
)
from aebench_plugins.models.vae import FamilyVAE

# -- beta-TCVAE --------------------------------------------------------------------------------


def log_density_matrix(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z_{i,d}; mu_{j,d}, sigma^2_{j,d}) for every code i and every posterior j.

    ``z`` is (..., M, D), ``mu`` and ``logvar`` (M, D); the result is (..., M, M, D): code i of
    the batch under the posterior of input j, one dimension at a time.
    """
    diff = z.unsqueeze(-2) - mu  # (..., M, 1, D) - (M, D) -> (..., M, M, D)
    return -0.5 * (math.log(2 * math.pi) + logvar + diff.pow(2) * torch.exp(-logvar))


def kl_decomposition(
    z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int | None = None
) -> dict[str, Tensor]:
    """Per code: the index-code mutual information, total correlation and dimension-wise KL.

    Minibatch-weighted sampling (Chen et al. 2018, eq. S5): with M codes z_i, one per input x_i,

        log q(z_i)     ~ log sum_j q(z_i | x_j)         - log(N M)
        log q(z_{i,d}) ~ log sum_j q(z_{i,d} | x_j)     - log(N M)

    and MI = log q(z|x) - log q(z), TC = log q(z) - sum_d log q(z_d), dimension-wise KL =
    sum_d log q(z_d) - log p(z); the three add up to log q(z|x) - log p(z), a one-sample estimate
    of the KL. ``dataset_size`` N is the training set's size (the paper's estimator). With None,
    the minibatch is taken as the data: q(z) ~ (1/M) sum_j q(z|x_j), the constant log M instead of
    log(N M); this moves TC by -(D-1) log N, MI by -log N and the dimension-wise KL by D log N,
    constants that change no gradient, and makes TC about 0 where that mixture factorises.

    ``z`` is (S, M, D) or (M, D); each term is averaged over the S draws: (M,).
    """
    z = z if z.dim() == 3 else z.unsqueeze(0)
    m, d = mu.shape
    log_norm = math.log(m) + (math.log(dataset_size) if dataset_size is not None else 0.0)
    pairs = log_density_matrix(z, mu, logvar)  # (S, M, M, D)
    log_qz = torch.logsumexp(pairs.sum(-1), dim=-1) - log_norm  # (S, M)
    log_prod_qzd = (torch.logsumexp(pairs, dim=-2) - log_norm).sum(-1)  # (S, M)
    own = pairs.diagonal(dim1=-3, dim2=-2).sum(-2)  # log q(z_i | x_i): (S, M)
    log_pz = (-0.5 * (math.log(2 * math.pi) + z.pow(2))).sum(-1)
    return {
        "mutual_info": (own - log_qz).mean(0),
        "total_correlation": (log_qz - log_prod_qzd).mean(0),
        "dimension_kl": (log_prod_qzd - log_pz).mean(0),
    }


@register_model("beta-tcvae")
class BetaTCVAE(FamilyVAE):
    """β-TCVAE (Chen et al. 2018): the ELBO, its total correlation weighted by beta (MWS estimate).

    Per sample: -E_q log p(x|z) + alpha MI + beta TC + gamma dimension-wise KL, the three terms
    estimated on the minibatch (``kl_decomposition``); alpha = beta = gamma = 1 is the VAE's
    ELBO up to the estimate of the KL. ``dataset_size``: the training set's size N in the
    estimator's constant log(N M) (None: the minibatch as the data); it shifts the three terms by
    constants, not their gradients; the estimate depends on the batch size M (validation batches
    are larger than training ones). A latent-variable model: ELBO and IWAE apply.
    ``loss_terms``: ``rate`` (the analytic KL), ``distortion``, ``mutual_info``,
    ``total_correlation``, ``dimension_kl``.
    """

    annealed_weights = ("alpha", "beta", "gamma")

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        alpha: Weight = 1.0,
        beta: Beta = 6.0,
        gamma: Weight = 1.0,
        dataset_size: Annotated[int, Field(ge=1)] | None = None,
        mc_samples: Samples = 1,
    ) -> None:
        super().__init__(info, latent_dim, hidden, likelihood, sigma, beta, mc_samples)
        self.alpha, self.gamma, self.dataset_size = alpha, gamma, dataset_size

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        terms = super().loss_terms(x, out)
        e = out.extras
        return terms | kl_decomposition(e["z"], e["mu"], e["logvar"], self.dataset_size)

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        t = self.loss_terms(x, out)
        return (
            t["distortion"]
            + self.alpha * t["mutual_info"]
            + self.beta * t["total_correlation"]
            + self.gamma * t["dimension_kl"]
        )


# -- DIP-VAE -----------------------------------------------------------------------------------


def code_covariance(mu: Tensor, logvar: Tensor, variant: str) -> Tensor:
    """The (D, D) covariance DIP-VAE pulls to I: Cov_x[mu] (I) or E_x[diag sigma^2] + Cov_x[mu]
    (II), the covariance of q(z) = mean_x q(z|x); over the batch, divided by M."""
    centred = mu - mu.mean(0)
    cov = centred.T @ centred / mu.shape[0]
    if variant == "ii":
        cov = cov + torch.diag(logvar.exp().mean(0))
    return cov


def dip_penalty(cov: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """lambda_od sum_{i!=j} cov_ij^2 + lambda_d sum_i (cov_ii - 1)^2: a scalar."""
    diagonal = cov.diagonal()
    off = cov.pow(2).sum() - diagonal.pow(2).sum()
    return lambda_od * off + lambda_d * (diagonal - 1).pow(2).sum()


class _DIPVAE(FamilyVAE):
    """The DIP-VAE objective; ``variant`` says which covariance, the subclass sets the weights."""

    variant = "i"
    lambda_od: float
    lambda_d: float

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        terms = super().loss_terms(x, out)
        cov = code_covariance(out.extras["mu"], out.extras["logvar"], self.variant)
        # a penalty of the batch: each sample carries it whole, so the batch mean is the penalty
        penalty = dip_penalty(cov, self.lambda_od, self.lambda_d)
        terms["covariance_penalty"] = penalty.expand(len(x))
        return terms

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        t = self.loss_terms(x, out)
        return t["distortion"] + self.beta * t["rate"] + t["covariance_penalty"]


@register_model("dip-vae-i")
class DIPVAEI(_DIPVAE):
    """DIP-VAE-I (Kumar et al. 2018): the ELBO plus a penalty pulling Cov_x[mu(x)] to the identity.

    Per sample: -E_q log p(x|z) + beta KL + lambda_od sum_{i!=j} C_ij^2 + lambda_d sum_i
    (C_ii - 1)^2, C the batch covariance of the posterior means (the paper's lambda_d = 10
    lambda_od). A latent-variable model: ELBO and IWAE apply. ``loss_terms``: ``rate``,
    ``distortion``, ``covariance_penalty``.
    """

    variant = "i"

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        lambda_od: Weight = 10.0,
        lambda_d: Weight = 100.0,
        mc_samples: Samples = 1,
    ) -> None:
        super().__init__(info, latent_dim, hidden, likelihood, sigma, beta, mc_samples)
        self.lambda_od, self.lambda_d = lambda_od, lambda_d


@register_model("dip-vae-ii")
class DIPVAEII(_DIPVAE):
    """DIP-VAE-II (Kumar et al. 2018): the ELBO plus a penalty pulling Cov[q(z)] to the identity.

    As DIP-VAE-I with C = E_x[diag sigma^2(x)] + Cov_x[mu(x)], the covariance of the aggregate
    posterior (the paper's lambda_d = lambda_od). A latent-variable model: ELBO and IWAE apply.
    """

    variant = "ii"

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        lambda_od: Weight = 10.0,
        lambda_d: Weight = 10.0,
        mc_samples: Samples = 1,
    ) -> None:
        super().__init__(info, latent_dim, hidden, likelihood, sigma, beta, mc_samples)
        self.lambda_od, self.lambda_d = lambda_od, lambda_d


# -- AnnealedVAE -------------------------------------------------------------------------------


def capacity_at(step: int | Tensor, capacity: float, steps: int) -> Tensor | float:
    """C after ``step`` training steps: capacity * min(1, step / steps)."""
    if isinstance(step, Tensor):
        return capacity * torch.clamp(step.double() / steps, max=1.0)
    return capacity * min(1.0, step / steps)


@register_model("annealed-vae")
class AnnealedVAE(FamilyVAE):
    """AnnealedVAE (Burgess et al. 2018): -E_q log p(x|z) + gamma |KL - C|, C raised linearly.

    The capacity C goes from 0 to ``capacity`` nats over ``capacity_steps`` training steps, then
    stays. The model counts its own steps (a buffer, so checkpoints and kept weights carry it):
    one per forward pass in training mode. The |KL - C| is per sample, as the paper writes it
    (disentanglement_lib takes it of the batch mean KL). A latent-variable model: ELBO and IWAE
    apply. ``loss_terms``: ``rate``, ``distortion``, ``capacity_gap`` (|KL - C|).
    """

    annealed_weights = ()  # the capacity is its own schedule; it has no beta

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        gamma: Weight = 1000.0,
        capacity: Weight = 25.0,
        capacity_steps: Annotated[int, Field(ge=1)] = 100_000,
        mc_samples: Samples = 1,
    ) -> None:
        # beta 1: the capacity term weighs the KL
        super().__init__(info, latent_dim, hidden, likelihood, sigma, 1.0, mc_samples)
        self.gamma, self.capacity, self.capacity_steps = gamma, capacity, capacity_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_capacity(self) -> Tensor:
        """C at the current step, in nats."""
        return capacity_at(self.step, self.capacity, self.capacity_steps).float()

    def forward(self, x: Tensor) -> ModelOutput:
        out = super().forward(x)
        out.extras["capacity"] = self.current_capacity()  # C = 0 on the first step
        if self.training:
            self.step += 1
        return out

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        terms = super().loss_terms(x, out)
        terms["capacity_gap"] = (terms["rate"] - out.extras["capacity"]).abs()
        return terms

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        t = self.loss_terms(x, out)
        return t["distortion"] + self.gamma * t["capacity_gap"]
