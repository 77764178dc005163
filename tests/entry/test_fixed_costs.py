"""`aebench --help`, `aebench list` and `aebench plugins` stay cheap: they import neither MLflow nor
the training and running machinery (so they cannot train anything), nor the heavy libraries of
other commands, and the help imports no torch; nor do `report`, `compare` and `ui`, which only read
results. (A saved listing spares `list` and `plugins` torch too: tests/plugins/test_listing.py.)"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from timing import scaled

# What only `run`, `report`, `ui` or `compare` need. (pandas is not listed: the metric plugins'
# scikit-learn imports it while they register.)
HEAVY = (
    "mlflow",
    "aebench.run.train",
    "aebench.run.trial",
    "aebench.observers.tracking",
    "aebench.views.compare",
)


def imported_by(
    argv: list[str], modules: tuple[str, ...], expected: int = 0, cwd: Path | None = None
) -> list[str]:
    """Which of ``modules`` (and their submodules) ``aebench ARGV`` imports, in a fresh
    interpreter (in ``cwd``, where a run's default MLflow store goes)."""
    code = textwrap.dedent(
        f"""
        import contextlib, io, sys
        from aebench.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                status = main({argv!r})
            except SystemExit as exit:
                status = exit.code
        assert status == {expected}, status
        assert out.getvalue() or {expected}, "nothing printed"
        heavy = {modules!r}
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=True,
        cwd=cwd,
    )
    return ast.literal_eval(done.stdout.strip())


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["plugins"]])
def test_help_list_and_plugins_import_nothing_heavy(argv: list[str]) -> None:
    assert imported_by(argv, HEAVY) == []


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["compare", "--help"]])
def test_help_does_not_import_torch(argv: list[str]) -> None:
    # Plugins' commands are in the help, read from the saved listing (saved by any first call).
    imported_by(["list"], ())
    assert imported_by(argv, ("torch",)) == []


@pytest.mark.slow  # fresh interpreters: 6 s
def test_the_commands_that_read_results_import_no_torch(tmp_path) -> None:
    import pandas as pd

    from aebench.contract.columns import COLUMNS_FILE, Column, Vocabulary

    row = {"trial_id": "t0", "dataset": "digits", "model": "ae", "regularizer": "none"}
    row |= {"seed": 0, "status": "ok", "reason": "", "recon_mse": 0.1}
    pd.DataFrame([row]).to_parquet(tmp_path / "results.parquet")
    vocabulary = Vocabulary()
    vocabulary.add([Column("recon_mse", "lower", floor=1e-3)])
    (tmp_path / COLUMNS_FILE).write_text(vocabulary.to_json())  # as `aebench run` leaves it
    folder = str(tmp_path)
    imported_by(["list"], ())  # the listing saved: `ui` is found in it, torch not imported
    assert imported_by(["report", folder], ("torch",)) == []
    assert imported_by(["compare", folder, folder], ("torch",)) == []
    # Without a store ui stops at once (status 2); what it imports to get there is what counts.
    assert imported_by(["ui", "--output", folder], ("torch", "mlflow"), expected=2) == []
    # A folder from before columns.json: the declarations come from the saved listing.
    (tmp_path / COLUMNS_FILE).unlink()
    assert imported_by(["report", folder], ("torch",)) == []


@pytest.mark.slow  # three fresh interpreters, one of them training
def test_a_run_without_a_search_imports_no_optuna(tmp_path: Path, tiny_suite: Path) -> None:
    # Optuna is 0.16 s of every run that imports it; only a suite that tunes needs it. The run
    # and its report (and `report` again) import none of it; a search space does.
    text = tiny_suite.read_text().replace("seeds = [0, 1]", "seeds = [0]")
    tiny_suite.write_text(text.replace("epochs = 2", "epochs = 1"))
    output = tmp_path / "out"
    run = ["run", str(tiny_suite), "--output", str(output)]
    assert imported_by(run, ("optuna",), cwd=tmp_path) == []
    assert (output / "report.html").is_file()
    assert imported_by(["report", str(output)], ("optuna",)) == []
    # A space without a [search]: a suite error, which the search's checks find.
    tiny_suite.write_text(text.replace("grid = {", "search = {"))
    assert "optuna" in imported_by(run, ("optuna",), expected=2, cwd=tmp_path)
