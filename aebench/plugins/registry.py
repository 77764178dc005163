"""One registry per plugin kind: register, get, list, and the default a plugin declares.

A name registered twice keeps its first registration, loudly; a default claimed twice is
nobody's.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from aebench.plugins.params import params_model


class UnknownNameError(LookupError):
    """A name no plugin registered; the message suggests the nearest ones."""


class DuplicateNameError(LookupError):
    """A name (or a metric's column) registered by two plugins; the message names both, and the
    one whose registration is dropped."""


@dataclass(frozen=True)
class Entry:
    """One registered model, regularizer, dataset or metric."""

    kind: str
    name: str
    factory: Any
    plugin: str  # the plugin that registered it, as the plugin manager names it
    distribution: str | None  # the installed package it came from, when known
    version: str | None
    params: type[pydantic.BaseModel]
    callable: Any = None  # what is called with the parameters: the factory, or a Metric's compute

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.callable or self.factory) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def origin(self) -> str:
        """``model 'vae' (aebench 0.1.0)``: who to blame when it misbehaves."""
        where = f"{self.distribution} {self.version}" if self.distribution else self.plugin
        return f"{self.kind} {self.name!r} ({where})"


class Registry:
    """The entries of one kind (``model``, ``regularizer``, ``dataset`` or ``metric``).

    A name (or, for metrics, a column) already taken keeps its first registration: the later one
    is refused alone, with a ``DuplicateNameError`` naming both plugins, so one third party's clash
    never costs the others, or the built-ins (which register first), what they registered."""

    def __init__(
        self,
        kind: str,
        skip_first: bool = False,
        *,
        unwrap: Callable[[Any], Any] | None = None,
        check: Callable[[Registry, str, Any, str], None] | None = None,
    ) -> None:
        self.kind = kind
        self._skip_first = skip_first  # the first argument is the core's, not a parameter
        self._unwrap = unwrap or (lambda factory: factory)  # what takes the parameters
        # Raises for a registration that breaks the kind's contract; called with the registry,
        # the name, the factory and the registering plugin.
        self._check = check
        self._entries: dict[str, Entry] = {}
        # Plugins that failed to load ("aebench-foo: ModuleNotFoundError: ..."): a name missing
        # here may be theirs, and the unknown-name error says so.
        self.load_failures: list[str] = []

    def register(
        self,
        name: str,
        factory: Any,
        *,
        plugin: str,
        distribution: str | None = None,
        version: str | None = None,
        params: type[pydantic.BaseModel] | None = None,
    ) -> None:
        if name in self._entries:
            first = self._entries[name].plugin
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered by both {first!r} and {plugin!r}:"
                f" dropped from {plugin!r} (the later), kept from {first!r}"
            )
        if self._check is not None:
            self._check(self, name, factory, plugin)
        target = self._unwrap(factory)
        if params is None:
            params = params_model(f"{self.kind}_{name}", target, skip_first=self._skip_first)
        self._entries[name] = Entry(
            self.kind, name, factory, plugin, distribution, version, params, target
        )

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        if self.load_failures:  # more likely than a typo: say it first
            failed = "; ".join(self.load_failures)
            return (
                f"unknown {self.kind} {name!r}: it may be provided by a plugin that failed to"
                f" import or lost a clash: {failed} (known: {', '.join(self.names()) or 'none'})"
            )
        message = f"unknown {self.kind} {name!r}"
        near = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        if near:
            message += "; did you mean " + " or ".join(repr(n) for n in near) + "?"
        known = ", ".join(self.names()) or "none"
        return f"{message} (known: {known})"

    def default(self) -> Entry | None:
        """The entry whose factory declares itself the default of its kind (a class attribute
        ``default = True``: the regularizer of a suite that lists none), or None where none does.

        A ``DuplicateNameError`` naming both when two do: neither is the default then."""
        claims = [e for e in self.in_order() if getattr(e.factory, "default", False) is True]
        if len(claims) > 1:
            both = " and ".join(entry.origin for entry in claims)
            raise DuplicateNameError(
                f"{both} declare themselves the default {self.kind}; only one may"
            )
        return claims[0] if claims else None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def in_order(self) -> list[Entry]:
        """The entries in the order they were registered (iteration is by name), or as
        ``reorder`` left them."""
        return list(self._entries.values())

    def reorder(self, plugins: Sequence[str]) -> None:
        """Entries in the order of the ``plugins`` that registered them (stable within one)."""
        rank = {plugin: i for i, plugin in enumerate(plugins)}
        ordered = sorted(self._entries.values(), key=lambda e: rank.get(e.plugin, len(rank)))
        self._entries = {entry.name: entry for entry in ordered}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)
