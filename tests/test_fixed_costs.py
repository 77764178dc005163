"""`aebench --help`, `aebench list` and `aebench plugins` stay cheap: they import neither MLflow nor
the training and running machinery (so they cannot train anything), nor the heavy libraries of
other commands, and the help imports no torch. (A saved listing spares `list` and `plugins` torch
too: tests/test_listing.py.)"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import pytest

# What only `run`, `report`, `ui` or `compare` need. (pandas is not listed: the metric plugins'
# scikit-learn imports it while they register.)
HEAVY = ("mlflow", "aebench.train", "aebench.runner", "aebench.tracking", "aebench.compare")


def imported_by(argv: list[str], modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` (and their submodules) ``aebench ARGV`` imports, in a fresh
    interpreter."""
    code = textwrap.dedent(
        f"""
        import contextlib, io, sys
        from aebench.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                status = main({argv!r})
            except SystemExit as exit:
                status = exit.code
        assert status == 0, status
        assert out.getvalue(), "nothing printed"
        heavy = {modules!r}
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return ast.literal_eval(done.stdout.strip())


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["plugins"]])
def test_help_list_and_plugins_import_nothing_heavy(argv: list[str]) -> None:
    assert imported_by(argv, HEAVY) == []


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["compare", "--help"]])
def test_help_does_not_import_torch(argv: list[str]) -> None:
    assert imported_by(argv, ("torch",)) == []
