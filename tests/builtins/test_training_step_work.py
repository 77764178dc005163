"""What a built-in model's training step computes: its loss from logits, and no reconstruction
(a sigmoid over every pixel, 4-5% of a Burda VAE's batch-20 step) unless something reads it."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from aebench import DataInfo
from aebench.plugins.manager import Plugins

BINARY_IMAGES = DataInfo(shape=(1, 28, 28), kind="binary", n_classes=10)


class CountedOps(TorchDispatchMode):
    """The aten operators run inside, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["ae", "vae", "conv-vae"])
def test_a_training_step_computes_no_reconstruction_unless_read(plugins: Plugins, name) -> None:
    entry = plugins.models.get(name)
    torch.manual_seed(0)
    model = entry.factory(BINARY_IMAGES, **entry.params.model_validate({}).model_dump()).train()
    x = torch.rand(4, 1, 28, 28).round()
    with CountedOps() as step:  # (a loss's backward may need sigmoid: BCE with logits does)
        out = model(x)
        loss = model.loss(x, out).mean()
    assert step.counts["sigmoid"] == 0, step.counts
    loss.backward()

    with CountedOps() as read:
        recon = out.recon
    assert read.counts["sigmoid"] == 1
    assert recon.shape == x.shape
    assert 0 < recon.min() and recon.max() < 1  # probabilities, not logits
