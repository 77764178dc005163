"""Convolutional variants of the families that are used on images: ``conv-<name>``.

The disentangling objectives are studied on images with convolutional networks
(disentanglement_lib trains beta-VAE, AnnealedVAE, FactorVAE, DIP-VAE I/II and beta-TCVAE on
64x64 dSprites with a conv encoder and decoder), and so are the MMD and deterministic families
(InfoVAE, WAE-MMD, RAE and VQ-VAE report image results from conv networks; the adversarial
autoencoder's paper used MLPs, but it is compared on images with conv networks, as pythae does).
Each variant here is its MLP family's class with ``networks = conv_networks``: the objective,
distributions and extra optimizers are the same code; only the encoder and decoder change, to
aebench's stride-2 ``ConvEncoder`` and its mirror (``channels`` per layer, each halving the
image; ``channels = [32, 32, 64, 64]`` has disentanglement_lib's widths, with 3x3 rather than
4x4 kernels). The widths reach the family's ``hidden`` argument: which networks read them is the
class's choice. The beta-VAE is ``conv-vae`` with its ``beta``.

Left MLP-only, as in their papers: the importance-weighted family (``iwae``, ``miwae``,
``piwae``, ``ciwae``) and the two-layer models (Burda et al. 2015, Rainforth et al. 2018: MLPs on
binarised MNIST), the flows (``planar-vae``, and ``iaf-vae`` in its MLP form: the IAF paper's
ResNet VAE is another model) and ``vampprior`` (its pseudo-inputs pass through the encoder; the
paper's convolutional results use other, PixelCNN-decoder models). A conv model needs (C, H, W)
images: on flat data it is a one-line error naming the model.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field
from torch import nn

from aebench import DataInfo
from aebench_plugins.models.adversarial import AAE, FactorVAE, Rate
from aebench_plugins.models.ae import Widths
from aebench_plugins.models.architectures import Networks, conv_networks
from aebench_plugins.models.disentangling import DIPVAEI, DIPVAEII, AnnealedVAE, BetaTCVAE, Weight
from aebench_plugins.models.mmd import (
    WAE_SCALES,
    Bandwidth,
    InfoVAE,
    Kernel,
    Scales,
    build_wae,
)
from aebench_plugins.models.rae import RAE
from aebench_plugins.models.vae import Beta, LatentDim, LikelihoodName, Samples, Sigma
from aebench_plugins.models.vqvae import VQVAE

Channels = Annotated[Widths, Field(min_length=1)]
CONV_CHANNELS = (32, 64)  # conv-ae's and conv-vae's default


class ConvBetaTCVAE(BetaTCVAE):
    """β-TCVAE (Chen et al. 2018), conv networks for (C, H, W) images; ELBO and log p(x) apply.

    ``beta-tcvae``'s objective (MWS estimate of the total correlation) on a ``ConvEncoder`` of
    ``channels`` and its mirror; see ``beta-tcvae`` for the terms and weights.
    """

    image_only = True
    model_name = "conv-beta-tcvae"
    networks: ClassVar[Networks] = staticmethod(conv_networks)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        channels: Channels = CONV_CHANNELS,
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        alpha: Weight = 1.0,
        beta: Beta = 6.0,
        gamma: Weight = 1.0,
        dataset_size: Annotated[int, Field(ge=1)] | None = None,
        mc_samples: Samples = 1,
    ) -> None:
        super().__init__(
            info,
            latent_dim=latent_dim,
            hidden=channels,
            likelihood=likelihood,
            sigma=sigma,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
            dataset_size=dataset_size,
            mc_samples=mc_samples,
        )


class ConvDIPVAEI(DIPVAEI):
    """DIP-VAE-I (Kumar et al. 2018), conv networks for (C, H, W) images; ELBO, log p(x) apply.

    ``dip-vae-i``'s objective (Cov of the posterior means pulled to I) on conv networks.
    """

    image_only = True
    model_name = "conv-dip-vae-i"
    networks: ClassVar[Networks] = staticmethod(conv_networks)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        channels: Channels = CONV_CHANNELS,
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        lambda_od: Weight = 10.0,
        lambda_d: Weight = 100.0,
        mc_samples: Samples = 1,
    ) -> None:
        super().__init__(
            info,
            latent_dim=latent_dim,
            hidden=channels,
            likelihood=likelihood,
            sigma=sigma,
            beta=beta,
            lambda_od=lambda_od,
            lambda_d=lambda_d,
            mc_samples=mc_samples,
        )


class ConvDIPVAEII(DIPVAEII):
    """DIP-VAE-II (Kumar et al. 2018), conv networks for (C, H, W) images; ELBO, log p(x) apply.

    ``dip-vae-ii``'s objective (Cov of q(z) pulled to I) on conv networks.
    """

    image_only = True
    model_name = "conv-dip-vae-ii"
    networks: ClassVar[Networks] = staticmethod(conv_networks)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        channels: Channels = CONV_CHANNELS,
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        lambda_od: Weight = 10.0,
        lambda_d: Weight = 10.0,
        mc_samples: Samples = 1,
    ) -> None:
        super().__init__(
            info,
            latent_dim=latent_dim,
            hidden=channels,
            likelihood=likelihood,
            sigma=sigma,
            beta=beta,
            lambda_od=lambda_od,
            lambda_d=lambda_d,
            mc_samples=mc_samples,
        )


class ConvAnnealedVAE(AnnealedVAE):
    """AnnealedVAE (Burgess et al. 2018), conv networks for (C, H, W) images; ELBO, log p(x) apply.

    ``annealed-vae``'s objective (gamma |KL - C|, C raised linearly) on conv networks.
    """

    image_only = True
    model_name = "conv-annealed-vae"
    networks: ClassVar[Networks] = staticmethod(conv_networks)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        channels: Channels = CONV_CHANNELS,
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        gamma: Weight = 1000.0,
        capacity: Weight = 25.0,
        capacity_steps: Annotated[int, Field(ge=1)] = 100_000,
        mc_samples: Samples = 1,
    ) -> None:
        super().__init__(
            info,
            latent_dim=latent_dim,
            hidden=channels,
            likelihood=likelihood,
            sigma=sigma,
            gamma=gamma,
            capacity=capacity,
            capacity_steps=capacity_steps,
            mc_samples=mc_samples,
        )


class ConvFactorVAE(FactorVAE):
    """FactorVAE (Kim & Mnih 2018), conv networks for (C, H, W) images; ELBO, log p(x) apply.

    ``factor-vae``'s objective (gamma TC by a discriminator with its own optimizer) on conv
    networks; the discriminator stays an MLP on the codes, as in the paper.
    """

    image_only = True
    model_name = "conv-factor-vae"
    networks: ClassVar[Networks] = staticmethod(conv_networks)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 10,
        channels: Channels = CONV_CHANNELS,
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        gamma: Weight = 10.0,
        disc_hidden: Widths = (256, 256),
        disc_lr: Rate = None,
    ) -> None:
        super().__init__(
            info,
            latent_dim=latent_dim,
            hidden=channels,
            likelihood=likelihood,
            sigma=sigma,
            gamma=gamma,
            disc_hidden=disc_hidden,
            disc_lr=disc_lr,
        )


class ConvInfoVAE(InfoVAE):
    """InfoVAE / MMD-VAE (Zhao et al. 2017), conv networks for (C, H, W) images; ELBO applies.

    ``infovae``'s objective (KL weighted by 1 - alpha, MMD by alpha + lam - 1) on conv networks;
    a latent-variable model: the ELBO and log p(x) estimators apply.
    """

    image_only = True
    model_name = "conv-infovae"
    networks: ClassVar[Networks] = staticmethod(conv_networks)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        channels: Channels = CONV_CHANNELS,
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        alpha: Annotated[float, Field(le=1)] = 0.0,
        lam: Weight = 10.0,
        kernel: Kernel = "rbf",
        bandwidth: Bandwidth = 1.0,
        scales: Scales = (1.0,),
    ) -> None:
        super().__init__(
            info,
            latent_dim=latent_dim,
            hidden=channels,
            likelihood=likelihood,
            sigma=sigma,
            alpha=alpha,
            lam=lam,
            kernel=kernel,
            bandwidth=bandwidth,
            scales=scales,
        )


def conv_wae_mmd(
    info: DataInfo,
    latent_dim: LatentDim = 8,
    channels: Channels = CONV_CHANNELS,
    encoder: Literal["deterministic", "gaussian"] = "deterministic",
    likelihood: LikelihoodName = "auto",
    sigma: Sigma = 1.0,
    lam: Weight = 10.0,
    kernel: Kernel = "imq",
    bandwidth: Bandwidth = 1.0,
    scales: Scales = WAE_SCALES,
) -> nn.Module:
    """WAE-MMD (Tolstikhin et al. 2018), conv networks for images; deterministic: no ELBO.

    ``wae-mmd`` on conv networks: deterministic (no posterior: no ELBO or log p(x), a prior to
    sample from) or with a Gaussian encoder (a latent-variable model: ELBO and log p(x) apply).
    """
    mmd = {"lam": lam, "kernel": kernel, "bandwidth": bandwidth, "scales": scales}
    return build_wae(
        conv_networks, "conv-wae-mmd", info, latent_dim, channels, encoder, likelihood, sigma, mmd
    )


conv_wae_mmd.image_only = True  # type: ignore[attr-defined]


class ConvRAE(RAE):
    """RAE (Ghosh et al. 2020), conv networks for (C, H, W) images; no ELBO, ex-post GMM density.

    ``rae``'s objective (embedding norm, L2 or gradient penalty on the decoder) and ex-post
    Gaussian mixture on conv networks; deterministic: reconstruction and code metrics apply.
    """

    image_only = True
    model_name = "conv-rae"
    networks: ClassVar[Networks] = staticmethod(conv_networks)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        channels: Channels = CONV_CHANNELS,
        regularisation: Literal["l2", "gp"] = "gp",
        embedding_weight: Annotated[float, Field(ge=0)] = 1.0,
        reg_weight: Annotated[float, Field(ge=0)] = 1e-2,
        components: Annotated[int, Field(ge=1)] = 10,
    ) -> None:
        super().__init__(
            info,
            latent_dim=latent_dim,
            hidden=channels,
            regularisation=regularisation,
            embedding_weight=embedding_weight,
            reg_weight=reg_weight,
            components=components,
        )


class ConvVQVAE(VQVAE):
    """VQ-VAE (van den Oord et al. 2017), conv networks for (C, H, W) images; no ELBO.

    ``vq-vae``'s codebook, straight-through estimator and losses on conv networks (the encoder's
    linear head gives the ``latent_dim`` numbers that are quantised); reconstruction and code
    metrics apply, the prior for sampling is uniform over the codebook.
    """

    image_only = True
    model_name = "conv-vq-vae"
    networks: ClassVar[Networks] = staticmethod(conv_networks)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: Annotated[int, Field(ge=1)] = 16,
        embedding_dim: Annotated[int, Field(ge=1)] = 1,
        codebook_size: Annotated[int, Field(ge=2)] = 32,
        channels: Channels = CONV_CHANNELS,
        beta: Annotated[float, Field(ge=0)] = 0.25,
    ) -> None:
        super().__init__(
            info,
            latent_dim=latent_dim,
            embedding_dim=embedding_dim,
            codebook_size=codebook_size,
            hidden=channels,
            beta=beta,
        )


class ConvAAE(AAE):
    """Adversarial AE (Makhzani et al. 2016), conv networks for (C, H, W) images; no ELBO.

    ``aae``'s objective (codes matched to N(0, I) by an MLP discriminator with its own optimizer)
    on conv networks; reconstruction and code metrics apply.
    """

    image_only = True
    model_name = "conv-aae"
    networks: ClassVar[Networks] = staticmethod(conv_networks)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 8,
        channels: Channels = CONV_CHANNELS,
        disc_hidden: Widths = (128, 128),
        adversarial_weight: Weight = 1.0,
        disc_lr: Rate = None,
    ) -> None:
        super().__init__(
            info,
            latent_dim=latent_dim,
            hidden=channels,
            disc_hidden=disc_hidden,
            adversarial_weight=adversarial_weight,
            disc_lr=disc_lr,
        )
