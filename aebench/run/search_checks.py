"""A suite's search checked before anything runs: each space against the parameter it tunes, the
objective against the declared columns, and (once data is loaded) a validation split to tune on.

Every mistake is one line naming the file and the place (``models[0].search.latent_dim``), all
raised together as a ``SuiteError``, like ``load_suite``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pydantic
import torch

from aebench.contract.columns import CORE_COLUMNS
from aebench.plugins.manager import Plugins
from aebench.run.search_section import SearchSection
from aebench.run.search_space import Dimension, parse_space
from aebench.run.sections import PluginEntry, Problems, SuiteError, TrainSection, explain

if TYPE_CHECKING:
    from aebench.run.data import DataCache
    from aebench.run.suite import Suite

# [train] settings a search may not tune: the split it measures on, the sweep, and what does not
# change the trained model.
NOT_SEARCHED = frozenset({"grid", "val_fraction", "checkpoint_every"})
VALIDATION_OBJECTIVE = "best_val_loss"  # the training column measured on the validation split


def spaces(suite: Suite) -> dict[str, dict[str, Dimension]]:
    """Each place's searched parameters (``models[0]``, ``regularizers[1]``, ``train``): name ->
    its ``Dimension``. Only for a suite that ``check_search`` passed."""
    out: dict[str, dict[str, Dimension]] = {}
    spec = suite.spec
    for section in ("models", "regularizers"):
        for i, entry in enumerate(getattr(spec, section) or []):
            if entry.search:
                out[f"{section}[{i}]"] = _parsed(entry.search)
    if spec.search is not None and spec.search.train:
        out["train"] = _parsed(spec.search.train)
    return out


def _parsed(written: dict[str, Any]) -> dict[str, Dimension]:
    found = {name: parse_space(space) for name, space in written.items()}
    return {name: d for name, d in found.items() if isinstance(d, Dimension)}


def objective_metric(suite: Suite, plugins: Plugins) -> str | None:
    """The metric measuring the objective on the validation split; None for ``best_val_loss``."""
    assert suite.spec.search is not None
    name = suite.spec.search.objective
    for entry in plugins.metrics:
        if any(column.name == name for column in entry.factory.columns):
            return entry.name
    return None


def direction(suite: Suite, plugins: Plugins, strict: bool = False) -> str | None:
    """``minimize`` or ``maximize``: the objective's column says which way is better (None,
    when ``strict``, for a column that declares neither)."""
    assert suite.spec.search is not None
    name = suite.spec.search.objective
    columns = {c.name: c for e in plugins.metrics for c in e.factory.columns} | CORE_COLUMNS
    way = columns[name].direction
    if strict and way == 0:
        return None
    return "maximize" if way > 0 else "minimize"


def check_search(suite: Suite, plugins: Plugins) -> None:
    """Raise ``SuiteError`` with every mistake in the suite's search, one line each."""
    spec, problems = suite.spec, Problems(suite.path)
    for i, entry in enumerate(spec.datasets):
        if entry.search:
            problems.add(f"datasets[{i}].search", "datasets are not tuned; use a grid")
    searched = False
    for section in ("models", "regularizers"):
        registry = plugins.registries[section]
        for i, entry in enumerate(getattr(spec, section) or []):
            searched |= bool(entry.search)
            _check_entry(f"{section}[{i}]", entry, registry, problems)
    search = spec.search
    if search is None:
        if searched:
            problems.add("search", "spaces are given but no [search] section with the budget")
        problems.raise_any()
        return
    _check_train(spec.train, search, problems)
    if search.trial_seed in spec.suite.seeds:
        problems.add(
            "search.trial_seed",
            f"{search.trial_seed} is one of [suite] seeds: that seed's row would be the search"
            " trial its parameters were picked by, not a fresh sample",
        )
    _check_objective(search, suite, plugins, problems)
    if search.pruner != "none" and spec.suite.isolate:
        problems.add("search.pruner", "needs [suite] isolate = false (it hears training's epochs)")
    if search.sampler == "grid":
        for place, dimensions in spaces(suite).items():
            for name, dimension in dimensions.items():
                if dimension.grid() is None:
                    where = "search.train" if place == "train" else f"{place}.search"
                    problems.add(f"{where}.{name}", "the grid sampler needs a list or a step")
    problems.raise_any()


def _check_entry(where: str, entry: PluginEntry, registry: Any, problems: Problems) -> None:
    if not entry.search:
        return
    try:
        plugin = registry.get(entry.plugin)
    except LookupError:
        return  # load_suite said so
    takes = plugin.params.model_fields
    for name, written in entry.search.items():
        place = f"{where}.search.{name}"
        if name not in takes:
            listed = ", ".join(takes) or "no parameters"
            problems.add(
                place,
                f"{registry.kind} {entry.plugin!r} takes no parameter {name!r}"
                f" (it takes: {listed})",
            )
            continue
        for fixed in ("params", "grid"):
            if name in getattr(entry, fixed):
                problems.add(place, f"also fixed in {where}.{fixed}; search it or fix it")

        def refusals(value: Any, name: str = name) -> list[str]:
            try:
                plugin.params.model_validate({**entry.params, name: value})
            except pydantic.ValidationError as exc:
                return [
                    f"{registry.kind} {entry.plugin!r}: {explain(error)}"
                    for error in exc.errors()
                    if error["loc"] and error["loc"][0] == name
                ]
            return []

        _check_space(place, written, refusals, problems)


def _check_train(train: TrainSection, search: SearchSection, problems: Problems) -> None:
    base = train.model_dump(exclude={"grid"})
    for name, written in search.train.items():
        place = f"search.train.{name}"
        if name not in TrainSection.model_fields or name in NOT_SEARCHED:
            problems.add(place, "not a [train] setting a search may tune")
            continue
        if name in train.model_fields_set or name in train.grid:
            problems.add(place, "also fixed in [train]; search it or fix it")

        def refusals(value: Any, name: str = name) -> list[str]:
            try:
                TrainSection.model_validate(base | {name: value})
            except pydantic.ValidationError as exc:
                return [explain(exc.errors()[0])]
            return []

        _check_space(place, written, refusals, problems)


def _check_space(
    place: str, written: Any, refusals: Callable[[Any], list[str]], problems: Problems
) -> None:
    """A space that parses, and whose bounds its parameter's schema takes (``refusals`` of a
    value: why it is refused, one entry per error)."""
    dimension = parse_space(written)
    if isinstance(dimension, str):
        problems.add(place, dimension)
        return
    for value in dimension.bounds():
        for why in refusals(value):
            problems.add(place, f"{value!r}: {why}")


def _check_objective(
    search: SearchSection, suite: Suite, plugins: Plugins, problems: Problems
) -> None:
    name = search.objective
    if name == VALIDATION_OBJECTIVE:
        return
    metric = objective_metric(suite, plugins)
    if metric is not None:
        if direction(suite, plugins, strict=True) is None:
            problems.add("search.objective", f"{name!r} declares neither higher nor lower better")
        return
    if name in CORE_COLUMNS:
        problems.add(
            "search.objective",
            f"{name!r} is not measured on the validation split"
            f" (use {VALIDATION_OBJECTIVE!r} or a metric's column)",
        )
        return
    known = sorted({c.name for e in plugins.metrics for c in e.factory.columns})
    problems.add(
        "search.objective",
        f"{name!r} is not a declared column (known: {VALIDATION_OBJECTIVE}, {', '.join(known)})",
    )


def check_search_data(suite: Suite, cache: DataCache, device: torch.device) -> None:
    """After the data is loaded: each searched configuration's dataset has a validation split to
    tune on, its own or ``[train] val_fraction``; a ``SuiteError`` otherwise."""
    if suite.spec.search is None:
        return
    for trial in suite.trials:
        if trial.train.get("val_fraction"):
            continue
        data = cache.get(trial.dataset, device)
        if data.val is None:
            raise SuiteError(
                f"{suite.path}: search: needs a validation split; set train.val_fraction"
                f" ({trial.dataset.plugin} has none of its own, and the test split is never"
                " searched on)"
            )
