"""The random streams of a synthetic dataset's splits."""

from __future__ import annotations

import torch

SPLITS = ("train", "test")


def split_streams(generator: torch.Generator) -> dict[str, torch.Generator]:
    """A generator for each split, seeded from ``generator``'s next draws: each split is then a
    function of its own size alone (a larger ``n_train``, the same test set; drawn from one
    stream, the test set moved with ``n_train``)."""
    seeds = torch.randint(2**62, (len(SPLITS),), generator=generator).tolist()
    pairs = zip(SPLITS, seeds, strict=True)
    return {split: torch.Generator().manual_seed(seed) for split, seed in pairs}
