"""suite.toml -> a validated Suite -> the list of Trials.

The file is read into its typed sections (``aebench.run.sections``); here they meet the plugins:
each entry's parameters checked against its plugin, the default regularizer filled in, the grids
expanded into trials. Every error is a ``SuiteError``: one line with the file, the place in it
and what is wrong, raised before anything trains or is written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pydantic

from aebench.contract.columns import declared
from aebench.contract.metric import DATA_REQUIREMENTS
from aebench.plugins.manager import Plugins
from aebench.plugins.registry import Registry
from aebench.results.paths import suite_place_problem, writable_place_problem
from aebench.results.references import check_references
from aebench.run.error_places import place_of, user_errors
from aebench.run.sections import (
    CosineSchedule,
    MultiStepSchedule,
    PluginEntry,
    Problems,
    check_bounds,
    explain,
    grid_place,
    observer_settings,
    read_suite_file,
    validate_suite,
    warn_deprecated,
)
from aebench.run.sections import EvalSection as EvalSection
from aebench.run.sections import SuiteError as SuiteError
from aebench.run.sections import SuiteFile as SuiteFile
from aebench.run.sections import TrackingSection as TrackingSection  # MLflow's settings
from aebench.run.sections import TrainSection as TrainSection

# ``X as X``: defined in aebench.run.sections, and imported from here by other modules too.


@dataclass(frozen=True)
class Component:
    """A plugin and its resolved parameters (defaults filled in)."""

    plugin: str
    params: dict[str, Any]
    source: str = field(default="", compare=False)  # its place in the suite: "datasets[0]"


@dataclass(frozen=True)
class Trial:
    """One resolved configuration: what is trained and measured, once."""

    dataset: Component
    model: Component
    regularizer: Component
    train: dict[str, Any]
    eval: dict[str, Any]
    seed: int

    def config(self) -> dict[str, Any]:
        return {
            "dataset": {"plugin": self.dataset.plugin, "params": self.dataset.params},
            "model": {"plugin": self.model.plugin, "params": self.model.params},
            "regularizer": {"plugin": self.regularizer.plugin, "params": self.regularizer.params},
            "train": self.train,
            "eval": self.eval,
            "seed": self.seed,
        }

    @property
    def id(self) -> str:
        """A stable hash of what is trained: dataset, model, regularizer, training, seed.

        Not of how it is measured (``[eval]``): a kept model is evaluated again without training.
        """
        trained = {k: v for k, v in self.config().items() if k != "eval"}
        trained["train"] = {k: v for k, v in self.train.items() if k not in NOT_TRAINING}
        return _digest(trained)

    def settings(self) -> TrainSection:
        """``train`` typed again, as training reads it (the dict is the trial's identity)."""
        return TrainSection.model_validate(self.train)

    @property
    def eval_id(self) -> str:
        """A stable hash of how the trial is measured: its metrics and their parameters."""
        return _digest(self.eval)

    def with_eval(self, evaluation: dict[str, Any]) -> Trial:
        return replace(self, eval=evaluation)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Trial:
        """The trial ``config()`` describes (as saved in its folder)."""

        def component(key: str) -> Component:
            return Component(config[key]["plugin"], dict(config[key]["params"]))

        return cls(
            component("dataset"),
            component("model"),
            component("regularizer"),
            dict(config["train"]),
            dict(config["eval"]),
            int(config["seed"]),
        )

    def label(self) -> str:
        parts = (self.dataset.plugin, self.model.plugin, self.regularizer.plugin)
        return "/".join(parts) + f" seed={self.seed}"


# Training settings that do not change the trained model.
NOT_TRAINING = frozenset({"checkpoint_every", "stack"})


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class Suite:
    path: Path
    spec: SuiteFile
    trials: list[Trial] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.suite.name

    def output_dir(self, override: str | Path | None = None) -> Path:
        """The results folder: ``override`` (``--output``), else ``[suite] output``, else
        ``results/<name>``; a ``SuiteError`` for one in a system folder."""
        output = Path(override or self.spec.suite.output or Path("results") / self.name)
        if why := writable_place_problem(output):
            raise SuiteError(f"output: {why}")
        return output


def _resolve_entry(
    where: str, entry: PluginEntry, registry: Registry, problems: Problems
) -> list[Component]:
    """Every grid point of one entry, validated against the plugin's own parameters."""
    try:
        spec = registry.get(entry.plugin)
    except LookupError as exc:
        problems.add(f"{where}.plugin", exc.args[0])
        return []
    for key, values in entry.grid.items():
        if not values:
            problems.add(f"{where}.grid.{key}", "empty list; give at least one value")
        if key in entry.params:
            problems.add(f"{where}.grid.{key}", f"also set in {where}.params")
    if any(not values or key in entry.params for key, values in entry.grid.items()):
        return []
    keys = list(entry.grid)
    points = []
    for values in itertools.product(*(entry.grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        try:
            resolved = spec.params.model_validate({**entry.params, **point})
        except pydantic.ValidationError as exc:
            for error in user_errors(exc, {**entry.params, **point}):
                problems.add(*_parameter_problem(where, entry, spec, registry.kind, point, error))
            continue
        points.append(Component(entry.plugin, resolved.model_dump(), where))
    return points


def _parameter_problem(
    where: str, entry: PluginEntry, spec: Any, kind: str, point: dict[str, Any], error: Any
) -> tuple[str, str]:
    """(place, what) of a plugin parameter the plugin refused: the grid value by its index and
    value, or the place in ``params``."""
    loc = tuple(error["loc"])
    name = str(loc[0]) if loc else ""
    if error["type"] == "extra_forbidden":
        takes = ", ".join(spec.params.model_fields) or "no parameters"
        part = "grid" if name in point else "params"
        what = f"{kind} {entry.plugin!r} takes no parameter {name!r} (it takes: {takes})"
        return f"{where}.{part}.{name}", what
    what = f"{kind} {entry.plugin!r}: {explain(error)}"
    if name in point:
        return f"{where}.{grid_place(entry.grid, point, loc)}", what
    rest = place_of(loc[1:])
    return (
        f"{where}.params.{name}{rest if rest.startswith('[') else f'.{rest}' if rest else ''}",
        what,
    )


def default_metrics(metrics: Registry, configured: set[str] | None = None) -> list[str]:
    """A suite's metrics where it names none: the cheap ones, the expensive ones the data asks
    for (they require something of the data, ``DATA_REQUIREMENTS``: a trial without it gets NaN
    with the reason, nothing computed) and the ``configured`` ones (the suite sets a parameter of
    them: their table, or an alias). Other expensive ones only where named (or ``"all"``)."""
    return [
        entry.name
        for entry in metrics
        if getattr(entry.factory, "cost", "cheap") == "cheap"
        or DATA_REQUIREMENTS & set(entry.factory.requires)
        or entry.name in (configured or set())
    ]


def resolve_eval(
    path: Path, section: EvalSection, metrics: Registry, problems: Problems | None = None
) -> dict[str, Any]:
    """``{"metrics": [...], "params": {metric: {param: value}}}``: the selected metrics (when the
    suite names none, ``default_metrics``; ``"all"``: every registered one) and every parameter of
    each (defaults filled in), validated against the metrics' declarations.
    An error names the key as the file spells it: the metric's table, or the alias. Mistakes go
    to ``problems``; without it, they are raised together as a ``SuiteError``."""
    found = problems if problems is not None else Problems(path)
    named = section.metrics if isinstance(section.metrics, list) else None
    for i, name in enumerate(named or []):
        if name not in metrics:
            try:
                metrics.get(name)
            except LookupError as exc:
                found.add(f"eval.metrics[{i}]", exc.args[0])
    aliases: dict[str, list[tuple[str, str]]] = {}  # alias -> [(metric, its parameter)]
    for entry in metrics:
        for alias, param in entry.factory.aliases.items():
            aliases.setdefault(alias, []).append((entry.name, param))
    extra = section.model_extra or {}
    if section.metrics == "all":
        selected = metrics.names()
    elif named is None:  # the default metrics, and those the section sets a parameter of
        set_here = {m for key in extra for m, _ in aliases.get(key, [])} | set(extra)
        selected = default_metrics(metrics, set_here)
    else:
        selected = [name for name in named if name in metrics]
    given: dict[str, dict[str, Any]] = {}
    places: dict[tuple[str, str], str] = {}  # (metric, parameter) -> where the file set it
    for key, value in extra.items():  # aliases first: a metric's own table overrides them
        if key in metrics:
            continue
        if key not in aliases:
            found.add(
                f"eval.{key}",
                "unknown key (neither a metric nor a setting one declares;"
                f" metrics: {', '.join(metrics.names()) or 'none'})",
            )
            continue
        for metric, param in aliases[key]:
            if metric in selected:
                given.setdefault(metric, {})[param] = value
                places[metric, param] = f"eval.{key}"
    for key, value in extra.items():
        if key not in metrics:
            continue
        if not isinstance(value, dict):
            found.add(f"eval.{key}", "a table of the metric's parameters expected")
        elif named is not None and key not in named:
            found.add(f"eval.{key}", f"metric {key!r} is not in eval.metrics")
        else:
            given.setdefault(key, {}).update(value)
            places.update({(key, param): f"eval.{key}.{param}" for param in value})
    params: dict[str, dict[str, Any]] = {}
    refused: dict[tuple[str, str], list[str]] = {}  # (place, why) -> the metrics refusing it
    for name in selected:
        entry = metrics.get(name)
        try:
            resolved = entry.params.model_validate(given.get(name, {}))
        except pydantic.ValidationError as exc:
            for error in user_errors(exc, given.get(name, {})):
                param = str(error["loc"][0]) if error["loc"] else ""
                place = places.get((name, param), f"eval.{name}.{param}")
                place += place_of(tuple(error["loc"][1:])) if len(error["loc"]) > 1 else ""
                if error["type"] == "extra_forbidden":
                    takes = ", ".join(entry.params.model_fields) or "no parameters"
                    found.add(
                        place, f"metric {name!r} takes no parameter {param!r} (it takes: {takes})"
                    )
                else:
                    refused.setdefault((place, explain(error)), []).append(name)
            continue
        if type(resolved).model_fields:
            params[name] = resolved.model_dump()
    for (place, why), names in refused.items():  # an alias refused by its metrics: one line
        found.add(place, f"metric {', '.join(map(repr, names))}: {why}")
    if problems is None:
        found.raise_any()
    return {"metrics": list(selected), "params": params}


def training_protocols(path: Path, section: TrainSection, problems: Problems) -> list[dict]:
    """Every grid point of ``[train]``, each validated as a whole ``[train]`` section."""
    base = section.model_dump(exclude={"grid"})
    keys = list(section.grid)
    bad_keys = False
    for key, values in section.grid.items():
        if key not in TrainSection.model_fields or key == "grid":
            problems.add(f"train.grid.{key}", "not a [train] setting")
        elif not values:
            problems.add(f"train.grid.{key}", "empty list; give at least one value")
        elif key in section.model_fields_set:
            problems.add(f"train.grid.{key}", "also set in [train]")
        else:
            continue
        bad_keys = True
    if bad_keys:
        return []
    protocols = []
    for values in itertools.product(*(section.grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        try:
            train = TrainSection.model_validate(base | point)
        except pydantic.ValidationError as exc:
            for error in user_errors(exc, base | point):
                loc = tuple(error["loc"])
                in_grid = bool(loc) and str(loc[0]) in point
                place = grid_place(section.grid, point, loc) if in_grid else place_of(loc)
                problems.add(f"train.{place}", explain(error))
            continue
        if _check_schedule(train, problems):
            protocols.append(train.model_dump(exclude={"grid"}))
    return protocols


def _check_annealed(
    models: list[Component], protocols: list[dict[str, Any]], registry: Registry, problems: Problems
) -> None:
    """A weight to anneal is one every model of the suite declares (``annealed_weights``)."""
    for name in sorted({name for train in protocols for name in train["anneal"]}):
        for model in models:
            declared = getattr(registry.get(model.plugin).factory, "annealed_weights", ())
            if name not in declared:
                problems.add(
                    f"train.anneal.{name}",
                    f"model {model.plugin!r} declares no annealed weight {name!r}"
                    f" (it declares: {', '.join(declared) or 'none'})",
                )


def _check_schedule(train: TrainSection, problems: Problems) -> bool:
    """What a schedule's own fields cannot check: its fit with the number of epochs. False when
    something does not fit."""
    found = len(problems.lines)
    schedule = train.schedule
    if isinstance(schedule, MultiStepSchedule):
        steps = schedule.milestones
        if steps != sorted(set(steps)):
            problems.add("train.schedule.milestones", f"not increasing: {steps}")
        elif steps[-1] >= train.epochs:
            problems.add(
                "train.schedule.milestones",
                f"{steps[-1]} is not before the last epoch ({train.epochs})",
            )
    if isinstance(schedule, CosineSchedule) and schedule.warmup_epochs >= train.epochs:
        problems.add(
            "train.schedule.warmup_epochs",
            f"{schedule.warmup_epochs} leaves no epoch after the warm-up ({train.epochs} in all)",
        )
    if train.nesterov and (train.optimizer != "sgd" or train.momentum <= 0):
        problems.add("train.nesterov", 'needs optimizer = "sgd" and momentum > 0')
    return len(problems.lines) == found


def _check_places(spec: SuiteFile, problems: Problems) -> None:
    """Where the file says to write (``aebench.paths``): its results folder inside the working
    directory (a suite from elsewhere cannot scatter results around it). An observer checks its
    own places in its settings' types (MLflow's SQLite store: anywhere but a system folder)."""
    if spec.suite.output is not None and (why := suite_place_problem(spec.suite.output)):
        problems.add("suite.output", why)


def _with_default_regularizer(spec: SuiteFile, registry: Registry, problems: Problems) -> SuiteFile:
    """The suite as given when it lists its regularizers; else with the one a plugin declares
    the default (``Regularizer.default``) written in, so that the saved suite names it."""
    if spec.regularizers is not None:
        return spec
    try:
        default = registry.default()
    except LookupError as exc:  # two plugins claim it
        problems.add("regularizers", f"none listed, and {exc.args[0]}: list one")
        return spec
    if default is None:
        known = ", ".join(registry.names()) or "none"
        problems.add(
            "regularizers",
            "none listed, and no installed regularizer declares itself the default:"
            f" list one in [[regularizers]] (known: {known})",
        )
        return spec
    return spec.model_copy(update={"regularizers": [PluginEntry(plugin=default.name)]})


def load_suite(suite: str | Path | dict[str, Any], plugins: Plugins) -> Suite:
    """Read, validate and expand a suite into its trials: a TOML file, or the same as a dict
    (``{"suite": {"name": ...}, "datasets": [...], ...}``, named ``<dict>`` in errors)."""
    if isinstance(suite, dict):
        path = Path("<dict>")
        spec = validate_suite(path, suite)
    else:
        path = Path(suite)
        spec = read_suite_file(path)
    problems = Problems(path)  # every mistake below is reported, all at once
    _check_places(spec, problems)
    observer_settings(spec, plugins.observers, problems)  # [observers.NAME] and [tracking]
    evaluation = resolve_eval(path, spec.eval, plugins.metrics, problems)
    if len(set(spec.suite.seeds)) != len(spec.suite.seeds):
        problems.add("suite.seeds", "a seed is listed twice")
    spec = _with_default_regularizer(spec, plugins.regularizers, problems)

    def expand(section: str, registry: Registry) -> list[Component]:
        entries = getattr(spec, section) or []  # no regularizers: a problem found above
        out = []
        for i, entry in enumerate(entries):
            out += _resolve_entry(f"{section}[{i}]", entry, registry, problems)
        return out

    datasets = expand("datasets", plugins.datasets)
    models = expand("models", plugins.models)
    regularizers = expand("regularizers", plugins.regularizers)
    protocols = training_protocols(path, spec.train, problems)
    _check_annealed(models, protocols, plugins.models, problems)
    problems.raise_any()
    trials: list[Trial] = []
    seen: set[str] = set()
    for dataset, model, regularizer, train, seed in itertools.product(
        datasets, models, regularizers, protocols, spec.suite.seeds
    ):
        trial = Trial(dataset, model, regularizer, train, evaluation, seed)
        if trial.id in seen:
            raise SuiteError(
                f"{path}: the same trial appears twice ({trial.label()}); remove the duplicate"
            )
        seen.add(trial.id)
        trials.append(trial)
    check_bounds(spec, trials, problems)  # threads on this machine, parameters as cells
    selected = {name: plugins.metrics.get(name).factory for name in evaluation["metrics"]}
    check_references(
        spec.references, [t.config() for t in trials], declared(selected), problems.add
    )
    problems.raise_any()
    warn_deprecated(path, spec)  # once the suite is valid: a bad one is its error lines alone
    return Suite(path, spec, trials)
