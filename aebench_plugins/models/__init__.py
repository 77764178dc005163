"""Built-in models: the classic autoencoder family and the models researchers compare today.

Each model registers itself where it is written (``@register_model("vae")``, registry.py);
importing the modules below is what records them, the conv variants last, from their families.
"""

from aebench import hookimpl
from aebench_plugins.models import (  # noqa: F401  (imported for their registrations)
    adversarial,
    ae,
    conv_variants,
    disentangling,
    flows,
    hierarchical,
    iaf,
    iw_variants,
    iwae,
    mmd,
    rae,
    vae,
    vampprior,
    vqvae,
)
from aebench_plugins.models.registry import MODELS


@hookimpl
def aebench_register_models(register):
    for name, factory in MODELS.items():
        register(name, factory)
