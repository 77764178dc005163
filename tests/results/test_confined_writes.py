"""Writes stay inside the results folder: a link planted where aebench writes (``trials/``, a
trial's folder, ``figures/``) is refused with one line, names from a table are made file names,
and nothing is ever created outside the folder (each hostile case walks the temporary root before
and after). Also: the temporary files of killed writes are removed at the next run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from builders import as_toml, build_suite

import aebench
from aebench.cli import main
from aebench.plugins.manager import load_plugins
from aebench.results.confined import (
    check_links,
    confined,
    remove_stale_temporaries,
    safe_name,
)
from aebench.results.files import FolderError
from aebench.results.table import PARQUET
from aebench.results.trials import TRIALS
from aebench.run.checkpoint import Checkpoints

# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits", "vae", "latent_digits", "beta=4", "a.b-c_d+e"])
def test_a_plain_name_is_kept(name: str) -> None:
    assert safe_name(name) == name


HOSTILE = [
    "../../pwned",
    "..",
    ".",
    "",
    "a/b",
    "a\\b",
    ".hidden",
    "x\0y",
    "x/../../../../pwned",
    "digits/vae/none",
    "é" * 300,
    "a" * 300,
    "a" * 301,
    "abc\n",
    "é",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_hostile_name_becomes_one_plain_bounded_file_name(text: str) -> None:
    name = safe_name(text)
    assert name and "/" not in name and "\\" not in name and "\0" not in name
    assert ".." not in name and not name.startswith(".")
    assert len(name) <= 100
    assert safe_name(text) == name  # stable: the same text, the same file


def test_distinct_texts_get_distinct_names_even_a_crafted_one() -> None:
    texts = [*HOSTILE, "a-b", "a_b", "digits-vae-none", "abc"]
    crafted = [safe_name("a/b"), safe_name("é")]  # a table may hold another's safe name as is
    names = [safe_name(t) for t in [*texts, *crafted]]
    assert len(set(names)) == len(names)
    assert safe_name("digits/vae/none").startswith("digits-vae-none-")  # still readable


def test_confined_refuses_a_part_that_is_not_one_plain_name(tmp_path: Path) -> None:
    for part in ("..", "a/b", "", "."):
        with pytest.raises(FolderError, match="not a plain file name"):
            confined(tmp_path, "figures", part)
    assert confined(tmp_path, "figures", "x.png") == tmp_path / "figures" / "x.png"
    assert (tmp_path / "figures").is_dir()


# --- hostile folders: one line, exit 2, nothing written outside ------------------------------


def files_under(root: Path) -> dict[Path, tuple[int, int]]:
    """Every path under ``root`` with its inode and modification time, links not followed (a
    planted link's target is walked as itself, where it is under ``root``)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            stat = (Path(folder) / name).lstat()
            found[Path(folder) / name] = (stat.st_ino, stat.st_mtime_ns)
    return found


def created_outside(before: dict[Path, tuple[int, int]], root: Path, results: Path) -> list[Path]:
    """What appeared or changed under ``root`` since ``before``, outside the results folder."""
    after = files_under(root)
    changed = {p for p, stamp in after.items() if before.get(p) != stamp}
    return sorted(p for p in changed if p != results and results not in p.parents)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with one finished trial, its figures and its report."""
    folder = tmp_path_factory.mktemp("finished") / "out"
    run = aebench.run_suite(build_suite(name="confined"), output=folder)
    assert [row["status"] for row in run.rows] == ["ok"]
    return folder


@pytest.fixture
def place(tmp_path: Path, finished: Path) -> tuple[Path, Path, Path]:
    """(temporary root, results folder deep in it, a folder outside it): the results folder a
    copy of ``finished`` three levels down, so that a ``../..`` name still lands in the root."""
    results = tmp_path / "a" / "b" / "out"
    shutil.copytree(finished, results, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    return tmp_path, results, outside


def trial_id(results: Path) -> str:
    return str(pd.read_parquet(results / PARQUET)["trial_id"].iloc[0])


def link(path: Path, target: Path) -> None:
    """Replace ``path`` by a link to ``target`` (what it held moved there first)."""
    if path.exists():
        shutil.copytree(path, target, dirs_exist_ok=True)
        shutil.rmtree(path)
    target.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target, target_is_directory=True)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("aebench: error: "), line
    return line


@pytest.mark.parametrize("where", ["trials", "trial"])
def test_a_run_into_a_folder_with_a_linked_trials_folder_is_refused(
    place: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], where: str
) -> None:
    root, results, outside = place
    suite = root / "suite.toml"  # a second seed: one trial to train, written where it goes
    suite.write_text(as_toml(build_suite(name="confined", seeds=[0, 1])))
    new = aebench.load_suite(suite, load_plugins()).trials[1].id
    assert new != trial_id(results)
    planted = results / TRIALS if where == "trials" else results / TRIALS / new
    link(planted, outside / "target")
    before = files_under(root)
    code = main(["run", str(suite), "--output", str(results)])
    assert created_outside(before, root, results) == []
    assert code == 2
    line = one_error_line(capsys)
    assert str(planted) in line and "symbolic link" in line, line


def test_a_report_into_a_folder_with_a_linked_figures_folder_is_refused(
    place: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, results, outside = place
    link(results / "figures", outside / "figures")
    before = files_under(root)
    code = main(["report", str(results)])
    assert created_outside(before, root, results) == []
    assert code == 2
    assert str(results / "figures") in one_error_line(capsys)


def test_a_link_planted_into_a_trial_folder_is_refused_by_each_write(tmp_path: Path) -> None:
    """The check right before a write, not only at the start: a checkpoint is not written
    through a trial folder that became a link (training goes on without, one warning)."""
    results, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    (results / TRIALS).mkdir(parents=True)
    (results / TRIALS / "t").symlink_to(outside, target_is_directory=True)
    with pytest.raises(FolderError, match="symbolic link"):
        check_links(results)
    checkpoints = Checkpoints(results / TRIALS / "t" / "checkpoint.pt", "t", 1, root=results)
    checkpoints.save({"model": {"w": torch.zeros(2)}})
    assert list(outside.iterdir()) == []
    assert not checkpoints.due(1)  # broken: not tried again


@pytest.mark.parametrize("dataset", ["../../pwned", "x/../../../../pwned", ".hidden/x"])
def test_a_crafted_dataset_cell_names_a_figure_inside_the_folder(
    place: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], dataset: str
) -> None:
    root, results, _ = place
    table = pd.read_parquet(results / PARQUET)
    table["dataset"] = dataset
    table.to_parquet(results / PARQUET, index=False)
    before = files_under(root)
    assert main(["report", str(results)]) == 0, capsys.readouterr().err
    assert created_outside(before, root, results) == []
    drawn = [p.name for p in (results / "figures").iterdir()]
    assert f"{safe_name('latent_' + dataset)}.png" in drawn
    assert all(not name.startswith(".") for name in drawn)


# --- temporary files of killed writes ---------------------------------------------------------


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_aebench_are_removed_and_nothing_else(tmp_path: Path) -> None:
    trial = tmp_path / TRIALS / "abc"
    trial.mkdir(parents=True)
    (tmp_path / "figures").mkdir()
    dead, mine = dead_pid(), os.getpid()
    stale = [
        tmp_path / f".results.parquet.{dead}.0123456789ab.tmp",
        trial / f".model.pt.{dead}.0123456789ab.tmp",
        tmp_path / "figures" / f".latent_digits.png.{dead}.a1b2c3d4e5f6.tmp",
    ]
    kept = [
        tmp_path / f".results.parquet.{mine}.0123456789ab.tmp",  # this process's, writing now
        tmp_path / f".results.parquet.{dead}.xyz.tmp",  # not aebench's pattern
        tmp_path / "notes.tmp",
        trial / "model.pt",
    ]
    for path in stale + kept:
        path.write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)


def test_a_run_removes_what_killed_writes_left(place: tuple[Path, Path, Path]) -> None:
    _, results, _ = place
    dead = dead_pid()
    left = [
        results / f".results.parquet.{dead}.0123456789ab.tmp",
        results / TRIALS / trial_id(results) / f".curves.png.{dead}.0123456789ab.tmp",
    ]
    for path in left:
        path.write_bytes(b"half a file")
    aebench.run_suite(build_suite(name="confined"), output=results)  # nothing left to train
    assert [p for p in left if p.exists()] == []
