"""Figures drawn in a worker process while the next trial trains (``draw``), and the waits that
keep whatever reads them correct (``figures_ready``, ``drawings_done``).

Drawing a trial's PNGs costs about what training a small trial does (matplotlib's layout and PNG
encoding: 1 to 2 s on the quick suite, where its 6 configurations' figures took a third of the
run), and it needs nothing but the trial's ``figures.npz``. So the figures observer hands it to
one worker process and the run goes on; the report at the run's end draws its own figures (the
latent grid, the planes) there too, while it lays out its tables (``draw_beside``). What reads
the PNGs waits for them: the report before it is built (``build_report``), a tracker before it
logs a trial's folder (``figures_ready``), the figures observer before the suite ends
(``drawings_done``), so that nothing is drawn after a run returns. A drawing that fails is
named on stderr as an in-process one was (``aebench: figures of <trial> failed: <error>``),
once, by whichever of them collects it first; its traceback goes to ``aebench.log``.

The worker is spawned (never forked from a process whose torch holds OpenMP threads) and imports
numpy and matplotlib only, no torch. It starts with the first run that has a trial to run
(``start``, while that trial trains) and serves the process's later runs. It ignores Ctrl-C: the
run handles that, and its drawings still queued are dropped (``drop_queued``). It dies with the
run, ``kill -9`` included (``run.orphans``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aebench.run.orphans import die_with_parent

log = logging.getLogger("aebench")


@dataclass(frozen=True)
class _Drawing:
    what: str  # the trial, as failures name it
    future: Future[Any]


_lock = threading.RLock()
_pending: dict[Path, _Drawing] = {}  # a trial folder -> its drawing, until collected
_executor: ProcessPoolExecutor | None = None


def _serve(parent: int) -> None:
    """The worker's initializer. Ctrl-C reaches the whole process group, and the run decides;
    the worker dies with the run (``kill -9`` included): orphaned, it would hold the run's
    terminal pipes open."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)


def _warm_up() -> None:
    """Import what drawing needs (about a second) before the first trial's figures are due."""
    import matplotlib.figure  # noqa: F401

    import aebench.views.drawing  # noqa: F401


def _here(cwd: str, function: Callable[..., object], *args: object) -> object:
    """``function(*args)`` in the worker, from the run's working directory: the paths handed to
    it may be relative (``--output out``), and the run may have changed directory since the
    worker started."""
    os.chdir(cwd)
    return function(*args)


def start() -> None:
    """Start the worker, if it is not running, and have it import matplotlib."""
    global _executor
    with _lock:
        if _executor is None:
            context = multiprocessing.get_context("spawn")
            _executor = ProcessPoolExecutor(1, context, initializer=_serve, initargs=(os.getpid(),))
            _executor.submit(_warm_up)


def _discard() -> None:
    """Let go of a worker that died (killed, out of memory): the next drawing starts a fresh one."""
    global _executor
    with _lock:
        broken, _executor = _executor, None
    if broken is not None:
        broken.shutdown(wait=False, cancel_futures=True)


def _key(folder: Path) -> Path:
    return Path(folder).resolve()


def draw(folder: Path, what: str, function: Callable[..., object], *args: object) -> None:
    """``function(*args)`` (a module-level function: it is pickled by name) in the worker; it
    writes into ``folder``, and ``what`` names it when it fails. A folder's earlier drawing is
    waited for first: one at a time per folder. Where the worker cannot take it (it died, its
    process could not start), it is drawn here, now."""
    figures_ready(folder)
    start()
    try:
        with _lock:
            assert _executor is not None
            future = _executor.submit(_here, os.getcwd(), function, *args)
            _pending[_key(folder)] = _Drawing(what, future)
    except Exception:  # a broken pool (the worker was killed): a fresh one serves the next
        _discard()
        future = Future()
        try:
            future.set_result(function(*args))
        except Exception as exc:
            future.set_exception(exc)
        with _lock:
            _pending[_key(folder)] = _Drawing(what, future)
    collect()


def running() -> bool:
    """Whether the worker is up: a run started it (and it serves the report at the run's end)."""
    return _executor is not None


def draw_beside(path: Path, what: str, function: Callable[..., object], *args: object) -> None:
    """``function(*args)``, which writes ``path``: in the worker when it is up, so that a report
    at a run's end draws its own figures while it lays out its tables (``build_report`` waits for
    them before it reads them); else here, now (``aebench report`` alone: starting a worker would
    cost more than it saves), its errors raised as they are."""
    if running():
        draw(path, what, function, *args)
    else:
        function(*args)


def _report(drawing: _Drawing) -> None:
    """Name a failed drawing on stderr, its traceback (the worker's too) in the log."""
    if drawing.future.cancelled() or (exc := drawing.future.exception()) is None:
        return
    if isinstance(exc, BrokenProcessPool):
        _discard()
    print(f"aebench: figures of {drawing.what} failed: {exc}", file=sys.stderr)
    log.error("figures of %s failed:\n%s", drawing.what, "".join(traceback.format_exception(exc)))


def _collect(folders: list[Path]) -> None:
    with _lock:
        done = [_pending.pop(f) for f in folders if f in _pending and _pending[f].future.done()]
    for drawing in done:
        _report(drawing)


def collect() -> None:
    """Report the drawings that have finished since the last look, without waiting."""
    with _lock:
        folders = list(_pending)
    _collect(folders)


def figures_ready(folder: Path, timeout: float | None = None) -> bool:
    """Wait until the figures of the trial folder ``folder`` (or the figure ``folder`` names)
    are drawn, at most ``timeout`` seconds; True when none is being drawn any longer. Call it
    before reading its PNGs."""
    key = _key(folder)
    with _lock:
        drawing = _pending.get(key)
    if drawing is None:
        return True
    wait([drawing.future], timeout)
    _collect([key])
    return drawing.future.done()


def drawings_done(timeout: float | None = None) -> bool:
    """Wait until every drawing handed out is done (at most ``timeout`` seconds), and report
    those that failed; True when none is left."""
    with _lock:
        futures = [d.future for d in _pending.values()]
    wait(futures, timeout)
    collect()
    with _lock:
        return not _pending


def drop_queued() -> None:
    """Drop the drawings not yet started (the run was interrupted); the one under way ends."""
    with _lock:
        for drawing in _pending.values():
            drawing.future.cancel()
    drawings_done()
