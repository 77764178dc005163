"""Reconstruction error of the test split, through encode then decode (the posterior mean)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from aebench import MetricContext, NotApplicable

MSE_FLOOR = 1e-10


def reconstruct(context: MetricContext) -> tuple[Tensor, Tensor]:
    """The test inputs and their deterministic reconstructions (the trial's shared ones)."""
    return context.data.test.x, context.reconstructions()


def recon_mse(context: MetricContext) -> dict[str, float]:
    """Mean squared error per element of the test split."""
    x, recon = reconstruct(context)
    return {"recon_mse": F.mse_loss(recon, x).item()}


def recon_bce(context: MetricContext) -> dict[str, float]:
    """Binary cross-entropy in nats per sample (data in [0, 1] only; NaN for real-valued data,
    with the reason)."""
    if context.data.info.kind == "real":
        raise NotApplicable("a cross-entropy needs data in [0, 1]; this data is real-valued")
    x, recon = reconstruct(context)
    bce = F.binary_cross_entropy(recon.clamp(1e-7, 1 - 1e-7), x, reduction="none")
    return {"recon_bce": bce.flatten(1).sum(1).mean().item()}


def recon_psnr(context: MetricContext) -> dict[str, float]:
    """Peak signal-to-noise ratio in dB, per test image then averaged (peak 1 for data in [0, 1]).

    For real-valued data the peak is the test split's range (max - min). A perfect
    reconstruction's squared error is floored at 1e-10, so its PSNR stays finite.
    """
    x, recon = reconstruct(context)
    peak = 1.0 if context.data.info.kind != "real" else (x.max() - x.min()).item()
    mse = (recon - x).pow(2).flatten(1).mean(1).clamp_min(MSE_FLOOR)
    return {"recon_psnr": (10 * torch.log10(peak**2 / mse)).mean().item()}
