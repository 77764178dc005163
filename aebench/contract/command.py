"""The command contract: a subcommand of the ``aebench`` program, as a plugin registers it.

``aebench ui`` is the MLflow plugin's; a plugin adds ``aebench NAME`` the same way, in the manner
of ``llm``'s ``register_commands``. Commands take their arguments from the command line, never
from a suite, so a registered command has no suite parameters (its signature is empty).
"""

# No `from __future__ import annotations`: the fields' types are read at run time (the params
# model of a registration resolves them), so they must be objects, not text.
import argparse
import inspect
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A subcommand of ``aebench``: ``register("hello", aebench.Command(help=..., run=...))``.

    - ``help``: one line, shown by ``aebench --help`` and ``aebench list commands``.
    - ``run(args) -> int``: does the work with the parsed ``argparse.Namespace`` and returns the
      exit status. Bad input is one line on stderr (``aebench: error: ...``) and status 2,
      as aebench's own commands do; an exception it raises is shown as one line naming the
      plugin, status 1.
    - ``arguments(parser)``: adds the command's arguments to its ``argparse.ArgumentParser``
      (``parser.add_argument("--port", type=int, default=5000)``); None when it takes none.

    A name that is one of aebench's own commands (``run``, ``list``, ...) is refused, with a
    warning naming the plugin. ``aebench`` imports the plugin that registers a command only to
    run it (or to show its ``--help``): import heavy modules inside ``run``, not at the top.
    """

    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None

    def __post_init__(self) -> None:
        # Registered as the factory of its kind: its help is its description in listings, and
        # it has no parameters a suite or a params model could set.
        object.__setattr__(self, "__doc__", self.help)
        object.__setattr__(self, "__signature__", inspect.Signature())

    def __call__(self, args: argparse.Namespace) -> int:
        """Run the command: ``run(args)``."""
        return self.run(args)
