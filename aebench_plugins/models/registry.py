"""The built-in models by name, each registered where it is written.

``@register_model("vae")`` above a model's class (or factory function) records it under that
name and gives it the name as ``model_name``, which its error messages use: the name is written
once, at the class, as torchvision's ``register_model`` does. The plugin's hook
(``aebench_plugins/models/__init__.py``) hands every recorded model to aebench.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

Factory = TypeVar("Factory", bound=Callable[..., Any])

MODELS: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Factory], Factory]:
    """A decorator: the model under ``name``, its ``model_name``; a name taken twice is an error."""

    def register(factory: Factory) -> Factory:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice: {MODELS[name]} and {factory}")
        factory.model_name = name  # type: ignore[attr-defined]
        MODELS[name] = factory
        return factory

    return register
