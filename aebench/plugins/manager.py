"""The plugin manager: entry points in, one Registry per kind out, load errors kept, not raised.

Built-in plugins are entry points of the ``aebench`` distribution, so they load through exactly
this path, like any third party's. Every call builds a fresh manager: there is no global to reset.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from aebench.contract import hookspecs
from aebench.contract.columns import CORE_COLUMNS
from aebench.plugins.registry import Registry

ENTRY_POINT_GROUP = "aebench"


@dataclass(frozen=True)
class Kind:
    """One kind of plugin: its hook, and what its registrations must be."""

    hook: str
    # The factory's first argument is supplied by the core, not the suite: the DataInfo for a
    # model, the MetricContext for a metric, the Suite for an observer.
    core_argument: bool = False
    unwrap: Callable[[Any], Any] | None = None  # what takes the parameters (a Metric's compute)
    check: Callable[[Registry, str, Any], None] | None = None


def _check_metric(registry: Registry, name: str, metric: Any) -> None:
    """A metric is an ``aebench.Metric`` whose columns no other metric writes."""
    from aebench.contract.metric import Metric

    if not isinstance(metric, Metric):
        raise TypeError(
            f"metric {name!r}: register an aebench.Metric(compute, columns=[...]) that declares"
            f" its columns, not {type(metric).__name__}"
        )
    core = set(metric.column_names) & set(CORE_COLUMNS)
    if core:
        raise ValueError(f"metric {name!r}: column {sorted(core)[0]!r} is one of the core's own")
    for entry in registry:
        shared = set(metric.column_names) & set(entry.factory.column_names)
        if shared and entry.name != name:
            # Like a name registered twice: neither is used, whichever registered first.
            message = (
                f"metrics {entry.name!r} ({entry.plugin}) and {name!r} both write the column"
                f" {sorted(shared)[0]!r}; neither is used"
            )
            registry.withdraw(entry.name, message)
            registry.withdraw(name, message)
            raise ValueError(message)


KINDS: dict[str, Kind] = {
    "models": Kind("aebench_register_models", core_argument=True),
    "regularizers": Kind("aebench_register_regularizers"),
    "datasets": Kind("aebench_register_datasets"),
    "metrics": Kind(
        "aebench_register_metrics",
        core_argument=True,
        unwrap=lambda metric: metric.compute,
        check=_check_metric,
    ),
    "observers": Kind("aebench_register_observers", core_argument=True),
    "executors": Kind("aebench_register_executors"),
    "commands": Kind("aebench_register_commands"),
}


@dataclass(frozen=True)
class LoadError:
    """A plugin that failed to import or to register; the program goes on without it."""

    plugin: str
    distribution: str | None
    error: str


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
    errors: list[LoadError]

    models = KindRegistry()
    regularizers = KindRegistry()
    datasets = KindRegistry()
    metrics = KindRegistry()
    observers = KindRegistry()
    executors = KindRegistry()
    commands = KindRegistry()


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
    origins = _load_entry_points(manager, errors) if entry_points else {}
    for plugin in extra:  # named by its module or class, so that error reasons read well
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        manager.register(plugin, name=None if manager.has_plugin(name) else name)

    registries = {
        kind: Registry(kind[:-1], spec.core_argument, unwrap=spec.unwrap, check=spec.check)
        for kind, spec in KINDS.items()
    }
    registered: dict[str, dict[str, list[str]]] = {}
    # pluggy's order: tryfirst implementations first, trylast last, else the latest registered
    # first. Observers are notified in the order they were registered, so this orders them too.
    for kind, spec in KINDS.items():
        for impl in reversed(getattr(manager.hook, spec.hook).get_hookimpls()):
            dist, version = origins.get(impl.plugin_name, (None, None))
            names = registered.setdefault(impl.plugin_name, {}).setdefault(kind, [])

            def register(
                name,
                factory,
                *,
                _r=registries[kind],
                _p=impl.plugin_name,
                _n=names,
                _d=dist,
                _v=version,
                **kw,
            ):
                _r.register(name, factory, plugin=_p, distribution=_d, version=_v, **kw)
                _n.append(name)

            try:
                impl.function(register=register)
            except Exception as exc:  # a duplicate name, or a hook that raises
                errors.append(LoadError(impl.plugin_name, dist, f"{type(exc).__name__}: {exc}"))

    infos = [
        PluginInfo(name, *origins.get(name, (None, None)), registered.get(name, {}))
        for name, _ in manager.list_name_plugin()
        if not manager.is_blocked(name)
    ]
    failures = [f"{e.distribution or e.plugin}: {e.error}" for e in errors]
    for registry in registries.values():
        registry.load_failures = failures
    return Plugins(manager, registries, infos, errors)
