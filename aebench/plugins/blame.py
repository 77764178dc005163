"""Which plugin raised: an exception's traceback, read against the plugins a trial uses.

A trial calls plugin code everywhere (the dataset's factory, the model's forward and loss, the
regularizer's penalty, every metric), and an error deep in torch names none of them. The innermost
frame of the traceback that lies in one of the trial's plugins' modules names the culprit; where
several plugins share a package (the built-ins), the longest shared module path decides; where
several share the module itself (a one-file third-party package), the one whose class or function
holds the frame's code (by qualified name); where none does (a plugin registered by a factory
function that returns an instance of another class), the one of the kind the frame's ``self`` is
an instance of (a ``Regularizer``, a torch module: a model); then the order of ``suspects`` (the
plugin running when it failed comes first).
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from types import FrameType

from aebench.plugins.registry import Entry


def _module(entry: Entry) -> str:
    return getattr(entry.callable or entry.factory, "__module__", "") or ""


def _qualname(entry: Entry) -> str:
    return getattr(entry.callable or entry.factory, "__qualname__", "") or ""


def _holds(qualname: str, code: str) -> bool:
    """Whether the code named ``code`` (``Model.posterior``) is ``qualname``'s or inside it."""
    return bool(qualname) and (code == qualname or code.startswith(f"{qualname}."))


# The kind of plugin an object of each contract class is, by the class's dotted name: what a
# method's ``self`` says of whose code it is (torch is not imported for it).
_KIND_OF_CLASS = {
    "aebench.contract.model.Regularizer": "regularizer",
    "torch.nn.modules.module.Module": "model",
}


def _kind_of_self(frame: FrameType) -> str | None:
    """The kind of plugin the frame's ``self`` is an instance of, if it is one's."""
    owner = frame.f_locals.get("self")
    if owner is None:
        return None
    for cls in type(owner).__mro__:
        if kind := _KIND_OF_CLASS.get(f"{cls.__module__}.{cls.__qualname__}"):
            return kind
    return None


def _shared_depth(a: str, b: str) -> int:
    depth = 0
    for x, y in zip(a.split("."), b.split("."), strict=False):
        if x != y:
            break
        depth += 1
    return depth


def culprit(exc: BaseException, suspects: Sequence[Entry]) -> Entry | None:
    """The plugin whose code raised ``exc``, or None when no frame is in a suspect's modules."""
    modules = [(entry, _module(entry), _qualname(entry)) for entry in suspects]
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    for frame in reversed(frames):  # innermost first
        name = frame.f_globals.get("__name__", "")
        depths = [(entry, _shared_depth(name, module), qual) for entry, module, qual in modules]
        depth = max((d for _, d, _ in depths), default=0)
        if depth == 0:
            continue
        tied = [(entry, qual) for entry, d, qual in depths if d == depth]
        code = frame.f_code.co_qualname
        held = next((entry for entry, qual in tied if _holds(qual, code)), None)
        kind = _kind_of_self(frame) if held is None else None
        return held or next((entry for entry, _ in tied if entry.kind == kind), tied[0][0])
    return None


def failure_reason(exc: BaseException, suspects: Sequence[Entry]) -> str:
    """``RuntimeError in model 'x' (aebench-foo 1.0): ...``; without a culprit, the error alone."""
    who = culprit(exc, suspects)
    where = f" in {who.origin}" if who is not None else ""
    return f"{type(exc).__name__}{where}: {exc}"
