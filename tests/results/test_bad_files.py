"""Every file problem of a results folder is one line and exit status 2, with nothing lost or half
written: a damaged, foreign or status-less table, a folder of another suite, a read-only folder,
an output that is a file, a full disk, planted symbolic links, a truncated figures.npz."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from builders import as_toml, build_tiny_suite

from aebench.cli import main
from aebench.observers.trial_figures import ARRAYS, TRIAL_PNGS, TrialFigures
from aebench.plugins.manager import load_plugins
from aebench.results import files
from aebench.results.lock import LOCK_FILE
from aebench.results.table import CSV, JOURNAL, PARQUET, read_results
from aebench.run.kept import KeptTrialError, load_results
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite
from aebench.views.report import REPORT_HTML, REPORT_MD


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file (and link) under ``folder`` and its bytes (a link: its target's name)."""
    return {
        str(p.relative_to(folder)): os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() or p.is_symlink()
    }


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder of the tiny suite (4 trials), with figures and a report."""
    folder = tmp_path_factory.mktemp("pristine") / "out"
    suite_file = folder.parent / "suite.toml"
    suite_file.write_text(as_toml(build_tiny_suite()))
    plugins = load_plugins()
    run_trials(load_suite(suite_file, plugins), plugins, output=folder, observers=[TrialFigures()])
    assert main(["report", str(folder)]) == 0
    return folder


@pytest.fixture
def results(pristine: Path, tmp_path: Path, monkeypatch) -> Path:
    """A copy of the pristine folder to damage; the working directory is the test's own."""
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copytree(pristine, tmp_path / "out", symlinks=True))


@pytest.fixture
def suite_file(write_suite) -> Callable[..., Path]:
    """The file of the tiny suite (builders.py), with changes: build_suite's keyword arguments."""
    return lambda **changes: write_suite(build_tiny_suite(**changes))


def one_error_line(capsys) -> str:
    """The one error line on stderr (progress lines of trials that ran may come before it)."""
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("aebench: error: ")]
    assert "Traceback" not in err, err
    return line


