"""The folder lock excludes threads as it excludes processes: the thread that holds a folder may
take it again, any other thread of the same process is refused as another process would be, and
two threads running one suite into one folder do not both train it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from builders import build_suite
from timing import scaled

import aebench
from aebench.results.files import FolderError
from aebench.results.lock import check_output, folder_lock
from aebench.run.observing import SuiteObserver

BUSY = r"in use by another aebench \(pid {pid}\)"


@pytest.fixture
def in_a_thread() -> Iterator[Callable[..., Future]]:
    """Run a function in another thread: its future."""
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, threading.Event]]:
    """A folder held by another thread of this process until the event is set."""
    folder, taken, release = tmp_path / "out", threading.Event(), threading.Event()

    def hold() -> None:
        with folder_lock(folder):
            taken.set()
            release.wait(scaled(60))

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(scaled(10))
    yield folder, release
    release.set()
    holder.join()


def test_another_thread_is_refused_as_another_process_is(held):
    # Before: the lock was re-entrant per process, and this thread took it as well.
    folder, _ = held
    with pytest.raises(FolderError, match=BUSY.format(pid=os.getpid())), folder_lock(folder):
        pass
    with pytest.raises(FolderError, match=BUSY.format(pid=os.getpid())):
        check_output(folder)  # the check before a run loads anything says so too


def test_the_holding_thread_may_take_its_folder_again(tmp_path, in_a_thread):
    # Nesting held before (per process); the other thread was let in as well.
    folder = tmp_path / "out"
    with folder_lock(folder):
        with folder_lock(folder):
            pass
        # still held by the outer block: another thread is refused
        with pytest.raises(FolderError, match="in use"):
            in_a_thread(lambda: folder_lock(folder).__enter__()).result()
    in_a_thread(check_output, folder).result()  # released at the outer block's end


def test_the_holding_thread_passes_its_own_check(tmp_path):
    # Before: the check took a shared lock of its own, which the holder's exclusive one refused:
    # a command could not check a folder it held (``aebench evaluate`` in its lock).
    folder = tmp_path / "out"
    with folder_lock(folder):
        check_output(folder)


class Waits(SuiteObserver):
    """Holds its run at its start until ``go`` is set; ``started`` says it got there."""

    def __init__(self) -> None:
        self.started, self.go = threading.Event(), threading.Event()

    def suite_started(self, suite: Any, output: Path, trials: list[Any]) -> None:
        self.started.set()
        self.go.wait(scaled(60))


def test_two_threads_running_one_suite_into_one_folder_train_it_once(tmp_path, in_a_thread):
    # Before: the second thread took the lock as well, and trained every trial the first one
    # was about to train.
    built = build_suite(epochs=1)
    built["observers"] |= {"figures": {"enabled": False}, "report": {"enabled": False}}
    folder, first = tmp_path / "out", Waits()
    running = in_a_thread(aebench.run_suite, built, output=folder, observers=[first])
    try:
        assert first.started.wait(scaled(60)), running.exception(0)
        with pytest.raises(FolderError, match="in use"):
            aebench.run_suite(built, output=folder)
    finally:
        first.go.set()
    assert running.result().counts == {"ok": 1}
    table = pd.read_parquet(folder / "results.parquet")
    assert len(table) == 1
