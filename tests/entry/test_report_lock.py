"""``aebench report`` and ``aebench evaluate`` hold the results folder's lock from their first read
to their last write (a run holding it refuses them, and none starts meanwhile); a run whose
report cannot be written ends non-zero, its results saved."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from builders import build_suite

from aebench.results.lock import LOCK_FILE, folder_lock
from aebench.run.kept import KeptTrialError


def held_elsewhere(folder: Path) -> bool:
    """Whether another process would find ``folder`` in use (as ``aebench run`` checks)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Path]:
    """A results folder that a run of process 4242 holds (the lock taken as another process
    takes it: on a file descriptor of its own)."""
    folder = tmp_path / "out"
    folder.mkdir()
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"4242\n")
    yield folder
    os.close(fd)


def test_report_of_a_folder_a_run_holds_is_refused(aebench, held):
    # Before: report took no lock, and rewrote the folder under the run.
    result = aebench("report", str(held))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"aebench: error: {held}: in use by another aebench (pid 4242); wait for it to end, or"
        " write into another folder"
    ]
    assert sorted(p.name for p in held.iterdir()) == [LOCK_FILE]  # nothing written


def ran_into(folder: Path) -> Path:
    """``folder`` as a run leaves it, as far as its lock goes: the lock file, released."""
    with folder_lock(folder):
        pass
    return folder


def test_report_holds_its_folder_while_it_reads_and_writes(aebench, tmp_path, monkeypatch):
    folder = ran_into(tmp_path / "out")
    seen: list[bool] = []

    def read_results(where: Path) -> pd.DataFrame:  # where the report reads the table
        seen.append(held_elsewhere(where))
        return pd.DataFrame()

    monkeypatch.setattr("aebench.views.report.read_results", read_results)
    result = aebench("report", str(folder))
    assert result.returncode == 2 and "no results.parquet" in result.stderr  # an empty folder
    assert seen == [True]
    assert not held_elsewhere(folder)  # and released


def test_report_of_a_folder_no_run_made_writes_nothing(aebench, tmp_path):
    # (Held before too: the lock is not made where no run has been.)
    result = aebench("report", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "no results.parquet" in result.stderr
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "empty").mkdir()
    assert aebench("report", str(tmp_path / "empty")).returncode == 2
    assert list((tmp_path / "empty").iterdir()) == []


def test_evaluate_holds_its_folder_from_its_first_read(aebench, tmp_path, monkeypatch):
    # Before: evaluate checked the folder, read it and loaded every model unlocked; a run
    # starting meanwhile went ahead, and the evaluation failed only when it came to write.
    folder = ran_into(tmp_path / "out")
    seen: list[bool] = []

    def load_results(where: Path) -> pd.DataFrame:
        seen.append(held_elsewhere(Path(where)))
        raise KeptTrialError(f"{where}: stopped here")

    monkeypatch.setattr("aebench.measure_again.load_results", load_results)
    result = aebench("evaluate", str(folder))
    assert result.returncode == 2 and result.stderr.endswith(": stopped here\n")
    assert seen == [True]
    assert not held_elsewhere(folder)


def test_evaluate_of_a_folder_a_run_holds_is_refused(aebench, held):
    # (Held before too: evaluate's check said so.)
    result = aebench("evaluate", str(held))
    assert result.returncode == 2
    assert "in use by another aebench (pid 4242)" in result.stderr


def test_a_run_whose_report_cannot_be_written_ends_non_zero_its_table_saved(
    aebench, tmp_path, write_suite
):
    # Before: the report's failure was a line on stderr, and the run exited 0.
    built = build_suite(epochs=1)
    built["observers"]["figures"] = {"enabled": False}
    folder = tmp_path / "out"
    (folder / "report.html").mkdir(parents=True)  # what cannot be replaced by a file
    result = aebench("run", str(write_suite(built)), "--output", str(folder))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"aebench: the report of {folder} failed: " in result.stderr
    assert "no report was written; the results are saved" in result.stderr
    table = pd.read_parquet(folder / "results.parquet")
    assert list(table["status"]) == ["ok"]
