"""The plugin manager: entry points in, one Registry per kind out, load errors kept, not raised.

Built-in plugins are entry points of the ``aebench`` distribution, so they load through exactly
this path, like any third party's. Every call builds a fresh manager: there is no global to reset.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass, field

import pluggy

from aebench import hookspecs
from aebench.registry import Registry

ENTRY_POINT_GROUP = "aebench"

# kind -> (hook name, whether the factory's first argument is supplied by the core rather than
# the suite: the DataInfo for a model, the MetricContext for a metric)
KINDS: dict[str, tuple[str, bool]] = {
    "models": ("aebench_register_models", True),
    "regularizers": ("aebench_register_regularizers", False),
    "datasets": ("aebench_register_datasets", False),
    "metrics": ("aebench_register_metrics", True),
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


@dataclass
class Plugins:
    manager: pluggy.PluginManager
    registries: dict[str, Registry]
    infos: list[PluginInfo]
    errors: list[LoadError]

    @property
    def models(self) -> Registry:
        return self.registries["models"]

    @property
    def regularizers(self) -> Registry:
        return self.registries["regularizers"]

    @property
    def datasets(self) -> Registry:
        return self.registries["datasets"]

    @property
    def metrics(self) -> Registry:
        return self.registries["metrics"]


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
        try:
            manager.register(ep.load(), name=name)
        except Exception as exc:  # a broken plugin must not take the program down
            errors.append(LoadError(name, dist, f"{type(exc).__name__}: {exc}"))
            continue
        origins[name] = (dist, version)
    return origins


def load_plugins(*, entry_points: bool = True, extra: Iterable[object] = ()) -> Plugins:
    """A fresh plugin manager with every entry point (and ``extra`` plugin objects) registered."""
    manager = _new_manager()
    errors: list[LoadError] = []
    origins = _load_entry_points(manager, errors) if entry_points else {}
    for plugin in extra:
        manager.register(plugin)

    registries = {kind: Registry(kind[:-1], skip_first) for kind, (_, skip_first) in KINDS.items()}
    registered: dict[str, dict[str, list[str]]] = {}
    for kind, (hook_name, _) in KINDS.items():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
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
    ]
    return Plugins(manager, registries, infos, errors)
