"""scikit-learn's bundled 8x8 handwritten digits: offline, small, labelled."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from aebench import Data, Split
from aebench_plugins.datasets.images import Binarize, ValFraction, image_data


def digits(
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2,
    split_seed: int = 0,
    val_fraction: ValFraction = 0.0,
    binarize: Binarize = "none",
) -> Data:
    """8x8 handwritten digits (1,797 images, 10 classes), 17 grey levels in [0, 1]; seeded split."""
    from sklearn.datasets import load_digits  # imported here: `aebench list` stays fast

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return image_data(
        "digits",
        Split(x[train], y[train]),
        Split(x[test], y[test]),
        n_classes=10,
        val_fraction=val_fraction,
        binarize=binarize,
        seed=split_seed,
        levels=17,  # pixel counts 0 .. 16, divided by 16
    )
