"""The ``aebench`` command (``cli.console``) leaves without the interpreter's teardown once
``main`` has returned: its status, its output and the exit handlers the command registered are
kept; where ``main`` raised, Python exits as usual."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from timing import scaled

PROGRAM = textwrap.dedent(
    """
    import atexit, sys
    from pathlib import Path
    from aebench import cli
    out = Path(sys.argv[1])

    class TornDown:
        def __del__(self):  # what the interpreter's teardown calls
            (out / "torn-down").write_text("")

    kept = TornDown()

    def main():
        atexit.register(lambda: (out / "handler").write_text(""))
        print("printed", end="")  # in the pipe's buffer until the end
        {body}

    cli.main = main
    {ending}
    """
)


def command(
    tmp_path: Path, body: str, ending: str = "cli.console()"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM.format(body=body, ending=ending), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=scaled(60),
        check=False,
    )


def test_the_command_ends_with_mains_status_its_output_and_its_exit_handlers(tmp_path) -> None:
    done = command(tmp_path, "return 3")
    assert done.returncode == 3 and done.stdout == "printed" and done.stderr == ""
    assert (tmp_path / "handler").exists()
    assert not (tmp_path / "torn-down").exists()  # no teardown


def test_without_it_the_interpreter_tears_down(tmp_path) -> None:
    """What the test above shows skipped happens in a plain exit."""
    done = command(tmp_path, "return 3", ending="sys.exit(cli.main())")
    assert done.returncode == 3 and (tmp_path / "torn-down").exists()


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [("raise RuntimeError('broken')", 1, "RuntimeError: broken"), ("sys.exit(2)", 2, "")],
)
def test_where_main_raises_python_exits_as_usual(tmp_path, body, status, said) -> None:
    done = command(tmp_path, body)
    assert done.returncode == status and done.stdout == "printed"
    assert said in done.stderr
    assert (tmp_path / "handler").exists() and (tmp_path / "torn-down").exists()
