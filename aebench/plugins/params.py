"""A plugin's typed parameters, read from its factory's signature and validated with pydantic.

``def VAE(info, latent_dim: Annotated[int, Field(ge=1)] = 16)`` is all a plugin author writes:
the signature is the schema, so there is no second place to keep in step.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import ConfigDict

# TOML values are already typed, so no coercion: "16" is not an int, and unknown names are errors.
_STRICT = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any  # inspect.Parameter.empty when required
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


def _signature_target(factory: Any) -> Any:
    return factory.__init__ if inspect.isclass(factory) else factory


def _parameters(factory: Any, skip_first: bool) -> list[inspect.Parameter]:
    params = [
        p
        for p in inspect.signature(factory).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return params[1:] if skip_first else params


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return typing.get_origin(annotation) is list


def _hints(factory: Any, parameters: list[inspect.Parameter]) -> dict[str, Any]:
    """The parameters' type hints, resolved; the core's argument may name a type that the
    plugin imports only for type checking, so it is left out rather than resolved."""
    target = _signature_target(factory)
    try:
        return typing.get_type_hints(target, include_extras=True)
    except NameError:
        names = {p.name for p in parameters}
        only = {k: v for k, v in target.__annotations__.items() if k in names}
        # get_type_hints reads just these two attributes of a function
        stand_in = types.SimpleNamespace(__annotations__=only, __globals__=target.__globals__)
        return typing.get_type_hints(stand_in, include_extras=True)


# Built once per factory: every load_plugins() registers each plugin again, and building its
# pydantic model is most of that (1.6 of 1.7 ms per plugin; 75 ms for the built-ins, measured).
_BUILT: dict[tuple[str, Any, bool], type[pydantic.BaseModel]] = {}


def params_model(name: str, factory: Any, skip_first: bool = False) -> type[pydantic.BaseModel]:
    """A pydantic model of the factory's parameters (all but the first for models)."""
    try:
        return _BUILT[(name, factory, skip_first)]
    except KeyError:
        model = _build_params_model(name, factory, skip_first)
        _BUILT[(name, factory, skip_first)] = model
        return model
    except TypeError:  # an unhashable factory: built every time
        return _build_params_model(name, factory, skip_first)


def _build_params_model(name: str, factory: Any, skip_first: bool) -> type[pydantic.BaseModel]:
    parameters = _parameters(factory, skip_first)
    hints = _hints(factory, parameters)
    fields: dict[str, Any] = {}
    for p in parameters:
        annotation = hints.get(p.name, Any)
        default = ... if p.default is inspect.Parameter.empty else p.default
        if isinstance(default, tuple) and _is_list(annotation):
            default = list(default)  # `hidden: list[int] = (128,)` avoids a mutable default
        fields[p.name] = (annotation, default)
    return pydantic.create_model(f"{name}_params", __config__=_STRICT, **fields)


def _constraint(metadata: Any) -> str | None:
    for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if getattr(metadata, attr, None) is not None:
            return f"{symbol} {getattr(metadata, attr)}"
    return None


def type_name(annotation: Any) -> str:
    """A short readable type: ``list[int >= 1]``, ``'linear' | 'relu'``, ``float > 0``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        constraints = [c for m in args[1:] for c in [_constraint(m)] if c]
        for m in args[1:]:  # a pydantic Field(...) keeps its constraints in .metadata
            constraints += [c for x in getattr(m, "metadata", []) for c in [_constraint(x)] if c]
        return " ".join([type_name(args[0]), *constraints])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def describe(model: type[pydantic.BaseModel]) -> list[Parameter]:
    """The parameters of a params model, for ``aebench list``."""
    out = []
    for name, info in model.model_fields.items():
        default = inspect.Parameter.empty if info.is_required() else info.default
        shown = " ".join(
            [type_name(info.annotation), *filter(None, map(_constraint, info.metadata))]
        )
        out.append(Parameter(name, shown, default, info.description or ""))
    return out
