"""One registry per plugin kind: register, get, list. Duplicate names are kept out, loudly."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pydantic

from aebench.params import params_model


class UnknownNameError(LookupError):
    """A name no plugin registered; the message suggests the nearest ones."""


class DuplicateNameError(LookupError):
    """A name registered by two plugins; the message names both."""


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

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.factory) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """The entries of one kind (``model``, ``regularizer``, ``dataset`` or ``metric``)."""

    def __init__(self, kind: str, skip_first: bool = False) -> None:
        self.kind = kind
        self._skip_first = skip_first  # the first argument is the core's, not a parameter
        self._entries: dict[str, Entry] = {}
        self._clashes: dict[str, list[str]] = {}

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
        if name in self._entries or name in self._clashes:
            first = self._clashes.get(name) or [self._entries.pop(name).plugin]
            self._clashes[name] = [*first, plugin]
            raise DuplicateNameError(self._clash_message(name))
        if params is None:
            params = params_model(f"{self.kind}_{name}", factory, skip_first=self._skip_first)
        self._entries[name] = Entry(self.kind, name, factory, plugin, distribution, version, params)

    def _clash_message(self, name: str) -> str:
        plugins = " and ".join(repr(p) for p in self._clashes[name])
        return f"{self.kind} {name!r} is registered by both {plugins}"

    def get(self, name: str) -> Entry:
        if name in self._clashes:
            raise DuplicateNameError(self._clash_message(name))
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        message = f"unknown {self.kind} {name!r}"
        near = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        if near:
            message += "; did you mean " + " or ".join(repr(n) for n in near) + "?"
        known = ", ".join(self.names()) or "none"
        return f"{message} (known: {known})"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)
