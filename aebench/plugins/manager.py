"""The plugin manager: entry points in, one Registry per kind out, load errors kept, not raised.

Built-in plugins are entry points of the ``aebench`` distribution, so they load through exactly
this path, like any third party's; they register first, so that a third party's name or column
that clashes with theirs is the one dropped. Every call builds a fresh manager: there is no global
to reset.

What went wrong is kept, never raised: a plugin that failed to import or whose hook raised, a
registration dropped for a clash (``Plugins.errors``), and a registration that still works the old
way (``Plugins.deprecations``). A run warns of each of them (``Plugins.problems``).
"""

from __future__ import annotations

import difflib
import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy

from aebench.contract import hookspecs
from aebench.contract.columns import CORE_COLUMNS
from aebench.plugins.registry import DuplicateNameError, Registry

ENTRY_POINT_GROUP = "aebench"


@dataclass(frozen=True)
class Kind:
    """One kind of plugin: its hook, and what its registrations must be."""

    hook: str
    # The factory's first argument is supplied by the core, not the suite: the DataInfo for a
    # model, the MetricContext for a metric, the Suite for an observer.
    core_argument: bool = False
    unwrap: Callable[[Any], Any] | None = None  # what takes the parameters (a Metric's compute)
    check: Callable[[Registry, str, Any, str], None] | None = None
    # What an older contract's registration becomes, and the deprecation to warn of ("" if none).
    adapt: Callable[[str, Any], tuple[Any, str]] | None = None


def _check_metric(registry: Registry, name: str, metric: Any, plugin: str) -> None:
    """A metric is an ``aebench.Metric`` whose columns no metric registered before writes (the
    later one is dropped: a ``DuplicateNameError`` naming both)."""
    from aebench.contract.metric import Metric

    if not isinstance(metric, Metric):
        raise TypeError(
            f"metric {name!r}: register an aebench.Metric(compute, columns=[...]) that declares"
            f" its columns, not {type(metric).__name__}"
        )
    core = set(metric.column_names) & set(CORE_COLUMNS)
    if core:
        raise ValueError(f"metric {name!r}: column {sorted(core)[0]!r} is one of the core's own")
    for entry in registry.in_order():
        shared = set(metric.column_names) & set(entry.factory.column_names)
        if shared:
            raise DuplicateNameError(
                f"metric {name!r} ({plugin}) writes the column {sorted(shared)[0]!r}, as metric"
                f" {entry.name!r} ({entry.plugin}) does: {name!r} is dropped (the later),"
                f" {entry.name!r} kept"
            )


def _adapt_metric(name: str, metric: Any) -> tuple[Any, str]:
    """A plain function (the v1 contract, ``compute(context, **params) -> {column: number}``)
    as a ``LegacyMetric`` that learns its columns, with the deprecation to warn of."""
    from aebench.contract.metric import LegacyMetric, Metric

    if isinstance(metric, Metric) or isinstance(metric, type) or not callable(metric):
        return metric, ""
    return LegacyMetric(metric), (
        f"metric {name!r} is registered as a plain function (the v1 contract): its columns are"
        " learned from its first result, with no direction (never marked best, never compared);"
        " register aebench.Metric(compute, columns=[aebench.Column(...)]) to declare them"
    )


KINDS: dict[str, Kind] = {
    "models": Kind("aebench_register_models", core_argument=True),
    "regularizers": Kind("aebench_register_regularizers"),
    "datasets": Kind("aebench_register_datasets"),
    "metrics": Kind(
        "aebench_register_metrics",
        core_argument=True,
        unwrap=lambda metric: metric.compute,
        check=_check_metric,
        adapt=_adapt_metric,
    ),
    "observers": Kind("aebench_register_observers", core_argument=True),
    "executors": Kind("aebench_register_executors"),
    "commands": Kind("aebench_register_commands"),
}


Problem = Literal["failed", "collision", "deprecated"]


