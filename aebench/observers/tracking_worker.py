"""MLflow logged by a worker process while the next trial trains (``Worker``), and what the run
and the worker tell each other.

Logging a trial's run costs a third of a second of store calls, and importing mlflow and opening
a store seconds more: in the run's own process it held every trial's results back, and in a
thread it would fight training for the GIL. So the tracker hands each finished trial's row,
curves and folder to one worker process (``tracking_messages``), which imports mlflow, opens the
store and logs them as they come (``tracking_recorder.Recorder``); the run's process never
imports mlflow. The worker answers with what the run must say or know: the store is busy, a call
failed (one line), it is alive and how long its next step may take (``beat``: the run waits for
it at the suite's end only while it keeps within its deadlines), and, once the run's end is
logged, the ids it made (``Outcome``).

The worker is spawned (never forked from a process whose torch holds OpenMP threads), imports no
torch, ignores Ctrl-C (the run decides) and dies with the run, ``kill -9`` included
(``run.orphans``). One that ended a run cleanly serves the process's next run (``acquire``,
``release``): mlflow is imported once per process.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from aebench.observers.tracking_messages import RunEnd, RunStart
from aebench.run.orphans import die_with_parent

# The worker's own work between two store calls (importing mlflow, reading the results table,
# the invocation run's aggregates): past this without a word from it, it is stuck.
LOCAL_WORK_S = 60.0


Heard = Callable[[tuple[Any, ...]], None]  # what the run does with the worker's messages


# -- in the worker ------------------------------------------------------------------------------


def _serve(parent: int, inbox: Connection, outbox: Connection) -> None:
    """The worker: each run's messages, in order, to a ``Recorder`` of that run. Ends when the
    run's process closes its end (or dies: ``die_with_parent``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the run
    die_with_parent(parent)  # decides, and tells the worker (SIGTERM ends it: multiprocessing's
    # exit sends it to daemonic children, then waits for them)
    lock = threading.Lock()

    def tell(message: tuple[Any, ...]) -> None:
        with lock:
            outbox.send(message)

    from aebench.observers.tracking_recorder import Recorder

    recorder: Recorder | None = None
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):
            return
        tell(("beat", LOCAL_WORK_S))
        if isinstance(message, RunStart):
            recorder = Recorder(message, tell)
            recorder.begin()
        elif recorder is not None:
            recorder.hear(message)
            if isinstance(message, RunEnd):
                tell(("done", recorder.outcome()))
                recorder = None
        tell(("beat", LOCAL_WORK_S))


# -- in the run's process -----------------------------------------------------------------------


class Worker:
    """The run's handle on one worker process: ``send`` never blocks (a thread writes to the
    pipe), and a thread hands what the worker says to ``heard``, with ``("died", exitcode)`` if
    it ends without being told to. ``time_left()``: how long the worker's current step may still
    take, by its last ``beat``."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        inbox, self._to_worker = context.Pipe(duplex=False)
        self._from_worker, outbox = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_serve,
            args=(os.getpid(), inbox, outbox),
            name="aebench mlflow",
            daemon=True,  # never holds up the process's exit
        )
        self.process.start()
        inbox.close()
        outbox.close()
        self.heard: Heard | None = None
        self._beat = (time.monotonic(), LOCAL_WORK_S)
        self._closing = False
        self._outgoing: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        threading.Thread(target=self._send_all, name="aebench mlflow send", daemon=True).start()
        threading.Thread(target=self._hear_all, name="aebench mlflow hear", daemon=True).start()

    def send(self, message: object) -> None:
        """Queue ``message`` for the worker (pickled here: what cannot be is an error here).

        A worker waiting for work is not late: its clock starts again at the message, which it
        has at least ``LOCAL_WORK_S`` to answer (its last word may be a trial's length ago)."""
        self._outgoing.put(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        self._beat = (time.monotonic(), max(self.time_left(), LOCAL_WORK_S))

    def alive(self) -> bool:
        return self.process.is_alive() and not self._closing

    def time_left(self) -> float:
        since, allowed = self._beat
        return since + allowed - time.monotonic()

    def close(self) -> None:
        """Stop the worker (it is stuck, or not wanted again): killed, not waited for."""
        self._closing = True
        self._outgoing.put(None)
        if self.process.is_alive():
            self.process.kill()

    def _send_all(self) -> None:
        while (data := self._outgoing.get()) is not None:
            try:
                self._to_worker.send_bytes(data)
            except OSError:  # the worker died: the other thread says so
                return

    def _hear_all(self) -> None:
        connection, sentinel = self._from_worker, self.process.sentinel
        while True:
            ready = wait([connection, sentinel])
            if connection in ready:
                try:
                    message = connection.recv()
                except (EOFError, OSError):
                    message = None
                if message is not None:
                    self._heard(message)
                    continue
            self.process.join()
            if not self._closing:
                self._heard(("died", self.process.exitcode))
            return

    def _heard(self, message: tuple[Any, ...]) -> None:
        if message[0] == "beat":
            self._beat = (time.monotonic(), float(message[1]))
        elif (heard := self.heard) is not None:
            heard(message)


_lock = threading.Lock()
_idle: list[Worker] = []  # workers that ended a run cleanly, for the process's next run


def acquire(heard: Heard) -> Worker:
    """A worker for one run, telling ``heard``: one an earlier run left, else a new one."""
    with _lock:
        while _idle:
            worker = _idle.pop()
            if worker.alive():
                break
        else:
            worker = Worker()
        worker.heard = heard
        worker._beat = (time.monotonic(), LOCAL_WORK_S)
    return worker


def release(worker: Worker) -> None:
    """A worker whose run ended cleanly, kept for the next."""
    worker.heard = None
    if worker.alive():
        with _lock:
            _idle.append(worker)
