"""Fixtures of the command-line tests."""

from dataclasses import dataclass

import pytest

from aebench.cli import main


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def aebench(tmp_path, monkeypatch, capsys):
    """``aebench ARGS`` run in tmp_path: its exit status and what it printed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store, under tmp_path

    def run(*args: str) -> Result:
        capsys.readouterr()  # what came before is not this command's
        status = main(list(args))
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return run
