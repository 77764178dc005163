"""torch's global random stream, seeded for a block and restored after, on the device drawn on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded_on(device: torch.device, seed: int) -> Iterator[None]:
    """Inside the block, torch's global stream seeded with ``seed`` for draws on ``device``;
    the stream as it was after the block.

    On the CPU only the CPU's generator is seeded: ``torch.manual_seed`` also seeds every CUDA,
    XPU and MTIA device, and where none is initialised (a CUDA build on a machine without a GPU)
    queues each seeding with a formatted stack trace, 1 ms a call; the curves seed a pass every
    epoch of every trial, and the estimators every metric. Draws on the CPU are the same.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        if device.type == "cpu":
            torch.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)
        yield
