"""Trained weights read back: the one place aebench unpickles a file.

``torch.load(..., weights_only=True)`` refuses a pickle that asks to run code (a ``__reduce__``
payload in a crafted ``model.pt``), but says so in eight lines that advise loading the file again
with ``weights_only=False``: the advice that would run the payload. ``load_weights`` says it in
one line that names the file and gives no such advice. A kept ``model.pt``, a checkpoint and the
weights an isolated trial sends back are all read through it.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

# What a refused pickle asked torch for, as torch names it: "unsupported GLOBAL posix.system".
ASKED_FOR = re.compile(r"GLOBAL ([\w.]{1,80})")
SENT_BACK = "the weights sent back"  # what bytes are called in a message, unless named


class WeightsError(ValueError):
    """Weights that were not loaded; ``str(error)`` is the one line to show."""


def load_weights(source: str | Path | bytes, device: Any = "cpu", name: str = "") -> Any:
    """What ``torch.save`` wrote to ``source`` (a file, or its bytes), on ``device``, loaded
    with ``weights_only=True``: tensors and plain containers, never code. Anything else is a
    ``WeightsError`` naming ``name`` (default: the file), in one line: a pickle that would run
    code (not loaded, and not to be loaded), a damaged or foreign file."""
    import torch

    where = name or (SENT_BACK if isinstance(source, bytes) else str(source))
    file = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: not the user's
            warnings.simplefilter("ignore")
            return torch.load(file, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:  # the weights-only unpickler refused something
        asked = ASKED_FOR.search(str(exc))
        what = f" (it asks for {asked.group(1)})" if asked else ""
        raise WeightsError(f"{where}: not a plain weights file{what}; it was not loaded") from None
    except Exception as exc:  # truncated, or not torch's: torch raises several kinds
        first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:160]
        raise WeightsError(f"{where}: unreadable weights: {type(exc).__name__}: {first}") from None
