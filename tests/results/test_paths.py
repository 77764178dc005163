"""Where aebench writes (aebench.paths): never into the system's folders, and what a suite file
names stays inside the working directory; a table's trial ids never name a place elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from aebench import paths
from aebench.cli import main


@pytest.mark.parametrize(
    ("path", "system"),
    [
        ("/etc", "/etc"),
        ("/etc/x/y", "/etc"),
        ("/usr/lib/../../etc/passwd", "/etc"),
        ("/", "/"),
        ("/tmp/results", None),
        ("/etcetera", None),  # a prefix of the name is not the folder
        ("results/quick", None),
    ],
)
def test_system_folders_are_recognised(path: str, system: str | None) -> None:
    found = paths.system_folder(path)
    assert (str(found) if found else None) == system


def test_a_symbolic_link_into_a_system_folder_is_followed(tmp_path: Path) -> None:
    (tmp_path / "innocent").symlink_to("/etc")
    assert paths.system_folder(tmp_path / "innocent" / "out") == Path("/etc")
    assert not paths.inside("innocent", tmp_path)


@pytest.mark.parametrize(
    ("path", "inside"),
    [("results", True), ("a/../b", True), ("..", False), ("a/../../b", False), (".", True)],
)
def test_inside_the_working_directory(tmp_path: Path, path: str, inside: bool) -> None:
    assert paths.inside(path, tmp_path) is inside


def test_output_on_the_command_line_may_not_be_a_system_folder(
    tiny_suite: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tiny_suite.parent)
    assert main(["run", str(tiny_suite), "--output", "/etc/aebench-results"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "aebench: error: output: /etc/aebench-results is in the system folder /etc;"
        " aebench does not write there"
    )
    assert not Path("/etc/aebench-results").exists()


def test_a_report_of_a_table_whose_trial_id_is_a_path_writes_nothing_outside(
    tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "deep" / "results"
    folder.mkdir(parents=True)
    row = {"trial_id": "../../../escaped", "dataset": "digits", "model": "ae"}
    row |= {"regularizer": "none", "seed": 0, "status": "ok", "reason": "", "recon_mse": 0.1}
    pd.DataFrame([row]).to_parquet(folder / "results.parquet")
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trial id '../../../escaped' is not one aebench writes" in err
    written = sorted(p for p in tmp_path.rglob("*") if p not in before)
    assert all(folder in p.parents for p in written), written


def test_a_dataset_is_never_downloaded_into_a_system_folder(tmp_path: Path, monkeypatch) -> None:
    from aebench_plugins.datasets.torchvision_sets import MissingDataError, mnist

    system = tmp_path / "system"  # stands for /etc: what is refused is the same
    system.mkdir()
    monkeypatch.setattr(paths, "SYSTEM_FOLDERS", (*paths.SYSTEM_FOLDERS, system.resolve()))
    with pytest.raises(MissingDataError, match="is in the system folder .*does not write there"):
        mnist(root=str(system / "data"), download=True)
    assert os.listdir(system) == []  # not even the MNIST folder was made


def test_the_environments_tracking_store_may_not_be_in_a_system_folder(monkeypatch) -> None:
    from aebench.observers.tracking_store import TrackingError, tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////etc/aebench/mlflow.db")
    with pytest.raises(TrackingError, match="is in the system folder /etc"):
        tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/team/mlflow.db")
    assert tracking_uri() == "sqlite:////tmp/team/mlflow.db"  # anywhere else: the user's choice
