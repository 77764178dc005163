"""Which networks a model family is built on: MLPs, or convolutions for (C, H, W) images.

A family's class names its builder in a class attribute, ``networks``: ``mlp_networks`` (the
default: ``FamilyVAE``, ``CodeAutoencoder`` and ``VQVAE`` set it) or ``conv_networks`` (its
``conv-`` variant, generated in ``conv_variants.py``), so that a conv variant is the same class
with other networks, not a copy of its objective. A builder takes the model's name (for error
messages), the data's shape, the widths (hidden sizes of an MLP, channels of the convolutions),
how many numbers the encoder gives (``code_size``: twice the latent size for a Gaussian
posterior), the decoder's input size and its output shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from aebench_plugins.models.networks import (
    Activation,
    ConvDecoder,
    ConvEncoder,
    Init,
    MLPDecoder,
    MLPEncoder,
    require_image,
)

CONV_CHANNELS = (32, 64)  # the conv models' default widths: two stride-2 layers

# (name, data shape, widths, code_size, latent_dim, decoder output shape) -> (encoder, decoder)
Networks = Callable[
    [str, tuple[int, ...], Sequence[int], int, int, tuple[int, ...]], tuple[nn.Module, nn.Module]
]


# The builders' signatures are the Networks type above, spelled out in each.
def mlp_networks(
    name: str,
    shape: tuple[int, ...],
    widths: Sequence[int],
    code_size: int,
    latent_dim: int,
    out_shape: tuple[int, ...],
    activation: Activation = "relu",
    init: Init = "default",
) -> tuple[nn.Module, nn.Module]:
    """An MLP encoder through ``widths`` and a decoder through them reversed, ``activation``
    between the layers, their weights initialised as ``init`` says."""
    encoder = MLPEncoder(shape, widths, code_size, activation, init)
    return encoder, MLPDecoder(latent_dim, list(reversed(widths)), out_shape, activation, init)


def conv_networks(
    name: str,
    shape: tuple[int, ...],
    widths: Sequence[int],
    code_size: int,
    latent_dim: int,
    out_shape: tuple[int, ...],
) -> tuple[nn.Module, nn.Module]:
    """Stride-2 convolutions of ``widths`` channels and their mirror (transposed convolutions)
    back to ``out_shape``'s channels at the image's size; a clear error for flat data."""
    encoder = ConvEncoder(require_image(name, shape), widths, code_size)
    return encoder, ConvDecoder(latent_dim, encoder, out_shape[0])
