"""Encoder and decoder networks shared by the built-in models: MLPs and strided convolutions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

# The hidden layers' nonlinearity: ReLU, or tanh (the MLPs of Burda et al. 2015).
Activation = Literal["relu", "tanh"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}

# The linear layers' initial weights: torch's default (Kaiming uniform with a = sqrt(5), biases
# uniform in +-1/sqrt(fan_in)), or "glorot": Glorot & Bengio 2010's uniform in
# +-sqrt(6 / (fan_in + fan_out)) with zero biases, as Burda et al. 2015 initialise (their code's
# ``nnet.Linear.random``). torch's default bound, 1/sqrt(fan_in), is 1.1x to 2.2x narrower there.
Init = Literal["default", "glorot"]


def glorot_(layer: nn.Linear) -> None:
    """Glorot-uniform weights (gain 1, as for tanh in the paper) and zero biases, in place."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)


def mlp(
    sizes: Sequence[int], activation: Activation = "relu", init: Init = "default"
) -> nn.Sequential:
    """Linear layers with ``activation`` between them (none after the last), initialised as
    ``init`` says."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        linear = nn.Linear(a, b)
        if init == "glorot":
            glorot_(linear)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """(B, *shape) -> (B, out_dim): flattens the sample, then an MLP."""

    def __init__(
        self,
        shape: tuple[int, ...],
        hidden: Sequence[int],
        out_dim: int,
        activation: Activation = "relu",
        init: Init = "default",
    ) -> None:
        super().__init__()
        self.net = mlp([math.prod(shape), *hidden, out_dim], activation, init)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """(N, latent) -> (N, *shape): an MLP, then reshaped to the data's shape."""

    def __init__(
        self,
        latent_dim: int,
        hidden: Sequence[int],
        shape: tuple[int, ...],
        activation: Activation = "relu",
        init: Init = "default",
    ) -> None:
        super().__init__()
        self.shape = shape
        self.net = mlp([latent_dim, *hidden, math.prod(shape)], activation, init)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.shape)


def require_image(model: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The (C, H, W) of image data, or a clear error for flat data."""
    if len(shape) != 3:
        raise ValueError(
            f"{model} needs image data shaped (C, H, W); this dataset's samples are shaped {shape}"
        )
    return shape  # type: ignore[return-value]


def _halved(size: int) -> int:
    # A 3x3 convolution with stride 2 and padding 1 maps a side of n to ceil(n / 2).
    return (size - 1) // 2 + 1


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_dim): stride-2 3x3 convolutions (each halves H and W), a linear."""

    def __init__(self, shape: tuple[int, int, int], channels: Sequence[int], out_dim: int) -> None:
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        self.sizes = [(h, w)]  # the spatial size before each layer, and after the last
        for width in channels:
            layers += [nn.Conv2d(c, width, 3, stride=2, padding=1), nn.ReLU()]
            c, h, w = width, _halved(h), _halved(w)
            self.sizes.append((h, w))
        self.features = nn.Sequential(*layers)
        self.feature_shape = (c, h, w)
        self.head = nn.Linear(c * h * w, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


class ConvDecoder(nn.Module):
    """(N, latent) -> (N, C, H, W): the mirror of a ConvEncoder, ending in logits or means."""

    def __init__(self, latent_dim: int, encoder: ConvEncoder, out_channels: int) -> None:
        super().__init__()
        self.feature_shape = encoder.feature_shape
        self.head = nn.Linear(latent_dim, math.prod(self.feature_shape))
        widths = [layer.out_channels for layer in encoder.features if isinstance(layer, nn.Conv2d)]
        targets = list(reversed(encoder.sizes[:-1]))  # the sizes to grow back to, innermost first
        ins = [*reversed(widths)]
        outs = [*reversed(widths[:-1]), out_channels]
        layers: list[nn.Module] = []
        size = encoder.sizes[-1]
        for i, (a, b, target) in enumerate(zip(ins, outs, targets, strict=True)):
            # A stride-2 transposed 3x3 (padding 1) gives 2n - 1 (+1 with output padding).
            padding = tuple(t - (2 * s - 1) for t, s in zip(target, size, strict=True))
            layers.append(nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=padding))
            if i < len(ins) - 1:
                layers.append(nn.ReLU())
            size = target
        self.features = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.head(z)).view(-1, *self.feature_shape)
        return self.features(h)
