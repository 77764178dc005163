"""Checks that a dataset keeps the contract, applied where its data enters the core.

A float64 split, a label vector of the wrong length or a ``render`` that reads its factors in
another order breaks no dataset code: it breaks whatever first reads the data (a model's forward,
a metric), which the traceback then blames. ``check_data`` finds these where the data is built,
before any model sees it, with messages that say what was expected; the runner names the dataset
plugin in front of them (``aebench.run.data``), and ``aebench.testing.check_dataset`` runs them
in plugin authors' own tests.

They are cheap: vectorised reductions over the splits, and a few samples for ``log_density`` and
``render``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aebench.contract.checks import ContractError
from aebench.contract.data import BatchTransform, Data, DataInfo, Split

SAMPLES = 8  # of each split, for log_density and render
DYNAMIC_SAMPLES = 1024  # training inputs drawn through batch_transform for the range check
# A rendered sample agrees with the split's own image of its factors when their mean squared
# difference is at most this fraction of the split's variance: exact for a deterministic
# renderer, and loose enough for a pixel that lands on the other side of an edge on another
# device's arithmetic. A renderer reading its factors in another order (a sprite drawn at (y, x))
# misses by about the variance itself.
AGREEMENT = 0.05


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def check_data(data: Data) -> None:
    """``data`` as the contract (``aebench.Data``) describes it, else a ``ContractError`` saying
    what was expected: every split's inputs, labels and factors, then ``log_density`` and
    ``render`` on samples of the training and test splits."""
    _expect(isinstance(data, Data), f"the factory returned {type(data).__name__}, not aebench.Data")
    info = data.info
    splits = {"train": data.train, "test": data.test, "val": data.val}
    for name, split in splits.items():
        if split is not None:
            check_split(name, split, info, data.batch_transform if name == "train" else None)
    for name in ("train", "test"):
        split = splits[name]
        assert split is not None  # by the dataclass's types; for the type checker
        if data.log_density is not None:
            _check_log_density(name, data, split.x[:SAMPLES])
        if data.render is not None:
            _check_render(name, data, split)


def check_split(
    name: str, split: Split, info: DataInfo, transform: BatchTransform | None = None
) -> None:
    """One split's ``x`` (float32, ``(N, *info.shape)``, values of ``info.kind``), ``y`` and
    ``factors``. Inputs drawn through a ``batch_transform`` (dynamic binarisation) are checked as
    drawn, on a slice."""
    x, n = split.x, len(split.x)
    _expect(isinstance(x, Tensor), f"{name}.x is {type(x).__name__}; expected a torch.Tensor")
    _expect(n > 0, f"{name} split is empty")
    _expect(
        x.dtype == torch.float32,
        f"{name}.x is {x.dtype}; expected torch.float32 (convert with x.float())",
    )
    _expect(
        tuple(x.shape[1:]) == tuple(info.shape),
        f"{name}.x has shape {tuple(x.shape)}; expected (N, *info.shape) ="
        f" (N, {', '.join(map(str, info.shape))})",
    )
    if transform is None:
        _check_range(f"{name}.x", x, info)
    else:
        drawn = transform(x[:DYNAMIC_SAMPLES], torch.Generator(device=x.device).manual_seed(0))
        _check_range(f"{name}.x as drawn by batch_transform", drawn, info)
    if split.y is not None:
        _check_labels(name, split.y, n, info)
    if split.factors is not None:
        _check_factors(name, split.factors, n, info)


def _check_labels(name: str, y: Tensor, n: int, info: DataInfo) -> None:
    _expect(
        isinstance(y, Tensor) and tuple(y.shape) == (n,),
        f"{name}.y has shape {_shape(y)}; expected one label per sample, ({n},)",
    )
    _expect(
        not y.is_floating_point() and not y.is_complex(),
        f"{name}.y is {y.dtype}; expected integer class labels (torch.int64)",
    )
    if info.n_classes is not None:
        low, high = int(y.min()), int(y.max())
        _expect(
            low >= 0 and high < info.n_classes,
            f"{name}.y holds labels {low} .. {high}; expected 0 .. {info.n_classes - 1}"
            f" (info.n_classes = {info.n_classes})",
        )


def _check_range(name: str, x: Tensor, info: DataInfo) -> None:
    """Values of the data's kind: {0, 1} for binary, [0, 1] for unit, finite for real."""
    if info.kind == "binary":
        _expect(
            bool(((x == 0) | (x == 1)).all()),
            f"{name} holds values other than 0 and 1; info.kind 'binary' expects {{0, 1}}",
        )
    elif info.kind == "unit":
        low, high = float(x.min()), float(x.max())  # NaN fails both comparisons
        _expect(
            low >= 0.0 and high <= 1.0,
            f"{name} ranges over [{low:g}, {high:g}]; info.kind 'unit' expects [0, 1]",
        )
    else:
        _expect(bool(torch.isfinite(x).all()), f"{name} holds NaN or inf; expected finite values")