@dataclass(frozen=True)
class LoadError:
    """A plugin that failed to import or to register (``failed``), a registration of it dropped
    because an earlier one holds its name or column (``collision``), or one that still works the
    old way (``deprecated``); the program goes on without what failed or was dropped."""

    plugin: str
    distribution: str | None
    error: str
    problem: Problem = "failed"

    @property
    def message(self) -> str:
        """One line for a person: which plugin, what happened."""
        who = f"plugin {self.plugin!r}" + (f" ({self.distribution})" if self.distribution else "")
        if self.problem == "failed":
            return f"{who} failed to load: {self.error}"
        if self.problem == "deprecated":
            return f"{who}: deprecated: {self.error}"
        return f"{who}: {self.error}"


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin: where it came from and what it registered."""

    name: str
    distribution: str | None
    version: str | None
    registers: dict[str, list[str]] = field(default_factory=dict)


class KindRegistry:
    """``plugins.models`` and the like: the registry of the kind the attribute is named after."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.kind = name

    def __get__(self, plugins: Plugins | None, owner: type | None = None) -> Registry:
        if plugins is None:  # looked up on the class, not on loaded plugins
            raise AttributeError(f"{self.kind}: the registry of loaded plugins")
        return plugins.registries[self.kind]


@dataclass
class Plugins:
    manager: pluggy.PluginManager
    registries: dict[str, Registry]  # one per kind of ``KINDS``, by its name
    infos: list[PluginInfo]
    errors: list[LoadError]  # failed to load, or a registration dropped for a clash
    deprecations: list[LoadError] = field(default_factory=list)  # loaded, the old way

    models = KindRegistry()
    regularizers = KindRegistry()
    datasets = KindRegistry()
    metrics = KindRegistry()
    observers = KindRegistry()
    executors = KindRegistry()
    commands = KindRegistry()

    @property
    def problems(self) -> list[LoadError]:
        """Everything a run warns of before it starts: failures and clashes, then deprecations."""
        return [*self.errors, *self.deprecations]


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("aebench")
    manager.add_hookspecs(hookspecs)
    return manager


