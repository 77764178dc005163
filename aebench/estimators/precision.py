"""The numeric precision of a pass: fp32, or bf16 autocast. Training's forward pass and losses
(``[train] precision``) and the likelihood estimators' decoder passes (``[eval] precision``) run
in it."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for "bf16"; nothing at all for fp32 (entering a disabled torch.autocast still
    costs microseconds a training step)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
