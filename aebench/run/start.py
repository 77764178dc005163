"""What a trial started from: a short digest of its model's weights as training begins.

Two trials of one seed, in two results tables, started alike when their digests agree: the same
initial weights (drawn from the seed), fitted the same way before training. ``aebench compare``
pairs a configuration's seeds across the tables only then (``aebench.views.compare_verdicts``):
a change that left the start as it was (a fix in a metric, a new learning rate, a rerun on a GPU
that is not bit-for-bit) moves each seed's values together, so their differences are the thing to
test; a change that drew other weights (a layer resized) leaves little shared to pair on.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn
from torch.nn.parameter import is_lazy

# Of each tensor, the first values only: enough to tell other draws (they differ from the first
# value on), and a cost that does not grow with the model.
HEAD = 4096


@torch.no_grad()
def start_digest(model: nn.Module) -> str:
    """A 16-hex-digit digest of the model's parameters and buffers: names, shapes, dtypes and
    their first ``HEAD`` values."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if is_lazy(tensor):  # a lazy module not yet run: no values, no shape yet
            digest.update(f"{name}:lazy;".encode())
            continue
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        head = tensor.detach().reshape(-1)[:HEAD]
        digest.update(head.to("cpu", torch.float64).numpy().tobytes())
    return digest.hexdigest()
