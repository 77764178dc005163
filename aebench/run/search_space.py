"""Each searched parameter's space as an Optuna distribution (the ``[search]`` section itself is
``aebench.run.search_section``).

A space is written where its parameter lives: on a ``[[models]]`` or ``[[regularizers]]`` entry
(``search = { latent_dim = [2, 4, 8] }``) and, for ``[train]`` settings, in ``[search.train]``.
Each parameter's space is a list of values (categorical, in the order given) or a range table:
``{ low = 1e-4, high = 1e-2, log = true }`` (floats), ``{ low = 1, high = 4 }`` (integers: both
bounds written as integers; ``step`` optional).

This module knows nothing of suites or plugins (``aebench.run.search_checks`` checks a space
against them); it turns one written space into a ``Dimension`` or says what is wrong with it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import BaseModel, ConfigDict

EDGE = 0.02  # a best value within this share of its range's width from a bound is on its edge


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = None


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: its Optuna distribution, and how a sampled value is decoded."""

    distribution: BaseDistribution
    encoded: bool = False  # categorical values that Optuna cannot hold (lists), stored as JSON

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self.encoded else value

    def grid(self) -> list[Any] | None:
        """Every value, for the grid sampler; None for a continuous range (no step)."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if isinstance(d, IntDistribution):
            return list(range(d.low, d.high + 1, d.step))
        if isinstance(d, FloatDistribution) and d.step is not None:
            count = int(round((d.high - d.low) / d.step)) + 1
            return [float(v) for v in np.linspace(d.low, d.low + (count - 1) * d.step, count)]
        return None

    def bounds(self) -> list[Any]:
        """The values at the ends of the space (each choice of a list), to check against the
        parameter's own schema before anything runs."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return [self.decode(c) for c in d.choices]
        return [d.low, d.high]  # type: ignore[attr-defined]

    def on_edge(self, value: Any) -> str | None:
        """``"at the top of its range [1, 8]"`` when a best ``value`` of a numeric space lies on
        an end of it (a larger range might do better); else None."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            numbers = [c for c in d.choices if _is_number(c)]
            if len(numbers) != len(d.choices) or len(numbers) < 3:
                return None  # two values are both ends: no news in being on one
            low, high, width = min(numbers), max(numbers), 0.0
        elif isinstance(d, IntDistribution | FloatDistribution):
            # A range's edge is a share of its width, integers' too (17 of [16, 1024] is on it),
            # in log units on a log scale; never less than its exact ends.
            low, high = d.low, d.high
            scale = (math.log(high) - math.log(low)) if d.log else (high - low)
            width = EDGE * scale
        else:
            return None
        if not _is_number(value) or high == low:
            return None

        def near(a: float, b: float) -> bool:
            if getattr(d, "log", False):
                return abs(math.log(a) - math.log(b)) <= width
            return abs(a - b) <= width

        if near(value, low):
            return f"at the bottom of its range [{low:g}, {high:g}]"
        if near(value, high):
            return f"at the top of its range [{low:g}, {high:g}]"
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_space(written: Any) -> Dimension | str:
    """The ``Dimension`` a written space describes, or what is wrong with it (one phrase)."""
    if isinstance(written, list):
        return _categorical(written)
    if isinstance(written, dict):
        if not written:
            return "empty space; give a list of values or { low = ..., high = ... }"
        try:
            spec = _Range.model_validate(written)
        except pydantic.ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(part) for part in error["loc"][:1])
            what = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            return f"{key}: {what} (a range takes low, high, log, step)"
        return _range(spec)
    return "a list of values or a range table { low = ..., high = ... } expected"


def _categorical(values: list[Any]) -> Dimension | str:
    if not values:
        return "empty list; give at least one value"
    plain = all(v is None or isinstance(v, bool | int | float | str) for v in values)
    choices = values if plain else [json.dumps(v) for v in values]
    if len(set(map(json.dumps, values))) != len(values):
        return "a value is listed twice"
    return Dimension(CategoricalDistribution(choices), encoded=not plain)


def _range(spec: _Range) -> Dimension | str:
    if not math.isfinite(spec.low) or not math.isfinite(spec.high):
        return "the bounds must be finite numbers"
    if spec.low > spec.high:
        return f"inverted range: low {spec.low:g} > high {spec.high:g}"
    if spec.log and spec.low <= 0:
        return f"a log range needs low > 0, not {spec.low:g}"
    if spec.step is not None and spec.step <= 0:
        return f"step must be > 0, not {spec.step:g}"
    if spec.log and spec.step is not None:
        return "a log range takes no step"
    integers = all(isinstance(v, int) for v in (spec.low, spec.high, spec.step or 1))
    if integers:
        step = int(spec.step or 1)
        return Dimension(IntDistribution(int(spec.low), int(spec.high), log=spec.log, step=step))
    step = None if spec.step is None else float(spec.step)
    if step is not None and not _fits(spec.low, spec.high, step):
        return f"step {step:g} does not divide high - low ({spec.high - spec.low:g})"
    return Dimension(FloatDistribution(float(spec.low), float(spec.high), log=spec.log, step=step))


def _fits(low: float, high: float, step: float) -> bool:
    count = (high - low) / step
    return abs(count - round(count)) < 1e-9 * max(1.0, count)