def _load_entry_points(
    manager: pluggy.PluginManager, errors: list[LoadError]
) -> dict[str, tuple[str, str]]:
    """Import and register every entry point of the group; returns plugin -> (dist, version)."""
    origins: dict[str, tuple[str, str]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        name = f"{dist}.{ep.name}" if dist else ep.name
        if manager.is_blocked(name):  # left out: not even imported
            continue
        try:
            manager.register(ep.load(), name=name)
        except Exception as exc:  # a broken plugin must not take the program down
            errors.append(LoadError(name, dist, f"{type(exc).__name__}: {exc}"))
            continue
        origins[name] = (dist, version)
    return origins


def load_plugins(
    *, entry_points: bool = True, extra: Iterable[object] = (), blocked: Iterable[str] = ()
) -> Plugins:
    """A fresh plugin manager with every entry point (and ``extra`` plugin objects) registered.

    ``blocked`` names plugins (as ``aebench plugins`` shows them, ``DIST.ENTRY_POINT``) to leave
    out. Plugins that fail to import or register are kept in ``errors``, never raised.
    """
    manager = _new_manager()
    for name in blocked:
        manager.set_blocked(name)
    errors: list[LoadError] = []
    deprecations: list[LoadError] = []
    origins = _load_entry_points(manager, errors) if entry_points else {}
    for plugin in extra:  # named by its module or class, so that error reasons read well
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        manager.register(plugin, name=None if manager.has_plugin(name) else name)

    registries = {
        kind: Registry(kind[:-1], spec.core_argument, unwrap=spec.unwrap, check=spec.check)
        for kind, spec in KINDS.items()
    }
    registered: dict[str, dict[str, list[str]]] = {}
    for kind, spec in KINDS.items():
        for impl in _builtins_first(getattr(manager.hook, spec.hook).get_hookimpls(), origins):
            dist, version = origins.get(impl.plugin_name, (None, None))
            names = registered.setdefault(impl.plugin_name, {}).setdefault(kind, [])
            problems = _Problems(impl.plugin_name, dist, errors, deprecations)

            def register(
                name,
                factory,
                *,
                _r=registries[kind],
                _s=spec,
                _p=impl.plugin_name,
                _n=names,
                _d=dist,
                _v=version,
                _k=problems,
                **kw,
            ):
                # One registration that fails or clashes is dropped alone: the plugin's others
                # still register.
                deprecated = ""
                try:
                    if _s.adapt is not None:
                        factory, deprecated = _s.adapt(name, factory)
                    _r.register(name, factory, plugin=_p, distribution=_d, version=_v, **kw)
                except DuplicateNameError as exc:
                    _k.add(str(exc), "collision")
                    return
                except Exception as exc:  # off the kind's contract
                    _k.add(f"{type(exc).__name__}: {exc}", "failed")
                    return
                if deprecated:
                    _k.add(deprecated, "deprecated")
                _n.append(name)

            try:
                impl.function(register=register)
            except Exception as exc:  # a hook that raises
                errors.append(LoadError(impl.plugin_name, dist, f"{type(exc).__name__}: {exc}"))

    errors += _misnamed_hooks(manager, origins)

    # Observers are notified in pluggy's call order (tryfirst first, trylast last: MLflow logs
    # what the others wrote), whichever registered first for the sake of a clash.
    observer_hooks = getattr(manager.hook, KINDS["observers"].hook).get_hookimpls()
    registries["observers"].reorder([impl.plugin_name for impl in reversed(observer_hooks)])

    infos = [
        PluginInfo(name, *origins.get(name, (None, None)), registered.get(name, {}))
        for name, _ in manager.list_name_plugin()
        if not manager.is_blocked(name)
    ]
    failures = [f"{e.distribution or e.plugin}: {e.error}" for e in errors]
    for registry in registries.values():
        registry.load_failures = failures
    return Plugins(manager, registries, infos, errors, deprecations)


def _misnamed_hooks(
    manager: pluggy.PluginManager, origins: dict[str, tuple[str, str]]
) -> list[LoadError]:
    """A plugin's ``@hookimpl`` under a name that is no hook (``aebench_register_model``): pluggy
    keeps it uncalled, so whatever it registers is silently missing; one error each, with the
    hook it was likely meant to be."""
    hooks = [name for name in vars(hookspecs) if name.startswith("aebench_")]
    out = []
    for name, caller in vars(manager.hook).items():
        if getattr(caller, "spec", True) is not None or not hasattr(caller, "get_hookimpls"):
            continue  # a hook of the contract
        meant = difflib.get_close_matches(name, hooks, n=1)
        hint = f"; did you mean {meant[0]}?" if meant else ""
        for impl in caller.get_hookimpls():
            dist = origins.get(impl.plugin_name, (None, None))[0]
            why = f"implements {name}, which is no aebench hook: it is never called{hint}"
            out.append(LoadError(impl.plugin_name, dist, why))
    return out


@dataclass
class _Problems:
    """Where one plugin's registration problems are kept."""

    plugin: str
    distribution: str | None
    errors: list[LoadError]
    deprecations: list[LoadError]

    def add(self, error: str, problem: Problem) -> None:
        kept = self.deprecations if problem == "deprecated" else self.errors
        kept.append(LoadError(self.plugin, self.distribution, error, problem))


def _builtins_first(
    impls: list[pluggy.HookImpl], origins: dict[str, tuple[str, str]]
) -> list[pluggy.HookImpl]:
    """The hook implementations in the order they register: aebench's own first (so that a third
    party's clash with a built-in drops the third party's), then pluggy's call order (tryfirst
    implementations first, trylast last, else the latest registered first)."""
    ordered = list(reversed(impls))
    return sorted(ordered, key=lambda impl: origins.get(impl.plugin_name, ("",))[0] != "aebench")
