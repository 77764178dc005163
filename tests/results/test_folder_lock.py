"""One writer per results folder: a second `aebench run` or `aebench evaluate` into a folder in use
is refused at once, naming the holder; runs one after another keep every row exactly once; a
killed run's rows are seen by every reader and kept by the run that resumes it."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from builders import QUICK_AE, as_toml, build_suite, build_tiny_suite, entry, start_run
from fake_plugins import fake_distribution
from timing import scaled, wait_until

from aebench.cli import main
from aebench.results import files
from aebench.results.files import write_atomically
from aebench.results.table import JOURNAL, PARQUET, read_results
from aebench.run.kept import load_results
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite

HOLD = """
import sys, threading
from aebench.results.lock import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    threading.Event().wait()  # until killed
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def holder() -> Iterator[Callable[[Path], subprocess.Popen]]:
    """Start a process that holds a results folder's lock as a run does, until killed."""
    started: list[subprocess.Popen] = []

    def hold(folder: Path) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture
def untracked(write_suite) -> Path:
    return write_suite(build_tiny_suite())


def test_a_run_into_a_folder_in_use_is_refused_naming_the_holder_then_goes_once_it_dies(
    holder, untracked: Path, tmp_path: Path, capsys
) -> None:
    output = tmp_path / "out"
    process = holder(output)
    before = snapshot(output)
    assert main(["run", str(untracked), "--output", str(output)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("aebench: error: ") and f"pid {process.pid}" in line, line
    assert snapshot(output) == before  # nothing written

    process.kill()  # kill -9: the kernel drops the lock with its holder
    process.wait()
    assert main(["run", str(untracked), "--output", str(output)]) == 0
    assert len(read_results(output)) == 4


def test_evaluate_into_a_folder_in_use_is_refused_naming_the_holder(
    holder, plugins, untracked: Path, tmp_path: Path, capsys
) -> None:
    output = tmp_path / "out"
    run_trials(load_suite(untracked, plugins), plugins, output=output)
    process = holder(output)
    before = snapshot(output)
    assert main(["evaluate", str(output), "--set", "log_px_iwae.samples=5"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("aebench: error: ") and f"pid {process.pid}" in line, line
    assert snapshot(output) == before


def test_run_suite_itself_refuses_a_folder_in_use(holder, plugins, untracked, tmp_path) -> None:
    """The lock is taken by the run, not only checked by the command line."""
    output = tmp_path / "out"
    process = holder(output)
    with pytest.raises(files.FolderError, match=f"pid {process.pid}"):
        run_trials(load_suite(untracked, plugins), plugins, output=output)
    assert not (output / "trials").exists()


def slow_suite(tmp_path: Path, name: str, seeds: list[int], fragile: bool, epochs: int = 2) -> Path:
    """A suite named "shared": a quick ``ae``, then (``fragile``) the fragile model, whose steps
    (3 an epoch) take 0.2 s each on an idle machine, and as much longer as this one is slower."""
    models = [QUICK_AE, *([entry("fragile", delay=round(scaled(0.2), 2))] if fragile else [])]
    built = build_suite(*models, name="shared", seeds=seeds, epochs=epochs, batch_size=512)
    path = tmp_path / f"{name}.toml"
    path.write_text(as_toml(built))
    return path


def start(suite_file: Path, site: Path, output: Path, markers: Path) -> subprocess.Popen:
    return start_run(suite_file, "--output", str(output), site=site, markers=markers)


def trained(markers: Path) -> bool:
    """Whether the fragile model trains (its marker file appears)."""
    return any(markers.iterdir())


@pytest.mark.slow
def test_two_runs_into_one_folder_keep_every_row_exactly_once(tmp_path: Path) -> None:
    """The issue's data loss: the same suite with other seeds, started while the first runs."""
    site = fake_distribution(tmp_path / "site")
    output = tmp_path / "out"
    first_suite = slow_suite(tmp_path, "a", [0], fragile=True, epochs=20)  # 12 s of training
    second_suite = slow_suite(tmp_path, "b", [2, 3], fragile=False)
    first = start(first_suite, site, output, tmp_path / "m1")
    # the ae is done, the fragile model trains
    wait_until(lambda: trained(tmp_path / "m1"), "the slow trial never started", first)
    second = start(second_suite, site, output, tmp_path / "m2")
    _, stderr = second.communicate(timeout=scaled(120))
    assert second.returncode == 2, stderr
    [line] = stderr.strip().splitlines()
    assert f"pid {first.pid}" in line, line
    assert first.poll() is None  # refused while the first was still running

    assert first.communicate(timeout=scaled(300)) and first.returncode == 0
    assert len(list((output / "trials").iterdir())) == 2  # the first run's: none of the second's
    again = start(second_suite, site, output, tmp_path / "m3")
    _, stderr = again.communicate(timeout=scaled(300))
    assert again.returncode == 0, stderr
    table = pd.read_parquet(output / PARQUET)
    assert sorted(zip(table["model"], table["seed"], strict=True)) == [
        ("ae", 0),
        ("ae", 2),
        ("ae", 3),
        ("fragile", 0),
    ]
    assert table["trial_id"].is_unique and set(table["status"]) == {"ok"}


@pytest.mark.slow
def test_a_killed_runs_rows_are_read_everywhere_and_kept_on_resume(tmp_path: Path) -> None:
    site = fake_distribution(tmp_path / "site")
    output = tmp_path / "out"
    suite = slow_suite(tmp_path, "a", [0], fragile=True)  # the ae first; killed in the other
    process = start(suite, site, output, tmp_path / "m")
    wait_until(lambda: trained(tmp_path / "m"), "the slow trial never started", process)
    process.kill()
    process.communicate(timeout=scaled(30))

    assert not (output / PARQUET).exists() and (output / JOURNAL).is_file()
    [ae] = load_results(output).to_dict("records")  # the finished trial, from the journal
    assert ae["model"] == "ae" and ae["status"] == "ok"
    assert main(["report", str(output)]) == 0  # the report sees it too

    resumed = start(suite, site, output, tmp_path / "m2")
    stdout, stderr = resumed.communicate(timeout=scaled(300))
    assert resumed.returncode == 0, stderr
    assert "1 trials were already finished" in stdout
    table = pd.read_parquet(output / PARQUET)
    assert sorted(table["model"]) == ["ae", "fragile"] and table["trial_id"].is_unique
    assert table.set_index("model").loc["ae", "train_s"] == ae["train_s"]  # its very row
    assert not (output / JOURNAL).exists()  # folded into the table


def test_temporary_names_are_unique_across_threads_of_one_process(tmp_path: Path) -> None:
    """Before, the temporary name was the process id alone: two writers of one file collided."""
    path = tmp_path / "results.csv"
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for _ in range(50):
                write_atomically(path, lambda p: p.write_text(f"{n}\n" * 1000))
        except BaseException as exc:  # noqa: BLE001 - any failure is the finding
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert len(set(path.read_text().splitlines())) == 1  # one writer's whole file
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]
