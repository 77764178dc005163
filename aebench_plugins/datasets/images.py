"""What every image set offers: seeded subsets, a seeded validation split, and binarisation.

Binarisation, ``binarize = ...``:

- ``"none"``: pixel intensities in [0, 1]; the data's kind is ``unit``.
- ``"static"``: every pixel of every split is replaced once by a seeded Bernoulli draw with the
  intensity as its probability (the fixed binarisation of Larochelle & Murray, 2011).
  Kind ``binary``.
- ``"dynamic"``: the stored training images keep their intensities and a fresh Bernoulli draw of
  each pixel is made every time a batch is drawn (``Data.batch_transform``), the protocol of the
  published MNIST likelihood results. The test and validation splits are binarised once, seeded,
  exactly as ``"static"`` binarises them, so that evaluation is deterministic. Kind ``binary``.

``DataInfo.levels``: unbinarised images are quantised, and say so: 256 levels for 8-bit
(``uint8``) images, or the ``levels`` that the caller gives for float images (scikit-learn's
digits: 17). Binarised data has ``levels = None``: its kind, ``binary``, already says {0, 1}, and
the stored training images of ``"dynamic"`` keep their grey levels. ``DataInfo.binarize`` is the
``binarize`` setting.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor

from aebench import Data, DataInfo, Split

Binarize = Literal["none", "static", "dynamic"]
Count = Annotated[int, Field(ge=1)] | None
ValFraction = Annotated[float, Field(ge=0, lt=1)]


def bernoulli_draw(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each pixel 1 with probability its intensity: the dynamic binarisation of one batch.

    A uniform draw below the intensity: on the CPU the very draws of ``torch.bernoulli(x,
    generator=generator)``, leaving the generator where it does (a test pins it), at under half
    its time (its per-element loop took 200 us for 20 MNIST images against 88 us).
    """
    uniform = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (uniform < x).to(x.dtype)


def to_unit_interval(x: Tensor) -> Tensor:
    """Float32 in [0, 1]: 8-bit pixels are divided by 255; floats are taken as already scaled."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _first(order: Tensor, n: int | None, available: int, what: str) -> Tensor:
    if n is None:
        return order
    if n > available:
        raise ValueError(f"{what} = {n}, but the split has only {available} images")
    return order[:n]


def _grey_levels(name: str, train: Split, test: Split, levels: int | None) -> int | None:
    """256 for uint8 images; else ``levels``, once every value is checked to lie on its grid."""
    if train.x.dtype == torch.uint8 and test.x.dtype == torch.uint8:
        return 256
    if levels is None:
        return None
    if levels < 2:
        raise ValueError(f"{name}: levels = {levels}; at least 2 expected")
    for split in (train, test):
        if split.x.numel() == 0:
            continue
        scaled = split.x.double() * (levels - 1)
        if (
            (scaled - scaled.round()).abs().max() > 1e-4
            or scaled.min() < 0
            or scaled.max() > levels - 1
        ):
            raise ValueError(
                f"{name}: levels = {levels}, but the images have values off the grid"
                f" k / {levels - 1} in [0, 1]"
            )
    return levels


def image_data(
    name: str,
    train: Split,
    test: Split,
    *,
    n_classes: int | None,
    n_train: int | None = None,
    n_test: int | None = None,
    val_fraction: float = 0.0,
    binarize: Binarize = "none",
    seed: int = 0,
    levels: int | None = None,
) -> Data:
    """Subset, split and binarise raw images (N, C, H, W) (uint8, or floats in [0, 1]).

    ``levels``: float images that take only the values ``k / (levels - 1)`` (checked); uint8
    images have 256 levels, whatever ``levels`` says.

    ``n_train`` images are a seeded draw from the training split (all of it when None), and the
    validation split is the first ``round(val_fraction * n_train)`` of them; the rest train. So a
    larger ``n_train`` with the same seed holds every image of a smaller one.
    """
    levels = _grey_levels(name, train, test, levels)
    draws = torch.Generator().manual_seed(seed)
    train_order = torch.randperm(len(train), generator=draws)
    test_order = torch.randperm(len(test), generator=draws)
    try:
        pool = _first(train_order, n_train, len(train), "n_train")
        tested = None if n_test is None else _first(test_order, n_test, len(test), "n_test")
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    n_val = round(val_fraction * len(pool))
    if n_val == len(pool):
        raise ValueError(f"{name}: val_fraction = {val_fraction} leaves no training images")
    if val_fraction > 0 and n_val == 0:  # asked for one: not silently none
        raise ValueError(f"{name}: val_fraction = {val_fraction} holds out no image of {len(pool)}")

    def take(split: Split, index: Tensor | None) -> Split:
        if index is None:
            return Split(to_unit_interval(split.x), split.y)
        return Split(to_unit_interval(split.x[index]), None if split.y is None else split.y[index])

    splits = {
        "test": take(test, tested),
        "val": take(train, pool[:n_val]) if n_val else None,
        "train": take(train, pool[n_val:]),
    }
    if binarize != "none":
        # test first, then val: both are binarised identically by "static" and "dynamic"
        binary = torch.Generator().manual_seed(seed)
        for key in ("test", "val", "train") if binarize == "static" else ("test", "val"):
            split = splits[key]
            if split is not None:
                splits[key] = Split(bernoulli_draw(split.x, binary), split.y)
    return Data(
        info=DataInfo(
            shape=tuple(splits["train"].x.shape[1:]),
            kind="unit" if binarize == "none" else "binary",
            n_classes=n_classes,
            levels=levels if binarize == "none" else None,
            binarize=binarize,
        ),
        train=splits["train"],
        test=splits["test"],
        val=splits["val"],
        batch_transform=bernoulli_draw if binarize == "dynamic" else None,
    )
