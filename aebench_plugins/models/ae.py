"""Deterministic autoencoders: the MLP ``ae`` (under- or overcomplete); ``conv-ae`` is its conv
variant (conv_variants.py)."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.architectures import Networks, mlp_networks
from aebench_plugins.models.likelihoods import bernoulli_log_mass
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import LatentDim, Widths

CodeActivation = Literal["linear", "relu", "sigmoid"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "linear": nn.Identity,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
}

# Where each code activation's values lie: regularizers read it as ``model.code_range``.
_CODE_RANGES: dict[str, tuple[float, float] | None] = {
    "linear": None,
    "relu": (0.0, math.inf),
    "sigmoid": (0.0, 1.0),
}


def reconstruction_loss(x: Tensor, logits: Tensor, kind: str) -> Tensor:
    """Per-sample loss: Bernoulli cross-entropy for data in [0, 1], half squared error for real."""
    if kind == "real":
        return 0.5 * (logits - x).pow(2).flatten(1).sum(1)
    # the cross-entropy is minus the Bernoulli log-mass, whose CPU kernel is the faster
    return -bernoulli_log_mass(logits, x, event_dims=x.dim() - 1)


class CodeAutoencoder(nn.Module):
    """An encoder to a code (through ``code_activation``) and a decoder back to the data."""

    model_name: ClassVar[str]  # a registered model's name (``register_model`` gives it)
    networks: ClassVar[Networks] = staticmethod(mlp_networks)  # conv variants: conv_networks

    def __init__(
        self, info: DataInfo, encoder: nn.Module, decoder: nn.Module, code_activation: str
    ) -> None:
        super().__init__()
        self.info = info
        self.encoder = encoder
        self.decoder = decoder
        self.code_activation = _ACTIVATIONS[code_activation]()
        self.code_range = _CODE_RANGES[code_activation]

    def encode(self, x: Tensor) -> Tensor:
        return self.code_activation(self.encoder(x))

    def _output(self, logits: Tensor) -> Tensor:
        # The decoder gives logits for data in [0, 1] and the reconstruction itself for real data.
        return logits if self.info.kind == "real" else torch.sigmoid(logits)

    def decode(self, z: Tensor) -> Tensor:
        return self._output(self.decoder(z))

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        logits = self.decoder(code)
        return ModelOutput(code=code, recon=lambda: self._output(logits), extras={"logits": logits})

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return reconstruction_loss(x, out.extras["logits"], self.info.kind)


@register_model("ae")
class AE(CodeAutoencoder):
    """MLP autoencoder: hidden layers, a code of latent_dim units (may exceed the input size)."""

    stackable: ClassVar[bool] = True  # seeds may train as one stacked model (vmap-able)
    independent_samples: ClassVar[bool] = True  # ... as one batch, batched GEMMs (no vmap)

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (128,),
        code_activation: CodeActivation = "linear",
    ) -> None:
        encoder, decoder = self.networks(
            self.model_name, info.shape, hidden, latent_dim, latent_dim, info.shape
        )
        super().__init__(info, encoder, decoder, code_activation)
