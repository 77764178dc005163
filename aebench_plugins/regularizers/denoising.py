"""The denoising autoencoder's corruption (Vincent et al. 2008), applied in training only.

The core feeds the model the corrupted input and scores the reconstruction against the clean one;
evaluation never corrupts.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from aebench import DataInfo, Regularizer

Probability = Annotated[float, Field(ge=0, le=1)]


class Denoising(Regularizer):
    """Denoising: corrupt training inputs (gaussian noise of std, masking or salt-pepper with p)."""

    def __init__(
        self,
        kind: Literal["gaussian", "masking", "salt-pepper"] = "gaussian",
        std: Annotated[float, Field(ge=0)] = 0.3,  # gaussian only
        p: Probability = 0.25,  # masking and salt-pepper only
    ) -> None:
        self.kind = kind
        self.std = std
        self.p = p

    def decline(self, model: nn.Module, info: DataInfo) -> str | None:
        if self.kind == "salt-pepper" and info.kind == "real":
            return "salt-pepper noise sets inputs to 0 or 1: it needs data in [0, 1], not real data"
        return None

    def corrupt(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.kind == "gaussian":
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return x + self.std * noise
        hit = torch.rand(x.shape, generator=generator, device=x.device) < self.p
        if self.kind == "masking":
            return x.masked_fill(hit, 0.0)
        # salt-pepper: each hit input becomes 0 or 1 with equal odds
        salt = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
        return torch.where(hit, salt.to(x.dtype), x)
