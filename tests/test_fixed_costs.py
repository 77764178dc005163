"""`aebench --help` and `aebench list` stay cheap: they import neither MLflow nor the training and
running machinery (so they cannot train anything), nor the heavy libraries of other commands."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# What only `run`, `report`, `ui` or `compare` need. (pandas is not listed: the metric plugins'
# scikit-learn imports it while they register.)
HEAVY = ("mlflow", "aebench.train", "aebench.runner", "aebench.tracking", "aebench.compare")


@pytest.mark.parametrize("argv", [["--help"], ["list"]])
def test_help_and_list_import_nothing_heavy(argv: list[str]) -> None:
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
        heavy = {HEAVY!r}
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
