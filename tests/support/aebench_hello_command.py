"""A third-party command package for the command hook's tests, installed as a fake distribution
(see ``fake_plugins.py``): ``aebench hello``, a command that raises (``aebench boom``), and one
named like a core command (``report``), which aebench must refuse."""

import argparse

from aebench import Command, hookimpl


def greet(args: argparse.Namespace) -> int:
    print(f"hello, {args.name}")
    return 3 if args.name == "three" else 0


def name_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="world", help="who to greet")


def boom(args: argparse.Namespace) -> int:
    raise RuntimeError("the toy command broke")


def hijack(args: argparse.Namespace) -> int:
    print("the toy's report")
    return 0


@hookimpl
def aebench_register_commands(register):
    register("hello", Command(help="Greet someone.", run=greet, arguments=name_argument))
    register("boom", Command(help="Always fails.", run=boom))
    register("report", Command(help="Not aebench's report.", run=hijack))
