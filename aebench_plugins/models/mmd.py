"""Objectives that match the aggregate posterior to the prior by a maximum mean discrepancy.

``infovae`` (Zhao, Song & Ermon 2017) and ``wae-mmd`` (Tolstikhin, Bousquet, Gelly & Schoelkopf
2018). Both draw as many prior samples as there are codes in the batch and penalise

    MMD^2_u = 1/(n(n-1)) sum_{i!=j} k(z_i, z_j) + 1/(n(n-1)) sum_{i!=j} k(p_i, p_j)
              - 2/n^2 sum_{i,j} k(z_i, p_j),

the unbiased U-statistic of Gretton et al. (2012) as WAE's Algorithm 1 writes it: the within-set
sums leave out i = j; the cross sum keeps it, unbiased since the codes z and the prior draws p are
independent. The kernels (Tolstikhin et al., sec. 4; pythae) have the scale C = 2 d sigma^2 (d the
latent dimension, sigma the ``bandwidth``), summed over multiples s of C (``scales``):

    imq: k(a, b) = sum_s sC / (sC + |a - b|^2),     rbf: k(a, b) = sum_s exp(-|a - b|^2 / (sC)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.distributions import Distribution

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.architectures import Networks, mlp_networks
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import LatentDim, LikelihoodName, Sigma, Weight, Widths
from aebench_plugins.models.vae import FamilyVAE, GaussianVAE, decoder_shape, vae_networks

Kernel = Literal["imq", "rbf"]
Scales = Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)]
Bandwidth = Annotated[float, Field(gt=0)]

# Tolstikhin et al.'s multi-scale inverse multiquadratic: a sum over these multiples of C.
WAE_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def kernel_matrix(
    a: Tensor, b: Tensor, kernel: str, bandwidth: float, scales: Sequence[float]
) -> Tensor:
    """k(a_i, b_j) for a (n, d) and b (m, d): an (n, m) matrix."""
    c = 2.0 * a.shape[-1] * bandwidth**2
    # written out, not cdist: its gradient at a zero distance (the diagonal of k(z, z)) is NaN-prone
    squared = (a.unsqueeze(-2) - b.unsqueeze(-3)).pow(2).sum(-1)
    total = torch.zeros_like(squared)
    for s in scales:
        if kernel == "imq":
            total = total + s * c / (s * c + squared)
        else:
            total = total + torch.exp(-squared / (s * c))
    return total


def mmd_per_sample(
    z: Tensor, p: Tensor, kernel: str, bandwidth: float, scales: Sequence[float]
) -> Tensor:
    """Each sample's share of MMD^2_u between codes z and prior draws p (both (n, d)): (n,).

    Sample i's share is 1/(n-1) sum_{j!=i} [k(z_i, z_j) + k(p_i, p_j)] - 2/n sum_j k(z_i, p_j),
    so that the mean over i is the U-statistic and the loss stays one number per sample. With a
    single sample there are no pairs within a set: those sums are 0.
    """
    n = z.shape[0]
    k_zz = kernel_matrix(z, z, kernel, bandwidth, scales)
    k_pp = kernel_matrix(p, p, kernel, bandwidth, scales)
    k_zp = kernel_matrix(z, p, kernel, bandwidth, scales)
    within = (k_zz.sum(1) - k_zz.diagonal() + k_pp.sum(1) - k_pp.diagonal()) / max(n - 1, 1)
    return within - 2.0 * k_zp.sum(1) / n


class _MMDToPrior(GaussianVAE):
    """A GaussianVAE whose forward pass draws as many prior samples as there are codes, and whose
    loss terms add each sample's share of the ``mmd`` between the two."""

    kernel: str
    bandwidth: float
    scales: tuple[float, ...]

    def forward(self, x: Tensor) -> ModelOutput:
        out = super().forward(x)
        out.extras["prior_z"] = torch.randn_like(out.code)  # drawn here: seeded validation sees it
        return out

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        terms = super().loss_terms(x, out)  # rate and distortion
        terms["mmd"] = mmd_per_sample(
            out.code, out.extras["prior_z"], self.kernel, self.bandwidth, self.scales
        )
        return terms


@register_model("infovae")
class InfoVAE(_MMDToPrior, FamilyVAE):
    """InfoVAE / MMD-VAE (Zhao et al. 2017): -E_q log p(x|z) + (1-alpha) KL + (alpha+lam-1) MMD.

    The VAE's networks and distributions; the MMD (``kernel`` imq or rbf) is between the batch's
    posterior samples and as many draws from p(z). alpha = 1 drops the KL: the MMD-VAE. A
    latent-variable model with q(z|x): the ELBO and IWAE estimators apply to its decoder's
    likelihood. ``loss_terms``: ``rate`` (KL), ``distortion`` and each sample's share of ``mmd``.

    The default lam = 10: at lam = 1000 (alpha 0 or 1) every latent unit of digits' 5-epoch zoo
    run was inactive, the posterior collapsed onto the prior; at 10, all 8 were active (measured).
    """

    annealed_weights = ()  # its weights are alpha and lam, not beta

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        alpha: Annotated[float, Field(le=1)] = 0.0,
        lam: Weight = 10.0,
        kernel: Kernel = "rbf",
        bandwidth: Bandwidth = 1.0,
        scales: Scales = (1.0,),
    ) -> None:
        if alpha + lam - 1 < 0:
            # a negative weight would reward the discrepancy to the prior
            raise ValueError(f"infovae: alpha + lam - 1 must be >= 0, got {alpha + lam - 1}")
        super().__init__(info, latent_dim, hidden, likelihood, sigma, beta=1.0, mc_samples=1)
        self.alpha, self.lam = alpha, lam
        self.kernel, self.bandwidth, self.scales = kernel, bandwidth, tuple(scales)

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        t = self.loss_terms(x, out)
        return (
            t["distortion"] + (1 - self.alpha) * t["rate"] + (self.alpha + self.lam - 1) * t["mmd"]
        )


