"""Commands are plugins: a package's ``aebench_register_commands`` adds ``aebench NAME`` (as
``aebench ui`` is the MLflow plugin's), loading only that plugin to run it; a name of aebench's
own is refused, with a warning naming the plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_plugins import fake_distribution
from repo import SUPPORT
from timing import scaled

import aebench
from aebench.cli import main

HELLO = SUPPORT / "aebench_hello_command.py"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return fake_distribution(tmp_path / "site", HELLO)


def aebench_in(site: Path, *argv: str, code: str | None = None) -> subprocess.CompletedProcess:
    """``aebench ARGV`` in a fresh interpreter with the hello package installed (or ``code``)."""
    # No __pycache__ written into site: it would change the folder the saved listing's
    # fingerprint holds, and the listing would be built again (importing torch) by the next call.
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    command = ["-c", code] if code is not None else ["-m", "aebench.cli", *argv]
    return subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=scaled(120),
        check=False,
    )


def test_a_plugin_command_runs_with_its_arguments_and_its_status(site: Path) -> None:
    done = aebench_in(site, "hello", "--name", "Ada")
    assert (done.returncode, done.stdout) == (0, "hello, Ada\n"), done.stderr
    assert aebench_in(site, "hello", "--name", "three").returncode == 3
    helped = aebench_in(site, "hello", "--help")
    assert helped.returncode == 0 and "--name NAME" in helped.stdout and "Greet" in helped.stdout


def test_a_plugin_command_loads_only_its_own_plugin(site: Path) -> None:
    aebench_in(site, "list")  # saves the listing, as on a user's machine
    code = textwrap.dedent(
        """
        import sys
        from aebench.cli import main
        status = main(["hello"])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "mlflow"))
        print(status, heavy)
        """
    )
    done = aebench_in(site, code=code)
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr


def test_help_lists_plugin_commands_and_refuses_a_core_name(site: Path, tmp_path: Path) -> None:
    helped = aebench_in(site, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "Greet someone." in helped.stdout
    assert "the MLflow UI" in helped.stdout  # `ui`, the MLflow plugin's
    assert helped.stderr.strip() == (
        "aebench: warning: plugin 'aebench_hello_command.aebench_hello_command'"
        " (aebench_hello_command) registers the command 'report', one of aebench's own: it is"
        " ignored"
    )
    # The core's report runs, not the plugin's.
    report = aebench_in(site, "report", str(tmp_path / "nowhere"))
    assert report.returncode == 2 and "the toy's report" not in report.stdout


def test_a_command_that_raises_is_one_line_naming_it(site: Path) -> None:
    done = aebench_in(site, "boom")
    assert done.returncode == 1
    # after the warning of its `report`: a load warning is said wherever plugin commands are read
    assert done.stderr.splitlines()[-1] == (
        "aebench: error: command 'boom' (aebench_hello_command 0.1): RuntimeError: the toy"
        " command broke"
    )


def test_an_unknown_command_names_the_known_ones(site: Path) -> None:
    done = aebench_in(site, "helo")
    assert done.returncode == 2
    assert "invalid choice: 'helo'" in done.stderr and "'hello'" in done.stderr


def test_ui_is_the_mlflow_plugins_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["ui", "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert "--port PORT" in out and "--output OUTPUT" in out
    entry = aebench.load_plugins().commands.get("ui")
    assert entry.plugin == "aebench.mlflow" and isinstance(entry.factory, aebench.Command)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "ui " in capsys.readouterr().out
