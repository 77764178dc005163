"""Sprite images generated from known factors, in code, without a download.

``dsprites``: the dSprites grid (Matthey et al. 2017): shape (square, ellipse, heart) x scale
(6 values, 0.5 .. 1) x orientation (40 values, 0 .. 2 pi) x x-position (32 values, 0 .. 1) x
y-position (32 values, 0 .. 1), 64x64 binary images; 737,280 combinations, of which only the
sampled ones are drawn. ``shapes-small``: three shapes x 3 scales x 8 x 8 positions on 16x16, for
tests that train on factor data in a second.

The train and test splits are disjoint seeded draws of factor combinations, without
replacement; each split carries its factors as indices (``Split.factors``) and the data can
``render`` any combination, so that metrics can fix one factor and vary the others. A factor
restricted to one value is constant, not a factor of the data: it is left out of ``factors``.
The labels ``y`` are the shape, where it varies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import AfterValidator, Field
from torch import Tensor

from aebench import Data, DataInfo, Split
from aebench_plugins.datasets.sprites import SHAPES, Geometry, render_sprites

FACTOR_NAMES = ("shape", "scale", "orientation", "x", "y")  # the order render_sprites takes
DSPRITES_GEOMETRY = Geometry(half=0.15, margin=0.22)  # 64x64: a square of scale 1 is 19 px wide
SMALL_GEOMETRY = Geometry(half=0.25, margin=0.25)  # 16x16: every combination a distinct image


@dataclass(frozen=True)
class SpriteFactors:
    """Each factor's values (all five, in FACTOR_NAMES' order) and the images of their indices.

    ``values[k]`` lists the values factor ``k`` takes; those with more than one value are the
    data's factors, in the columns of ``Split.factors``; the others stay at their one value.
    Calling it renders the images of factor indices ``(N, n_factors)``: ``Data.render``.
    """

    values: tuple[tuple[float, ...], ...]
    size: int
    geometry: Geometry

    @property
    def varying(self) -> tuple[int, ...]:
        return tuple(k for k, v in enumerate(self.values) if len(v) > 1)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(FACTOR_NAMES[k] for k in self.varying)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(self.values[k]) for k in self.varying)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` distinct factor combinations ``(n, n_factors)``, drawn uniformly."""
        total = math.prod(self.sizes)
        if n > total:
            raise ValueError(f"{n} samples asked of {total} factor combinations")
        flat = torch.randperm(total, generator=generator)[:n]
        return torch.stack(torch.unravel_index(flat, self.sizes), dim=1)

    def __call__(self, factors: Tensor) -> Tensor:
        if factors.ndim != 2 or factors.shape[1] != len(self.varying):
            raise ValueError(
                f"render: factors of shape (N, {len(self.varying)}) expected, not"
                f" {tuple(factors.shape)}"
            )
        columns = dict(zip(self.varying, factors.long().unbind(1), strict=True))
        n, device = len(factors), factors.device
        full = []
        for k, values in enumerate(self.values):
            table = torch.tensor(values, dtype=torch.float64, device=device)
            index = columns.get(k, torch.zeros(n, dtype=torch.long, device=device))
            full.append(table[index])
        shape, scale, angle, x, y = full
        return render_sprites(
            shape.long(), scale, angle, x, y, size=self.size, geometry=self.geometry
        )


def _index_range(n: int) -> object:
    """A suite parameter ``[first, last]``: indices into a factor's ``n`` values, inclusive."""

    def check(pair: list[int]) -> list[int]:
        if not 0 <= pair[0] <= pair[1] < n:
            raise ValueError(f"[first, last] with 0 <= first <= last <= {n - 1} expected")
        return pair

    return Annotated[list[int], Field(min_length=2, max_length=2), AfterValidator(check)]


ShapeRange = _index_range(3)
ScaleRange = _index_range(6)
OrientationRange = _index_range(40)
PositionRange = _index_range(32)


def _linspace(start: float, end: float, steps: int, pick: list[int]) -> tuple[float, ...]:
    """The values ``pick[0] .. pick[1]`` (inclusive) of ``torch.linspace(start, end, steps)``."""
    grid = torch.linspace(start, end, steps, dtype=torch.float64).tolist()
    return tuple(grid[pick[0] : pick[1] + 1])


def sprite_data(factors: SpriteFactors, n_train: int, n_test: int, seed: int, name: str) -> Data:
    """Disjoint seeded train and test draws of ``factors``' combinations, rendered. The test
    split is the draw's first ``n_test``: the same test for any ``n_train`` (a learning curve
    over ``n_train`` is measured on one test set), and a larger ``n_train`` holds a smaller's."""
    try:
        drawn = factors.sample(n_train + n_test, torch.Generator().manual_seed(seed))
    except ValueError as exc:
        raise ValueError(f"{name}: n_train + n_test = {n_train + n_test}: {exc}") from None
    shape_column = factors.names.index("shape") if "shape" in factors.names else None

    def split(index: Tensor) -> Split:
        labels = None if shape_column is None else index[:, shape_column].clone()
        return Split(factors(index), labels, index)

    return Data(
        info=DataInfo(
            shape=(1, factors.size, factors.size),
            kind="binary",
            n_classes=None if shape_column is None else factors.sizes[shape_column],
            factor_names=factors.names,
            factor_sizes=factors.sizes,
        ),
        train=split(drawn[n_test:]),
        test=split(drawn[:n_test]),
        render=factors,
    )


def dsprites(
    n_train: Annotated[int, Field(ge=1)] = 10_000,
    n_test: Annotated[int, Field(ge=1)] = 2_000,
    seed: int = 0,
    shape: ShapeRange = (0, 2),
    scale: ScaleRange = (0, 5),
    orientation: OrientationRange = (0, 39),
    x: PositionRange = (0, 31),
    y: PositionRange = (0, 31),
) -> Data:
    """dSprites, generated: 3 shapes x 6 scales x 40 orientations x 32 x 32 positions, 64x64.

    ``n_train`` and ``n_test`` distinct factor combinations, a seeded draw; each factor may be
    limited to ``[first, last]`` of its values (indices; a single value drops the factor).
    """
    factors = SpriteFactors(
        values=(
            tuple(float(s) for s in range(shape[0], shape[1] + 1)),
            _linspace(0.5, 1.0, 6, list(scale)),
            _linspace(0.0, 2 * math.pi, 40, list(orientation)),
            _linspace(0.0, 1.0, 32, list(x)),
            _linspace(0.0, 1.0, 32, list(y)),
        ),
        size=64,
        geometry=DSPRITES_GEOMETRY,
    )
    return sprite_data(factors, n_train, n_test, seed, "dsprites")


def shapes_small(
    n_train: Annotated[int, Field(ge=1)] = 448,
    n_test: Annotated[int, Field(ge=1)] = 128,
    seed: int = 0,
) -> Data:
    """Small sprites for fast tests: 3 shapes x 3 scales x 8 x 8 positions (576), 16x16 binary.

    Unrotated; ``n_train`` and ``n_test`` distinct combinations, a seeded draw.
    """
    factors = SpriteFactors(
        values=(
            tuple(float(s) for s in range(len(SHAPES))),
            (0.5, 0.75, 1.0),
            (0.0,),
            _linspace(0.0, 1.0, 8, [0, 7]),
            _linspace(0.0, 1.0, 8, [0, 7]),
        ),
        size=16,
        geometry=SMALL_GEOMETRY,
    )
    return sprite_data(factors, n_train, n_test, seed, "shapes-small")
