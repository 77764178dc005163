"""Built-in models: the classic autoencoder family."""

from aebench import hookimpl
from aebench_plugins.models.ae import AE, ConvAE
from aebench_plugins.models.iwae import IWAE
from aebench_plugins.models.vae import VAE, ConvVAE


@hookimpl
def aebench_register_models(register):
    register("ae", AE)
    register("conv-ae", ConvAE)
    register("vae", VAE)
    register("conv-vae", ConvVAE)
    register("iwae", IWAE)
