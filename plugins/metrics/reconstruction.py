"""Reconstruction error of the test split, through encode then decode (the posterior mean)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from aebench import MetricContext

EVAL_BATCH = 1024


def reconstruct(context: MetricContext) -> tuple[Tensor, Tensor]:
    """The test inputs and their deterministic reconstructions, in batches."""
    x = context.data.test.x
    model = context.model
    recon = torch.cat([model.decode(model.encode(b)) for b in x.split(EVAL_BATCH)])
    return x, recon


def recon_mse(context: MetricContext) -> dict[str, float]:
    """Mean squared error per element of the test split."""
    x, recon = reconstruct(context)
    return {"recon_mse": F.mse_loss(recon, x).item()}


def recon_bce(context: MetricContext) -> dict[str, float]:
    """Binary cross-entropy in nats per sample (data in [0, 1] only; NaN for real-valued data)."""
    if context.data.info.kind == "real":
        return {"recon_bce": float("nan")}
    x, recon = reconstruct(context)
    bce = F.binary_cross_entropy(recon.clamp(1e-7, 1 - 1e-7), x, reduction="none")
    return {"recon_bce": bce.flatten(1).sum(1).mean().item()}
