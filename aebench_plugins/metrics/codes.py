"""The deterministic code of a split, batched: what latent-space and sparsity metrics look at."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aebench import MetricContext, Split

EVAL_BATCH = 1024


def encode_batched(model: nn.Module, x: Tensor, batch_size: int = EVAL_BATCH) -> Tensor:
    """``model.encode`` of every input, flattened to (N, code size)."""
    return torch.cat([model.encode(b).flatten(1) for b in x.split(batch_size)])


def split_codes(context: MetricContext, split: Split) -> Tensor:
    """The codes of ``split``, flattened: the test split's are the trial's shared ones
    (``context.codes()``, encoded once for every metric), another split's are encoded here."""
    if split is context.data.test:
        return context.codes()
    return encode_batched(context.model, split.x)
