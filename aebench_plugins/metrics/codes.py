"""The deterministic code of a split, batched: what latent-space and sparsity metrics look at."""

from __future__ import annotations

import torch
from torch import Tensor, nn

EVAL_BATCH = 1024


def encode_batched(model: nn.Module, x: Tensor, batch_size: int = EVAL_BATCH) -> Tensor:
    """``model.encode`` of every input, flattened to (N, code size)."""
    return torch.cat([model.encode(b).flatten(1) for b in x.split(batch_size)])
