"""The plugin contract: four hooks, each handed a ``register(name, factory)`` callback."""

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("aebench")
hookimpl = pluggy.HookimplMarker("aebench")

Register = Callable[[str, Any], None]


@hookspec
def aebench_register_models(register: Register) -> None:
    """Register model factories: ``register(name, factory(info, **params) -> nn.Module)``."""


@hookspec
def aebench_register_regularizers(register: Register) -> None:
    """Register regularizer factories: ``register(name, factory(**params) -> Regularizer)``."""


@hookspec
def aebench_register_datasets(register: Register) -> None:
    """Register dataset factories: ``register(name, factory(**params) -> Data)``."""


@hookspec
def aebench_register_metrics(register: Register) -> None:
    """Register metrics: ``register(name, metric(context) -> dict[str, float])``."""