DAMAGES: dict[str, Callable[[Path], None]] = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "foreign": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200)),
    "statusless": lambda p: pd.read_parquet(p).drop(columns="status").to_parquet(p),
}
COMMANDS = {
    "run": lambda out, suite: ["run", str(suite), "--output", str(out)],
    "dry-run": lambda out, suite: ["run", str(suite), "--output", str(out), "--dry-run"],
    "report": lambda out, suite: ["report", str(out)],
    "evaluate": lambda out, suite: ["evaluate", str(out)],
    "compare": lambda out, suite: ["compare", str(out), str(out)],
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_or_foreign_table_is_one_line_and_changes_nothing(
    results: Path, suite_file, capsys, damage: str, command: str
) -> None:
    DAMAGES[damage](results / PARQUET)
    before = snapshot(results)
    assert main(COMMANDS[command](results, suite_file())) == 2
    line = one_error_line(capsys)
    assert str(results / PARQUET) in line, line
    assert "status column" in line if damage == "statusless" else "not a readable" in line
    if command != "compare":
        assert "results.csv" in line and "--rerun" in line, line  # what to do about it
    assert snapshot(results) == before


def test_loading_a_damaged_table_from_python_is_one_error(results: Path) -> None:
    DAMAGES["truncated"](results / PARQUET)
    with pytest.raises(KeptTrialError, match="not a readable results table"):
        load_results(results)


def test_rerun_replaces_a_damaged_table(results: Path, suite_file, capsys) -> None:
    DAMAGES["truncated"](results / PARQUET)
    assert main(["run", str(suite_file()), "--output", str(results), "--rerun"]) == 0
    table = pd.read_parquet(results / PARQUET)
    assert len(table) == 4 and table["trial_id"].is_unique


def test_a_deleted_table_is_rebuilt_from_the_trial_folders(results: Path, suite_file) -> None:
    table = pd.read_parquet(results / PARQUET).set_index("trial_id").sort_index()
    (results / PARQUET).unlink()
    (results / CSV).unlink()
    rebuilt = read_results(results).set_index("trial_id").sort_index()
    pd.testing.assert_frame_equal(rebuilt, table, check_dtype=False, check_like=True)
    assert main(["run", str(suite_file()), "--output", str(results)]) == 0  # trains nothing
    again = pd.read_parquet(results / PARQUET).set_index("trial_id").sort_index()
    assert list(again["train_s"]) == list(table["train_s"])


def test_a_trial_whose_row_cannot_be_read_is_said_to_be_left_out(results: Path, caplog) -> None:
    # before: a rebuilt table and report without it, and not a word
    (results / PARQUET).unlink()
    (results / CSV).unlink()
    torn = sorted((results / "trials").glob("*/row.json"))[0]
    torn.write_text('{"trial_id": "x", "sta')
    with caplog.at_level("WARNING", logger="aebench"):
        rebuilt = read_results(results)
    assert torn.parent.name not in set(rebuilt["trial_id"])
    assert f"aebench: {torn}: not a row: its trial is left out" in caplog.text


def test_a_folder_of_another_suite_is_refused(results: Path, suite_file, capsys) -> None:
    before = snapshot(results)
    other = suite_file(name="other")
    assert main(["run", str(other), "--output", str(results)]) == 2
    line = one_error_line(capsys)
    assert "'tiny'" in line and "'other'" in line and str(results) in line, line
    assert snapshot(results) == before


@pytest.mark.parametrize("where", ["file", "below a file"])
def test_an_output_that_is_a_file_is_one_line(tmp_path, suite_file, capsys, where) -> None:
    file = tmp_path / "taken"
    file.write_text("mine\n")
    output = file if where == "file" else file / "out"
    assert main(["run", str(suite_file()), "--output", str(output)]) == 2
    assert "is a file" in one_error_line(capsys)
    assert file.read_text() == "mine\n"


def test_a_read_only_folder_is_one_line(results: Path, suite_file, capsys, monkeypatch) -> None:
    """Simulated (tests may run as root, whom permissions do not stop): the folder denies
    writing, as a read-only mount does."""
    real_access = os.access
    denied = os.path.realpath(results)

    def access(path, mode, **kwargs) -> bool:
        if os.path.realpath(path) == denied and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    before = snapshot(results)
    more_seeds = suite_file(seeds=[0, 1, 2])
    for argv in (["run", str(more_seeds), "--output", str(results)], ["evaluate", str(results)]):
        assert main(argv) == 2
        assert "read-only" in one_error_line(capsys)
    assert snapshot(results) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_really_read_only_folder_is_one_line(results: Path, suite_file, capsys) -> None:
    before = snapshot(results)
    results.chmod(0o555)
    try:
        assert main(["run", str(suite_file()), "--output", str(results), "--rerun"]) == 2
        assert "read-only" in one_error_line(capsys)
    finally:
        results.chmod(0o755)
    assert snapshot(results) == before


def enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def full_disk_for_tables(monkeypatch) -> None:
    """``DataFrame.to_parquet`` writes half its file, then the disk is full."""
    real = pd.DataFrame.to_parquet

    def half(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[: Path(path).stat().st_size // 2])
        raise enospc()

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half)


def full_disk_for_text(monkeypatch) -> None:
    """``Path.write_text`` writes half its text, then the disk is full."""
    real = Path.write_text

    def half(self, data, *args, **kwargs):
        real(self, data[: len(data) // 2], *args, **kwargs)
        raise enospc()

    monkeypatch.setattr(Path, "write_text", half)


def test_a_full_disk_when_the_table_is_written_loses_nothing(
    results: Path, suite_file, capsys, monkeypatch
) -> None:
    table = (results / PARQUET).read_bytes()
    full_disk_for_tables(monkeypatch)
    more_seeds = suite_file(seeds=[0, 1, 2])
    assert main(["run", str(more_seeds), "--output", str(results)]) == 2
    line = one_error_line(capsys)
    assert str(results / PARQUET) in line and "No space left on device" in line, line
    assert not temporaries(results)
    assert (results / PARQUET).read_bytes() == table  # the old table, whole
    assert len(read_results(results)) == 6  # the new rows are kept (journal, trial folders)

    monkeypatch.undo()
    monkeypatch.chdir(results.parent)
    assert main(["run", str(more_seeds), "--output", str(results)]) == 0
    capsys.readouterr()
    final = pd.read_parquet(results / PARQUET)
    assert len(final) == 6 and final["trial_id"].is_unique and not (results / JOURNAL).exists()


def test_a_full_disk_when_a_trial_is_recorded_is_one_line(
    results: Path, suite_file, capsys, monkeypatch
) -> None:
    table = (results / PARQUET).read_bytes()
    real_write = os.write

    def enospc_on_journal(fd: int, data: bytes) -> int:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == JOURNAL:
            return real_write(fd, data[: len(data) // 2])  # a short write: the disk filled
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", enospc_on_journal)
    more_seeds = suite_file(seeds=[0, 1, 2])
    assert main(["run", str(more_seeds), "--output", str(results)]) == 2
    line = one_error_line(capsys)
    assert str(results / JOURNAL) in line and "No space left on device" in line, line
    assert not temporaries(results)
    assert (results / PARQUET).read_bytes() == table
    assert not (results / JOURNAL).exists() or (results / JOURNAL).read_text() == ""


def test_a_full_disk_leaves_the_previous_report_whole(results: Path, capsys, monkeypatch) -> None:
    reports = {name: (results / name).read_bytes() for name in (REPORT_MD, REPORT_HTML)}
    full_disk_for_text(monkeypatch)
    assert main(["report", str(results)]) == 2
    line = one_error_line(capsys)
    assert str(results / REPORT_MD) in line and "No space left on device" in line, line
    assert {name: (results / name).read_bytes() for name in reports} == reports
    assert not temporaries(results)


# --- symbolic links: nothing is written through them ------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the results folder that a planted link points at."""
    path = tmp_path / "precious.txt"
    path.write_text("not aebench's\n")
    return path


def test_a_link_planted_as_the_report_is_replaced_not_followed(
    results: Path, outside: Path
) -> None:
    for name in (REPORT_MD, REPORT_HTML):
        (results / name).unlink()
        (results / name).symlink_to(outside)
    assert main(["report", str(results)]) == 0
    assert outside.read_text() == "not aebench's\n"
    assert not (results / REPORT_MD).is_symlink() and (results / REPORT_MD).stat().st_size > 100


def test_a_link_planted_as_the_table_is_replaced_not_followed(
    results: Path, tmp_path: Path, suite_file
) -> None:
    elsewhere = tmp_path / "elsewhere.parquet"
    shutil.copy(results / PARQUET, elsewhere)
    kept = elsewhere.read_bytes()
    (results / PARQUET).unlink()
    (results / PARQUET).symlink_to(elsewhere)
    more_seeds = suite_file(seeds=[0, 1, 2])
    assert main(["run", str(more_seeds), "--output", str(results)]) == 0
    assert elsewhere.read_bytes() == kept
    assert not (results / PARQUET).is_symlink() and len(pd.read_parquet(results / PARQUET)) == 6


def test_links_planted_at_the_old_temporary_names_are_not_followed(
    results: Path, outside: Path, suite_file
) -> None:
    """The names the table and report were written under before: the process id alone."""
    for name in (PARQUET, CSV, REPORT_MD, REPORT_HTML):
        (results / f".{name}.{os.getpid()}.tmp").symlink_to(outside)
    more_seeds = suite_file(seeds=[0, 1, 2])
    assert main(["run", str(more_seeds), "--output", str(results)]) == 0
    assert outside.read_text() == "not aebench's\n"
    assert len(pd.read_parquet(results / PARQUET)) == 6


def test_a_link_at_the_drawn_temporary_name_is_not_followed(
    tmp_path: Path, outside: Path, monkeypatch
) -> None:
    """Even a link at the very name drawn (guessed, or by chance) is passed by, not written."""
    drawn = iter(["planted", "fresh"])
    monkeypatch.setattr(files, "_token", lambda: next(drawn))
    planted = tmp_path / f".report.md.{os.getpid()}.planted.tmp"
    planted.symlink_to(outside)
    files.write_atomically(tmp_path / "report.md", lambda p: p.write_text("the report\n"))
    assert (tmp_path / "report.md").read_text() == "the report\n"
    assert outside.read_text() == "not aebench's\n" and planted.is_symlink()


def test_a_link_planted_as_the_journal_is_removed_not_followed(
    results: Path, outside: Path, suite_file
) -> None:
    (results / JOURNAL).symlink_to(outside)
    more_seeds = suite_file(seeds=[0, 1, 2])
    assert main(["run", str(more_seeds), "--output", str(results)]) == 0
    assert outside.read_text() == "not aebench's\n"
    assert len(pd.read_parquet(results / PARQUET)) == 6 and not (results / JOURNAL).exists()


@pytest.mark.parametrize("name", [LOCK_FILE, "aebench.log"])
def test_a_link_planted_as_a_file_aebench_appends_to_is_one_line(
    results: Path, outside: Path, suite_file, capsys, name: str
) -> None:
    """Files written in place (the lock, the log) are never opened through a link: the run
    stops with one line, before anything is written."""
    (results / name).unlink(missing_ok=True)
    (results / name).symlink_to(outside)
    before = snapshot(results)
    more_seeds = suite_file(seeds=[0, 1, 2])
    assert main(["run", str(more_seeds), "--output", str(results)]) == 2
    assert "symbolic link" in one_error_line(capsys)
    assert outside.read_text() == "not aebench's\n"
    assert snapshot(results) == before


# --- trial files -------------------------------------------------------------------------------


def test_a_truncated_figures_file_is_named_once_and_the_report_goes_on(
    results: Path, capsys
) -> None:
    trial = sorted((results / "trials").iterdir())[0]
    npz = trial / ARRAYS
    npz.write_bytes(npz.read_bytes()[:300])
    for png in TRIAL_PNGS:
        (trial / png).unlink(missing_ok=True)  # so that the report draws them from the arrays
    assert main(["report", str(results)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings) == 1 and str(npz) in warnings[0], warnings
    assert "Traceback" not in warnings[0]
    assert (results / REPORT_HTML).stat().st_size > 1000
