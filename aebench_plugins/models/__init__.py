"""Built-in models: the classic autoencoder family and the models researchers compare today."""

from aebench import hookimpl
from aebench_plugins.models.adversarial import AAE, FactorVAE
from aebench_plugins.models.ae import AE, ConvAE
from aebench_plugins.models.conv_variants import (
    ConvAAE,
    ConvAnnealedVAE,
    ConvBetaTCVAE,
    ConvDIPVAEI,
    ConvDIPVAEII,
    ConvFactorVAE,
    ConvInfoVAE,
    ConvRAE,
    ConvVQVAE,
    conv_wae_mmd,
)
from aebench_plugins.models.disentangling import DIPVAEI, DIPVAEII, AnnealedVAE, BetaTCVAE
from aebench_plugins.models.flows import PlanarVAE
from aebench_plugins.models.hierarchical import TwoLayerIWAE, TwoLayerVAE
from aebench_plugins.models.iaf import IAFVAE
from aebench_plugins.models.iw_variants import CIWAE, MIWAE, PIWAE
from aebench_plugins.models.iwae import IWAE
from aebench_plugins.models.mmd import InfoVAE, wae_mmd
from aebench_plugins.models.rae import RAE
from aebench_plugins.models.vae import VAE, ConvVAE
from aebench_plugins.models.vampprior import VampPriorVAE
from aebench_plugins.models.vqvae import VQVAE


@hookimpl
def aebench_register_models(register):
    register("ae", AE)
    register("conv-ae", ConvAE)
    register("vae", VAE)
    register("conv-vae", ConvVAE)
    register("iwae", IWAE)
    register("beta-tcvae", BetaTCVAE)
    register("dip-vae-i", DIPVAEI)
    register("dip-vae-ii", DIPVAEII)
    register("annealed-vae", AnnealedVAE)
    register("infovae", InfoVAE)
    register("wae-mmd", wae_mmd)
    register("miwae", MIWAE)
    register("piwae", PIWAE)
    register("ciwae", CIWAE)
    register("planar-vae", PlanarVAE)
    register("iaf-vae", IAFVAE)
    register("vampprior", VampPriorVAE)
    register("vae-2layer", TwoLayerVAE)
    register("iwae-2layer", TwoLayerIWAE)
    register("aae", AAE)
    register("factor-vae", FactorVAE)
    register("rae", RAE)
    register("vq-vae", VQVAE)
    # the families used on images, on conv networks (conv_variants.py says which and why)
    register("conv-beta-tcvae", ConvBetaTCVAE)
    register("conv-dip-vae-i", ConvDIPVAEI)
    register("conv-dip-vae-ii", ConvDIPVAEII)
    register("conv-annealed-vae", ConvAnnealedVAE)
    register("conv-factor-vae", ConvFactorVAE)
    register("conv-infovae", ConvInfoVAE)
    register("conv-wae-mmd", conv_wae_mmd)
    register("conv-rae", ConvRAE)
    register("conv-vq-vae", ConvVQVAE)
    register("conv-aae", ConvAAE)
