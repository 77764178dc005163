"""The ``aebench`` command: run | plugins | list | report | compare | evaluate | sample |
reconstruct, and the commands plugins register (``aebench ui`` is the MLflow plugin's).

Bad input ends with one line on stderr and exit status 2, never a traceback. The core commands
never load plugins to build their parser; a plugin's command loads only the plugin that registers
it, found in the saved listing (``aebench.plugins.listing``), so that ``aebench ui`` stays fast.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aebench.commands import (
    UsageError,
    cmd_compare,
    cmd_evaluate,
    cmd_images,
    cmd_list,
    cmd_plugins,
    cmd_report,
    cmd_run,
)
from aebench.contract.command import Command
from aebench.plugins.listing import Listing, load_listing
from aebench.plugins.manager import KINDS, load_plugins
from aebench.run import stopping

if TYPE_CHECKING:
    from aebench.plugins.manager import Plugins

USAGE_ERROR = 2
# aebench's own commands: a plugin's command of one of these names is refused.
CORE_COMMANDS = frozenset(
    {"run", "plugins", "list", "report", "compare", "evaluate", "sample", "reconstruct"}
)


def _threads(text: str) -> int | str:
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: a number of threads (1 or more) or auto")


def _parser(plugin_commands: Mapping[str, Command | str] | None = None) -> argparse.ArgumentParser:
    """The core commands, then ``plugin_commands``: a ``Command`` to run, or a name's help alone
    (from the saved listing, for ``aebench --help``)."""
    parser = argparse.ArgumentParser(prog="aebench", description="Benchmark autoencoders.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train and measure every trial of a suite")
    run.add_argument("suite", type=Path, help="the suite file (TOML)")
    run.add_argument("--output", type=Path, help="output folder (default: results/<suite name>)")
    run.add_argument("--device", help="cpu, cuda, cuda:N or auto (overrides the suite)")
    run.add_argument(
        "--threads",
        type=_threads,
        help="torch's threads per trial process: a number, or auto (the cores no other process"
        " is running on, chosen again before every epoch; overrides [suite] threads)",
    )
    run.add_argument("--dry-run", action="store_true", help="list the trials, train nothing")
    run.add_argument(
        "--rerun", action="store_true", help="run every trial, even those already finished"
    )
    run.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 before anything trains when any installed plugin failed to load, lost a"
        " registration to a clash or registered the deprecated way",
    )
    run.add_argument(
        "--executor",
        default="local",
        metavar="NAME",
        help="where trials run, any registered executor (aebench list executors): local, here,"
        " one after another (default); isolated, each in a child process; dask, on a Dask"
        " cluster",
    )
    run.add_argument(
        "--executor-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the executor, as aebench list executors shows it; the value is"
        " read as TOML, else as text (repeatable)",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=int, help="dask: a local cluster of N worker processes on this machine"
    )
    where.add_argument("--scheduler", help="dask: an existing cluster's scheduler, tcp://HOST:PORT")

    plugins = commands.add_parser("plugins", help="installed plugins and their load errors")
    plugins.add_argument("--json", action="store_true")
    plugins.add_argument(
        "--strict", action="store_true", help="exit 1 when any plugin failed to load"
    )

    listing = commands.add_parser(
        "list",
        help="registered models, regularizers, datasets, metrics, observers, executors and"
        " commands",
    )
    listing.add_argument("kind", nargs="?", choices=list(KINDS), help="one kind only")
    listing.add_argument("--json", action="store_true")

    report = commands.add_parser(
        "report", help="build report.md and report.html of a results folder"
    )
    report.add_argument("folder", type=Path, help="a results folder (holding results.parquet)")

    compare = commands.add_parser(
        "compare", help="what regressed between two results tables (exit 1 when anything did)"
    )
    compare.add_argument("new", type=Path, help="results.parquet, or the folder holding it")
    compare.add_argument("baseline", type=Path, help="results.parquet, or the folder holding it")
    compare.add_argument(
        "--fail-on",
        default="quality,speed",
        help="what fails: quality, speed, reproduction (NEW outside a published value its suite"
        " names in [[references]]), inconclusive (too few seeds to tell), joined by commas; both"
        " (quality,speed: the default), all or none",
    )
    compare.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="of every test and interval, between 0.5 and 1 (default 0.95); Benjamini-Hochberg"
        " over everything compared",
    )
    compare.add_argument(
        "--speed-tolerance",
        type=float,
        default=0.2,
        help="the smallest slowdown of a speed column that matters, relative to the baseline"
        " (default 0.2)",
    )
    for old in ("--quality-tolerance", "--unstable-spread"):  # deprecated: accepted, ignored
        compare.add_argument(old, type=float, default=None, help=argparse.SUPPRESS)
    compare.add_argument("--all", action="store_true", help="show unchanged comparisons too")

    evaluate = commands.add_parser(
        "evaluate", help="measure kept models again (other metrics or settings), training nothing"
    )
    evaluate.add_argument("folder", type=Path, help="a results folder with kept trials")
    evaluate.add_argument("--metrics", help="comma-separated metrics (default: each trial's own)")
    evaluate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="METRIC.PARAM=VALUE",
        help="a metric's parameter, as aebench list metrics shows it (repeatable)",
    )
    evaluate.add_argument(
        "--trial", action="append", metavar="ID", help="only this trial (repeatable)"
    )
    evaluate.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    evaluate.add_argument(
        "--checkpoint",
        action="store_true",
        help="measure the --trial's last checkpoint (while its run goes on), print, write nothing",
    )

    for name, text in (
        ("sample", "images decoded from samples of a kept model's prior"),
        ("reconstruct", "test images beside a kept model's reconstructions"),
    ):
        images = commands.add_parser(name, help=text)
        images.add_argument("folder", type=Path, help="a results folder with kept trials")
        images.add_argument("trial", help="the trial's id (aebench run --dry-run shows them)")
        images.add_argument("-n", type=int, default=64 if name == "sample" else 10)
        images.add_argument("-o", "--out", type=Path, required=True, help="the PNG to write")
        images.add_argument("--seed", type=int, default=0, help="sample: the prior's seed")
    for name, command in (plugin_commands or {}).items():
        if isinstance(command, str):
            commands.add_parser(name, help=command)
            continue
        added = commands.add_parser(name, help=command.help, description=command.help)
        if command.arguments is not None:
            command.arguments(added)
    return parser


def _warn(line: str) -> None:
    print(f"aebench: warning: {line}", file=sys.stderr)


def _listed_commands(listing: Listing) -> dict[str, Any]:
    """The plugins' commands in the saved listing: name -> its entry (plugin, description); one
    named like a core command is refused, with a warning naming its plugin."""
    listed: dict[str, Any] = {}
    for entry in listing["kinds"].get("commands", []):
        if entry["name"] in CORE_COMMANDS:
            where = entry["distribution"] or entry["plugin"]
            _warn(
                f"plugin {entry['plugin']!r} ({where}) registers the command {entry['name']!r},"
                " one of aebench's own: it is ignored"
            )
        else:
            listed[entry["name"]] = entry
    return listed


def _command_plugins(name: str, listing: Listing) -> Plugins | None:
    """The plugin that registers the command ``name``, loaded alone (the others are not even
    imported); None when no plugin registers it."""
    owners = {e["plugin"] for e in listing["kinds"].get("commands", []) if e["name"] == name}
    if not owners:
        return None
    everyone = {p["plugin"] for p in listing["plugins"]} | {
        e["plugin"] for e in listing["load_errors"]
    }
    return load_plugins(blocked=everyone - owners)


def _parse(argv: list[str]) -> tuple[argparse.Namespace, Plugins | None]:
    """The arguments, with the plugins that registered the command they name (None for a core
    command: its parser needs no plugin)."""
    first = argv[0] if argv else None
    if first in CORE_COMMANDS:
        return _parser().parse_args(argv), None
    listing = load_listing()
    listed = _listed_commands(listing)
    plugins = _command_plugins(first, listing) if first in listed else None
    if plugins is None:  # `aebench`, `aebench --help`, an unknown command: names and help only
        return _parser({n: e["description"] for n, e in listed.items()}).parse_args(argv), None
    own = {}
    for entry in plugins.commands:
        if entry.name == first and isinstance(entry.factory, Command):
            own[entry.name] = entry.factory
        elif entry.name == first:
            what = type(entry.factory).__name__
            _warn(f"{entry.origin} is a {what}, not an aebench.Command: it is ignored")
    return _parser(own).parse_args(argv), plugins


def _run_plugin_command(plugins: Plugins, name: str, args: argparse.Namespace) -> int:
    """A plugin's command; what it raises is one line naming it, status 1."""
    entry = plugins.commands.get(name)
    try:
        status = entry.factory(args)
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except Exception as exc:
        print(f"aebench: error: {entry.origin}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return int(status or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args, command_plugins = _parse(list(sys.argv[1:] if argv is None else argv))
    # SIGTERM and Ctrl-C: a flag while trials run, acted on between steps (aebench.stopping).
    stopping.install()
    try:
        # Only the commands that use plugins load them: report and compare read files.
        if args.command == "plugins":  # both from the saved listing while nothing changed
            return cmd_plugins(load_listing(), args.json, args.strict)
        if args.command == "list":
            return cmd_list(load_listing(), args.kind, args.json)
        if args.command == "report":
            return cmd_report(args.folder)
        if command_plugins is not None:  # a plugin's command (`aebench ui`: MLflow's)
            return _run_plugin_command(command_plugins, args.command, args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "evaluate":
            return cmd_evaluate(load_plugins(), args)
        if args.command in ("sample", "reconstruct"):
            return cmd_images(load_plugins(), args)
        return cmd_run(load_plugins(), args)
    except UsageError as exc:
        for line in str(exc).splitlines():  # a suite's mistakes: one line each
            print(f"aebench: error: {line}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (stopping.Interrupted names which)
        signum = exc.args[0] if isinstance(exc, stopping.Interrupted) else signal.SIGINT
        print(
            "aebench: interrupted; finished trials are saved, run again to resume", file=sys.stderr
        )
        return 128 + signum
    except BrokenPipeError:  # `aebench compare --all | head`: the reader left; nothing to say
        # Python flushes stdout again at exit: point it at /dev/null so that flush is silent.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def console() -> None:
    """The ``aebench`` command: ``main``, and out without the interpreter's teardown.

    Once ``main`` has returned, everything is written and closed, and the exit handlers that the
    command registered (its workers shut down, temporary folders removed) still run; what is
    left is the interpreter freeing torch's, pandas' and scikit-learn's modules one by one: 1.2
    to 1.6 s after the quick suite, half a second of a rerun with nothing to do. The first exit
    handler registered runs last: it ends the process there, with ``main``'s status. Where
    ``main`` raised (a traceback, an argparse exit), Python exits as usual.
    """
    status: list[int] = []
    atexit.register(_leave, status)
    status.append(main())
    sys.exit(status[0])


def _leave(status: list[int]) -> None:
    if not status:
        return
    logging.shutdown()  # registered before this handler: it would run after it
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left; a closed stream
            pass
    os._exit(status[0])


if __name__ == "__main__":
    console()
