"""Data as plugins hand it to the core: its description, its splits, and their batches.

``docs/plugins.md`` is the reference of every contract; plugins import these from ``aebench``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

DataKind = Literal["binary", "unit", "real"]
Binarization = Literal["none", "static", "dynamic"]


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data to build itself: ``factory(info, **params)``.

    - ``shape``: one sample's shape, ``(C, H, W)`` for images or ``(D,)`` for vectors.
    - ``kind``: ``"binary"`` (values in {0, 1}), ``"unit"`` (in [0, 1]) or ``"real"``; models
      choose their likelihood from it. With a ``Data.batch_transform`` it describes the batches as
      drawn (dynamic binarisation: ``"binary"``).
    - ``n_classes``: the number of classes of labelled data (labels ``0 .. n_classes - 1``), or
      None.
    - ``levels``: for ``"unit"`` data that takes only the evenly spaced values ``k / (levels - 1)``
      (8-bit images: 256; scikit-learn's digits: 17), their number; None where the values are not
      quantised. A likelihood over exactly these levels is a mass function of the data, whose
      bits per dimension are those that the literature reports.
    - ``binarize``: for image data, how the splits were binarised (``"none"``, ``"static"``,
      ``"dynamic"``); None for data where binarisation does not apply. It is part of the
      likelihood protocol written in every row, so that tables of different protocols are never
      compared silently.
    - ``factor_names`` and ``factor_sizes``: for data generated from known factors (dSprites'
      shape, scale, orientation, position), each factor's name and its number of values; the
      splits' ``factors`` hold each sample's values as indices ``0 .. size - 1``. None for data
      without known factors. Disentanglement metrics read them.
    """

    shape: tuple[int, ...]  # one sample: (C, H, W) or (D,)
    kind: DataKind  # binary {0, 1}, unit interval [0, 1], or real
    n_classes: int | None = None
    levels: int | None = None  # unit data on the grid k / (levels - 1)
    binarize: Binarization | None = None  # image data: "none", "static" or "dynamic"
    factor_names: tuple[str, ...] | None = None  # the ground-truth factors, where known
    factor_sizes: tuple[int, ...] | None = None  # each factor's number of values

    def __post_init__(self) -> None:
        names, sizes = self.factor_names, self.factor_sizes
        if (names is None) != (sizes is None):
            raise ValueError("DataInfo: factor_names and factor_sizes are given together")
        if names is not None and sizes is not None:
            if len(names) != len(sizes) or not names:
                raise ValueError(f"DataInfo: {len(names)} factor names but {len(sizes)} sizes")
            if min(sizes) < 1:
                raise ValueError(f"DataInfo: factor_sizes {sizes}: each factor has a value")


@dataclass
class Split:
    """One split of a dataset: inputs ``x`` and, where known, labels ``y`` and factors.

    - ``x``: ``(N, *DataInfo.shape)``, float32, holding values of the data's kind.
    - ``y``: ``(N,)`` integer class labels, or None for unlabelled data. Metrics that require
      ``"labelled data"`` get NaN where the test split has no labels.
    - ``factors``: ``(N, n_factors)`` integer (int64) values of the ground-truth factors that
      generated each sample, factor ``i`` in ``0 .. DataInfo.factor_sizes[i] - 1``; None where
      they are not known. Metrics that require ``"ground-truth factors"`` get NaN without them.
    """

    x: Tensor
    y: Tensor | None = None
    factors: Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device | str) -> Split:
        return Split(
            self.x.to(device),
            None if self.y is None else self.y.to(device),
            None if self.factors is None else self.factors.to(device),
        )

    def take(self, index: Tensor) -> Split:
        """The samples at ``index``, with their labels and factors."""
        return Split(
            self.x[index],
            None if self.y is None else self.y[index],
            None if self.factors is None else self.factors[index],
        )


# Applied to every batch as it is drawn (dynamic binarisation); never to the stored tensors.
BatchTransform = Callable[[Tensor, torch.Generator], Tensor]


@dataclass
class Data:
    """A dataset, materialised: what a dataset factory returns.

    The contract: ``register(name, factory)`` in ``aebench_register_datasets``, and
    ``factory(**params) -> Data``, its parameters typed and defaulted in its signature (set by a
    suite's ``params`` and ``grid``). The splits are deterministic: the same parameters give the
    same tensors. A dataset is built from its parameters alone and shared by every trial that uses
    them, whatever the trial's seed, so one that draws anything takes a ``seed`` parameter of its
    own. Tensors may be on the CPU; the core moves them to the trial's device (``to``).

    - ``info``: shape, kind and number of classes (``DataInfo``).
    - ``train``, ``test``: ``Split``s; training uses ``train``, metrics measure ``test`` (and may
      fit on ``train``).
    - ``val``: an optional validation split; the core neither trains nor measures on it.
    - ``batch_transform(x, generator) -> x``: applied to every training batch as it is drawn, with
      the trial's seeded generator, never to the stored tensors or to ``test``/``val`` (dynamic
      binarisation: ``torch.bernoulli(x, generator=generator)``). What the core holds out of
      ``train`` to validate on (``[train] val_fraction``) gets one seeded draw of it, as do the
      training inputs whose loss terms it records: inputs of the kind training sees.
    - ``log_density(x) -> (N,)``: the exact log-density of each sample of ``x`` ``(N, *shape)``, in
      nats, when the data's true distribution is known (synthetic sets); called on the trial's
      device.
    - ``render(factors) -> x``: for data generated from known factors, the samples of the given
      factor values ``(N, n_factors)`` (indices, as in ``Split.factors``), ``(N, *shape)`` float32
      on the factors' device; deterministic. Metrics that intervene on factors (fix one, vary the
      others: the BetaVAE and FactorVAE scores) require ``"rendering from factors"``.

    ``aebench.testing.check_dataset`` checks a factory against this contract.
    """

    info: DataInfo
    train: Split
    test: Split
    val: Split | None = None
    batch_transform: BatchTransform | None = None
    # Exact log-density of one sample, when the data's true distribution is known (synthetic sets).
    log_density: Callable[[Tensor], Tensor] | None = None
    # The samples of given factor values, when the data is generated from known factors.
    render: Callable[[Tensor], Tensor] | None = None

    def to(self, device: torch.device | str) -> Data:
        val = None if self.val is None else self.val.to(device)
        return replace(self, train=self.train.to(device), test=self.test.to(device), val=val)