class GaussianWAE(_MMDToPrior):
    """WAE-MMD with a Gaussian encoder: -E_q log p(x|z) + lam * MMD(q(z), p(z)), no KL."""

    annealed_weights = ()

    def __init__(
        self,
        info: DataInfo,
        *,
        lam: float,
        kernel: str,
        bandwidth: float,
        scales: Sequence[float],
        **vae: Any,
    ) -> None:
        super().__init__(info, beta=1.0, mc_samples=1, **vae)
        self.lam, self.kernel, self.bandwidth, self.scales = lam, kernel, bandwidth, tuple(scales)

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        terms = self.loss_terms(x, out)  # rate: reported, not trained on
        return terms["distortion"] + self.lam * terms["mmd"]


class DeterministicWAE(nn.Module):
    """WAE-MMD with a deterministic encoder z = E(x): -log p(x|G(E(x))) + lam * MMD(codes, p(z)).

    Not a latent-variable model: it has no posterior q(z|x), so the ELBO and IWAE metrics do not
    apply (NaN with the reason); it has a prior to sample from (``aebench sample``).
    """

    annealed_weights = ()
    code_range = None

    def __init__(
        self,
        info: DataInfo,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        latent_dim: int,
        likelihood: str,
        sigma: float,
        lam: float,
        kernel: str,
        bandwidth: float,
        scales: Sequence[float],
        name: str = "wae-mmd",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        # The VAE's decoder and likelihood (the reconstruction cost); its encoder is unused.
        self.decoding = GaussianVAE(
            info,
            nn.Identity(),
            decoder,
            name=name,
            latent_dim=latent_dim,
            likelihood=likelihood,
            sigma=sigma,
            beta=0.0,
            mc_samples=1,
        )
        self.likelihood_name = self.decoding.likelihood_name
        self.lam, self.kernel, self.bandwidth, self.scales = lam, kernel, bandwidth, tuple(scales)

    def prior(self) -> Distribution:
        return self.decoding.prior()

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoding.likelihood(z).mean

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encoder(x)
        decoded = self.decoding._decoded(code)
        return ModelOutput(
            code=code,
            recon=lambda: self.decoding._likelihood_of(decoded).mean,
            extras={"decoded": decoded, "prior_z": torch.randn_like(code)},
        )

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        """Per sample: ``distortion`` = -log p(x|G(E(x))) and its share of the ``mmd``."""
        distortion = -self.decoding._likelihood_of(out.extras["decoded"]).log_prob(x)
        mmd = mmd_per_sample(
            out.code, out.extras["prior_z"], self.kernel, self.bandwidth, self.scales
        )
        return {"distortion": distortion, "mmd": mmd}

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        terms = self.loss_terms(x, out)
        return terms["distortion"] + self.lam * terms["mmd"]


@register_model("wae-mmd")
def wae_mmd(
    info: DataInfo,
    latent_dim: LatentDim = 8,
    hidden: Widths = (256, 128),
    encoder: Literal["deterministic", "gaussian"] = "deterministic",
    likelihood: LikelihoodName = "auto",
    sigma: Sigma = 1.0,
    lam: Weight = 10.0,
    kernel: Kernel = "imq",
    bandwidth: Bandwidth = 1.0,
    scales: Scales = WAE_SCALES,
) -> nn.Module:
    """WAE-MMD (Tolstikhin et al. 2018): reconstruction cost + lam * MMD(q(z), p(z)), MLP nets.

    The cost is -log p(x|z) under ``likelihood``: with likelihood = "gaussian" and sigma = 0.7071
    it is the paper's c(x, y) = |x - y|^2 plus a constant. ``encoder = "deterministic"`` (the
    paper's main model) is not a latent-variable model: no posterior, so no ELBO or IWAE, but a
    prior to sample from. ``encoder = "gaussian"`` has q(z|x) = N(mu, sigma^2), is a latent-variable
    model, and the likelihood estimators apply with its decoder's likelihood. The MMD: imq (the
    paper's, summed over ``scales`` times C = 2 d bandwidth^2) or rbf, the unbiased U-statistic.
    """
    name = wae_mmd.model_name  # type: ignore[attr-defined]
    mmd = {"lam": lam, "kernel": kernel, "bandwidth": bandwidth, "scales": scales}
    return build_wae(
        mlp_networks, name, info, latent_dim, hidden, encoder, likelihood, sigma, **mmd
    )


def build_wae(
    networks: Networks,
    name: str,
    info: DataInfo,
    latent_dim: int,
    hidden: Sequence[int],
    encoder: str,
    likelihood: str,
    sigma: float,
    **mmd: Any,
) -> nn.Module:
    """A WAE-MMD on the given networks, deterministic or with a Gaussian encoder; ``mmd``: its
    ``lam``, ``kernel``, ``bandwidth`` and ``scales``. ``conv-wae-mmd`` is built by it too."""
    if encoder == "gaussian":
        vae = vae_networks(networks, name, info, latent_dim, hidden, likelihood)
        return GaussianWAE(info, sigma=sigma, **vae, **mmd)
    out_shape = decoder_shape(name, likelihood, info)
    codes, decodes = networks(name, info.shape, hidden, latent_dim, latent_dim, out_shape)
    return DeterministicWAE(
        info,
        codes,
        decodes,
        latent_dim=latent_dim,
        likelihood=likelihood,
        sigma=sigma,
        name=name,
        **mmd,
    )
