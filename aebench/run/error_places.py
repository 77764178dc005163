"""Where a suite's mistake is, as its author wrote it: pydantic's errors with the labels of a
union's members (``constrained-int``, ``literal['auto']``, ``bool``) and a tagged union's tag
(``multistep``) taken out of their places, and one mistake's errors, one per member it failed,
merged into one line: ``suite.threads: Input should be greater than or equal to 1 or 'auto'``."""

from __future__ import annotations

from typing import Any

import pydantic

SHOULD = "Input should be "


def place_of(loc: tuple[Any, ...]) -> str:
    """``models[0].params.hidden[1]``: a pydantic error's location as a suite spells it."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def written(loc: tuple[Any, ...], data: Any, missing: bool) -> tuple[Any, ...]:
    """The parts of ``loc`` that are keys and indices of ``data`` (what the author wrote); the
    last kept too where it names a ``missing`` key. The rest are pydantic's labels."""
    kept: list[Any] = []
    here = data
    for i, part in enumerate(loc):
        if isinstance(here, dict) and part in here:
            kept.append(part)
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            kept.append(part)
            here = here[part]
        elif missing and i == len(loc) - 1:
            kept.append(part)
    return tuple(kept)


def user_errors(exc: pydantic.ValidationError, data: Any) -> list[dict[str, Any]]:
    """``exc.errors()``, each ``loc`` as ``written`` in ``data``, the errors of one place
    merged into the first's, their messages joined with "or"."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for error in exc.errors():
        loc = written(tuple(error["loc"]), data, error["type"] == "missing")
        if loc not in merged:
            merged[loc] = dict(error, loc=loc)
        elif error["msg"] not in merged[loc]["msg"]:
            first, other = merged[loc]["msg"], error["msg"]
            if first.startswith(SHOULD) and other.startswith(SHOULD):
                other = other.removeprefix(SHOULD)
            merged[loc]["msg"] = f"{first} or {other}"
    return list(merged.values())
