"""A run's log file, ``aebench.log`` beside its results: failed trials' tracebacks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aebench.results.files import CLOEXEC, NOFOLLOW, cannot_write


def log_to(path: Path) -> None:
    """The ``aebench`` logger writes to ``path`` too (never through a link planted there); a
    ``FolderError`` where it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    handler = QuietFileHandler(os.fdopen(fd, "a", encoding="utf-8"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("aebench").addHandler(handler)


class QuietFileHandler(logging.StreamHandler):
    """The log file's handler: a record it cannot write (a full disk) is lost without the
    traceback that logging would print to the terminal for each; what the run writes besides
    says it, in one line (``FolderError``)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass
