"""``aebench evaluate`` on a crafted trial id (issue 32): one line and exit 2, as ``aebench
report`` gives, never a traceback, and nothing read or written outside the results folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from builders import build_suite

from aebench.cli import main
from aebench.measure_again import parse_setting
from aebench.results.table import PARQUET, SUITE_FILE
from aebench.run.kept import KeptTrialError
from aebench.run.suite import SuiteFile

CRAFTED = "../../x"


def crafted_folder(root: Path, trial_id: str = CRAFTED) -> Path:
    """A results folder whose table holds a finished trial of that id, and the suite it names."""
    folder = root / "deep" / "results"
    folder.mkdir(parents=True)
    row = {"trial_id": trial_id, "status": "ok", "dataset": "digits", "model": "ae", "seed": 0}
    pd.DataFrame([row]).to_parquet(folder / PARQUET, index=False)
    spec = SuiteFile.model_validate(build_suite())
    (folder / SUITE_FILE).write_text(spec.model_dump_json())
    return folder


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("arguments", [[], ["--trial", CRAFTED]])
def test_a_crafted_trial_id_in_the_table_is_one_line_and_exit_2(
    tmp_path: Path, capsys, arguments: list[str]
) -> None:
    folder = crafted_folder(tmp_path)
    before = files_under(tmp_path)
    assert main(["evaluate", str(folder), *arguments]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("aebench: error: ") and repr(CRAFTED) in line, line
    assert "Traceback" not in captured.err + captured.out
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("trial_id", ["a/b", "x" * 65, "tab\there", ".."])
def test_a_named_id_that_is_no_trial_id_is_one_line_and_exit_2(
    tmp_path: Path, capsys, trial_id: str
) -> None:
    folder = crafted_folder(tmp_path, "0123456789abcdef")
    assert main(["evaluate", str(folder), "--trial", trial_id]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert (
        line
        == f"aebench: error: --trial {trial_id!r}: not a trial id (letters, digits, '-' and '_')"
    )


def test_a_setting_nested_too_deeply_is_one_line() -> None:
    with pytest.raises(KeptTrialError, match=r"^--set m\.p=\.\.\.: nested too deeply$"):
        parse_setting("m.p=" + "[" * 5000 + "]" * 5000)