def _check_factors(name: str, factors: Tensor, n: int, info: DataInfo) -> None:
    names = info.factor_names
    _expect(
        names is not None and info.factor_sizes is not None,
        f"{name}.factors are given but info.factor_names and info.factor_sizes are None",
    )
    assert names is not None and info.factor_sizes is not None  # for the type checker
    _expect(
        tuple(factors.shape) == (n, len(names)),
        f"{name}.factors has shape {tuple(factors.shape)}; expected (N, len(info.factor_names))"
        f" = ({n}, {len(names)})",
    )
    _expect(
        not factors.is_floating_point() and not factors.is_complex(),
        f"{name}.factors are {factors.dtype}; expected integer indices (torch.int64)",
    )
    sizes = torch.tensor(info.factor_sizes, device=factors.device)
    _expect(
        bool(((factors >= 0) & (factors < sizes)).all()),
        f"{name}.factors leave 0 .. size - 1 of info.factor_sizes {tuple(info.factor_sizes)}",
    )


def _check_log_density(name: str, data: Data, x: Tensor) -> None:
    density = data.log_density(x)  # type: ignore[misc]
    _expect(
        isinstance(density, Tensor) and tuple(density.shape) == (len(x),),
        f"log_density({name}.x[:{len(x)}]) has shape {_shape(density)};"
        f" expected one number per sample, ({len(x)},)",
    )
    _expect(
        bool(torch.isfinite(density).all()),
        f"log_density({name}.x[:{len(x)}]) is not finite; expected a finite log-density",
    )


def _check_render(name: str, data: Data, split: Split) -> None:
    """Float32 samples of the data's shape, the same for the same factors, and the split's own
    images for the split's own factors."""
    info = data.info
    _expect(
        split.factors is not None,
        f"render is given but {name}.factors is None; expected the factors it renders from",
    )
    assert split.factors is not None and data.render is not None  # for the type checker
    factors, x = split.factors[:SAMPLES], split.x[:SAMPLES]
    k = len(factors)
    rendered = data.render(factors)
    call = f"render({name}.factors[:{k}])"
    expected = f"({k}, {', '.join(map(str, info.shape))})"
    _expect(
        isinstance(rendered, Tensor) and tuple(rendered.shape) == (k, *info.shape),
        f"{call} has shape {_shape(rendered)}; expected (k, *info.shape) = {expected}",
    )
    _expect(rendered.dtype == torch.float32, f"{call} is {rendered.dtype}; expected torch.float32")
    _expect(
        torch.equal(rendered, data.render(factors)),
        f"{call} differs between two calls; expected the same samples for the same factors",
    )
    scale = float(split.x.var()) if len(split.x) > 1 else 0.0
    misses = (rendered - x).pow(2).flatten(1).mean(1)
    worst = int(misses.argmax())
    _expect(
        float(misses[worst]) <= AGREEMENT * scale + 1e-6,
        f"{call} disagrees with {name}.x[:{k}]: sample {worst} (factors"
        f" {factors[worst].tolist()}) is off by a mean squared {float(misses[worst]):.3g},"
        f" {float(misses[worst]) / max(scale, 1e-12):.0%} of the data's variance; expected the"
        f" split's own images (within {AGREEMENT:.0%}): are the factors read in the order of"
        f" info.factor_names {tuple(info.factor_names or ())}?",
    )


def _shape(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__
