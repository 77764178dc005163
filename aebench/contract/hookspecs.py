"""The plugin contract: seven hooks, each handed a ``register(name, factory)`` callback.

A plugin is a module (or object) with functions of these names marked ``@aebench.hookimpl``,
declared as an entry point of the ``aebench`` group. A name registered twice keeps the first
registration, with a warning naming both plugins. ``docs/plugins.md`` is the reference of each
factory's contract.
"""

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
    """Register metrics: ``register(name, Metric(compute(context, **params), columns=[...]))``."""


@hookspec
def aebench_register_observers(register: Register) -> None:
    """Register observers of a run: ``register(name, factory(suite, **settings) -> SuiteObserver |
    None)``; the settings are the suite's ``[observers.NAME]`` table, validated against the
    factory's signature (``enabled = false`` switches any observer off).

    Observers are notified in the order pluggy calls these hooks: ``@hookimpl(tryfirst=True)``
    ones first, ``trylast=True`` ones last (the MLflow tracker, which logs what others wrote).
    """


@hookspec
def aebench_register_executors(register: Register) -> None:
    """Register where trials run: ``register(name, factory(**params) -> aebench.Executor)``.

    ``aebench run --executor NAME`` picks one (``local`` by default); its parameters come from
    the command line (``--workers``, ``--scheduler``) and are validated against the factory's
    signature, as a model's are.
    """


@hookspec
def aebench_register_commands(register: Register) -> None:
    """Register commands of the ``aebench`` program: ``register(name, aebench.Command(...))``
    (``aebench ui`` is the MLflow plugin's)."""
