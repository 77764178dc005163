"""The ``aebench`` command: run | plugins | list | report | ui | compare.

Bad input ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aebench.plugins.listing import Listing, load_listing
from aebench.plugins.manager import KINDS, Plugins, load_plugins
from aebench.results.trials import TRIALS, folder_size
from aebench.run import stopping

if TYPE_CHECKING:
    from aebench.run.executors import Executor
    from aebench.run.suite import Suite

USAGE_ERROR = 2


class UsageError(Exception):
    """Bad input from the user; the message is the one line they see."""


def _threads(text: str) -> int | str:
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: a number of threads (1 or more) or auto")


def _parser() -> argparse.ArgumentParser:
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
        "--executor",
        choices=["local", "dask"],
        default="local",
        help="local: trials here, one after another (default); dask: on a Dask cluster",
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
        "list", help="registered models, regularizers, datasets, metrics and observers"
    )
    listing.add_argument("kind", nargs="?", choices=list(KINDS), help="one kind only")
    listing.add_argument("--json", action="store_true")

    report = commands.add_parser(
        "report", help="build report.md and report.html of a results folder"
    )
    report.add_argument("folder", type=Path, help="a results folder (holding results.parquet)")

    ui = commands.add_parser("ui", help="the MLflow UI on the store aebench wrote (127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="default: 5000")
    ui.add_argument(
        "--output",
        type=Path,
        default=Path("results"),
        help="folder of mlflow.db (default: results)",
    )

    compare = commands.add_parser(
        "compare", help="what regressed between two results tables (exit 1 when anything did)"
    )
    compare.add_argument("new", type=Path, help="results.parquet, or the folder holding it")
    compare.add_argument("baseline", type=Path, help="results.parquet, or the folder holding it")
    compare.add_argument(
        "--fail-on",
        default="quality,speed",
        help="what fails: quality, speed, reproduction (NEW outside a published value its suite"
        " names in [[references]]), joined by commas; both (quality,speed: the default), all"
        " or none",
    )
    compare.add_argument(
        "--quality-tolerance",
        type=float,
        default=2.0,
        help="allowed worsening in baseline stds over seeds, at least a floor (default 2)",
    )
    compare.add_argument(
        "--speed-tolerance",
        type=float,
        default=0.2,
        help="allowed relative slowdown of speed columns, or k baseline stds if larger"
        " (default 0.2)",
    )
    compare.add_argument(
        "--unstable-spread",
        type=float,
        default=10.0,
        help="a quality column whose seed std exceeds this many of its floors is 'unstable',"
        " which fails like a regression (default 10)",
    )
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
    return parser


def cmd_plugins(listing: Listing, as_json: bool, strict: bool = False) -> int:
    rows, errors = listing["plugins"], listing["load_errors"]
    failed = 1 if strict and errors else 0
    if as_json:
        print(json.dumps({"plugins": rows, "errors": errors}, indent=2))
        return failed
    for row in rows:
        where = (
            f"{row['distribution']} {row['version']}" if row["distribution"] else "(not installed)"
        )
        print(f"{row['plugin']}  [{where}]")
        for kind, names in row["registers"].items():
            print(f"  {kind}: {', '.join(names)}")
    _print_load_errors(errors)
    return failed


def _print_load_errors(errors: list[dict]) -> None:
    for error in errors:
        print(f"FAILED {error['plugin']} [{error['distribution']}]: {error['error']}")


def cmd_list(listing: Listing, kind: str | None, as_json: bool) -> int:
    kinds = [kind] if kind else list(KINDS)
    shown: dict[str, list[dict]] = {k: listing["kinds"][k] for k in kinds}
    if as_json:
        print(json.dumps(shown | {"load_errors": listing["load_errors"]}, indent=2))
        return 0
    for k, entries in shown.items():
        print(f"{k}:")
        for entry in entries:
            print(f"  {entry['name']:<16} {entry['description']}")
            for p in entry["params"]:
                default = "required" if p["required"] else repr(p["default"])
                print(f"      {p['name']}: {p['type']} = {default}")
            if "columns" in entry:
                arrows = {"higher": " ↑", "lower": " ↓", None: ""}
                shown_columns = [c["name"] + arrows[c["better"]] for c in entry["columns"]]
                print(f"      columns: {', '.join(shown_columns)}")
                if entry["requires"]:
                    print(f"      needs: {', '.join(entry['requires'])}")
    if listing["load_errors"]:
        print("plugins that failed to load (what they provide is missing above):")
        _print_load_errors(listing["load_errors"])
    return 0


def cmd_run(plugins: Plugins, args: argparse.Namespace) -> int:
    from aebench.results.files import FolderError
    from aebench.results.lock import check_output
    from aebench.results.table import check_owner, read_results
    from aebench.run.loop import run_trials
    from aebench.run.plan import declined, load_datasets, plan
    from aebench.run.suite import SuiteError, load_suite
    from aebench.run.trial import resolve_device

    executor = _executor(args)
    try:
        suite = load_suite(args.suite, plugins)
        if args.threads is not None:
            suite.spec.suite = suite.spec.suite.model_copy(update={"threads": args.threads})
        if args.dry_run:
            return dry_run(suite, args.output, args.rerun)
        output = suite.output_dir(args.output)
        check_output(output)  # writable, and no other run in it: said before anything loads
        check_owner(output, suite.name)
        table = read_results(output, replace_unusable=args.rerun)
        device = resolve_device(args.device or suite.spec.suite.device)
        cache = load_datasets(suite, plugins, device)
    except (SuiteError, FolderError) as exc:
        raise UsageError(str(exc)) from None
    to_train = {t.id for t in plan(suite, table, output, args.rerun).train}
    reasons = declined(suite, plugins, cache, device)
    skipped = announce_declined(suite, {t: r for t, r in reasons.items() if t in to_train})

    from aebench.run.executors import ExecutorError
    from aebench.run.loop import build_observers
    from aebench.views.progress import SuiteProgress
    from aebench.views.report import ReportBuilder
    from aebench.views.reproduction import summary as reproduction_summary

    try:
        observers = build_observers(suite, plugins)  # MLflow, figures, report, third parties'
    except SuiteError as exc:
        raise UsageError(str(exc)) from None
    _log_to(output / "aebench.log")
    try:
        run = run_trials(
            suite,
            plugins,
            output=output,
            device=str(device),
            observers=[SuiteProgress(announced=skipped), *observers],
            rerun=args.rerun,
            cache=cache,
            executor=executor,
        )
    except (ExecutorError, FolderError) as exc:  # no scheduler there; a full disk; a busy folder
        raise UsageError(str(exc)) from None
    if run.already_done:
        print(f"{run.already_done} trials were already finished in {output} (--rerun repeats them)")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(run.counts.items()))
    print(f"{len(run.rows)} trials run ({counts or 'nothing left to run'}); results in {output}")
    if run.evaluated:
        print(f"{run.evaluated} of them measured again from their kept models, without training")
    for dataset, best in best_configurations(output).items():
        print(f"best on {dataset}: {best}")
    if reproduced := reproduction_summary(output):  # the suite's [[references]]
        print(reproduced)
    warned = [row for row in run.rows if row.get("warnings")]
    if warned:
        print(f"{len(warned)} trials trained with warnings:")
        for row in warned:
            label = f"{row['dataset']}/{row['model']}/{row['regularizer']} seed={row['seed']}"
            print(f"  {label}: {row['warnings']}")
    trials = output / TRIALS
    if trials.is_dir():
        print(f"trial folders: {folder_size(trials) / 2**20:.1f} MB in {trials}")
    for observer in observers:
        if isinstance(observer, ReportBuilder) and observer.paths:
            print(f"report: {observer.paths[1]}")
    return 1 if run.counts.get("failed") else 0


SHOWN_CONFIGURATIONS = 4  # per reason, before "and N more"


def announce_declined(suite: Suite, reasons: dict[str, str]) -> set[str]:
    """One line per reason, before the run: how many trials it skips and the configurations
    (seeds share them) it skips them in; returns the reasons announced."""
    by_reason: dict[str, dict[str, int]] = {}  # reason -> configuration -> its trials
    for trial in suite.trials:
        if trial.id in reasons:
            where = f"{trial.model.source}, {trial.regularizer.source}"
            label = f"{trial.dataset.plugin}/{trial.model.plugin}/{trial.regularizer.plugin}"
            configurations = by_reason.setdefault(reasons[trial.id], {})
            key = f"{label} ({where})"
            configurations[key] = configurations.get(key, 0) + 1
    for reason, configurations in by_reason.items():
        n = sum(configurations.values())
        shown = list(configurations)[:SHOWN_CONFIGURATIONS]
        more = len(configurations) - len(shown)
        listed = ", ".join(shown) + (f" and {more} more" if more else "")
        trials = "trial" if n == 1 else "trials"
        print(f"aebench: {n} {trials} will be skipped: {reason}: {listed}", file=sys.stderr)
    return set(reasons.values())


def dry_run(suite: Suite, output: Path | None, rerun: bool) -> int:
    """Each trial with what ``aebench run`` would do with it, given what its folder holds."""
    from aebench.results.table import read_results
    from aebench.run.plan import plan

    folder = suite.output_dir(output)
    work = plan(suite, read_results(folder, replace_unusable=rerun), folder, rerun)
    pending = {t.id for t in work.train}
    again = {t.id for t, _ in work.evaluate}
    counts = (
        f"{len(pending)} to train, {len(again)} to measure again from their kept models,"
        f" {len(suite.trials) - len(work)} done"
    )
    print(f"{len(suite.trials)} trials in suite {suite.name!r} ({counts}; results in {folder}):")
    for trial in suite.trials:
        state = "pending" if trial.id in pending else "measure" if trial.id in again else "done"
        params = {**trial.model.params, **trial.regularizer.params}
        print(f"  {state:<8} {trial.id}  {trial.label()}  {json.dumps(params, default=str)}")
    return 0


def best_configurations(output: Path) -> dict[str, str]:
    """Per dataset, the best configuration in the results folder, as the report ranks them."""
    from aebench.plugins.listing import vocabulary_of
    from aebench.results.table import read_results
    from aebench.views.report import best_configurations

    table = read_results(output)
    return best_configurations(table, vocabulary_of(output)) if not table.empty else {}


def _executor(args: argparse.Namespace) -> Executor | None:
    """The executor the flags name; None for the local one."""
    from aebench.run.executors import DaskExecutor, ExecutorError

    if args.executor == "local":
        if args.workers is not None or args.scheduler is not None:
            raise UsageError("--workers and --scheduler need --executor dask")
        return None
    try:
        if args.workers is None and args.scheduler is None:
            return DaskExecutor(workers=os.cpu_count() or 1)
        return DaskExecutor(workers=args.workers, scheduler=args.scheduler)
    except ExecutorError as exc:
        raise UsageError(str(exc)) from None


def cmd_report(folder: Path) -> int:
    from aebench.results.files import FolderError
    from aebench.results.trials import TrialFileError
    from aebench.views.report import build_report

    try:
        md, page = build_report(folder)
    except (FileNotFoundError, FolderError, TrialFileError) as exc:  # no table, a damaged one,
        raise UsageError(str(exc)) from None  # a trial id that is a path, a full disk
    print(f"report: {page} and {md}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from aebench.views.compare import (
        CompareError,
        compare,
        format_comparison,
        load_table,
        parse_kinds,
        table_references,
        table_vocabulary,
    )

    for option in ("quality_tolerance", "speed_tolerance", "unstable_spread"):
        if not getattr(args, option) >= 0:
            raise UsageError(f"--{option.replace('_', '-')} must be a number >= 0")
    try:
        fail_on = parse_kinds(args.fail_on)
        new, baseline = load_table(args.new), load_table(args.baseline)
    except CompareError as exc:
        raise UsageError(str(exc)) from None
    # What each column means is declared beside each table; the new table's declarations win.
    vocabulary = table_vocabulary(args.baseline).merged(table_vocabulary(args.new))
    comparison = compare(
        new,
        baseline,
        quality_k=args.quality_tolerance,
        speed_tolerance=args.speed_tolerance,
        unstable_spread=args.unstable_spread,
        vocabulary=vocabulary,
        references=table_references(args.new),
    )
    if comparison.rows.empty:
        raise UsageError(f"{args.new}: no configuration matches one of {args.baseline}")
    print(format_comparison(comparison, show_all=args.all))
    return 1 if len(comparison.regressions(fail_on)) else 0


def cmd_evaluate(plugins: Plugins, args: argparse.Namespace) -> int:
    from aebench.run.kept import KeptTrialError, evaluate
    from aebench.views.progress import SuiteProgress

    metrics = None
    if args.metrics is not None:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    try:
        run = evaluate(
            args.folder,
            metrics=metrics,
            sets=args.set,
            trial_ids=args.trial,
            plugins=plugins,
            device=args.device,
            observers=[SuiteProgress()],
        )
    except KeptTrialError as exc:
        raise UsageError(str(exc)) from None
    counts = ", ".join(f"{n} {status}" for status, n in sorted(run.counts.items()))
    print(f"{len(run.rows)} kept trials measured again ({counts}); results in {args.folder}")
    if run.already_done:
        print(
            f"{run.already_done} kept trials left as they were: {', '.join(metrics or [])}"
            " cannot measure them"
        )
    return 1 if run.counts.get("failed") else 0


def cmd_images(plugins: Plugins, args: argparse.Namespace) -> int:
    """``aebench sample`` and ``aebench reconstruct``: a PNG of a kept trial's images."""
    import torch

    from aebench.observers.trial_figures import draw_images
    from aebench.run.kept import KeptTrialError, load_trial

    if args.n < 1:
        raise UsageError(f"-n {args.n}: at least one image")
    try:
        kept = load_trial(args.folder, args.trial, plugins=plugins)
    except KeptTrialError as exc:
        raise UsageError(str(exc)) from None
    shape = kept.data.info.shape
    where = f"{args.folder}: trial {args.trial}"
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise UsageError(f"{where}: its data are not images (one sample is {shape})")
    model = kept.model
    with torch.no_grad():
        if args.command == "sample":
            if not callable(getattr(model, "prior", None)):
                raise UsageError(f"{where}: model {kept.trial.model.plugin!r} has no prior")
            with torch.random.fork_rng():
                torch.manual_seed(args.seed)
                z = model.prior().sample((args.n,))
            rows = [("samples from p(z)", model.decode(z))]
        else:
            x = kept.data.test.x[: args.n]
            rows = [("input", x), ("reconstruction", model.decode(model.encode(x)))]
    title = f"{kept.trial.label()} ({args.trial})"
    try:
        draw_images(args.out, [(name, b.float().cpu().numpy()) for name, b in rows], title)
    except OSError as exc:
        raise UsageError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    print(f"{args.command}: {args.out}")
    return 0


def cmd_ui(port: int, output: Path) -> int:
    from aebench.observers.tracking import TrackingError, serve_ui

    try:
        return serve_ui(output / "mlflow.db", port)
    except TrackingError as exc:
        raise UsageError(str(exc)) from None


def _log_to(path: Path) -> None:
    """Failed trials' tracebacks go to a log file beside the results (never through a link
    planted there)."""
    from aebench.results.files import CLOEXEC, NOFOLLOW, cannot_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
    except OSError as exc:
        raise UsageError(str(cannot_write(path, exc))) from None
    handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("aebench").addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM and Ctrl-C: a flag while trials run, acted on between steps (aebench.stopping).
    stopping.install()
    try:
        # Only the commands that use plugins load them: report, ui and compare read files.
        if args.command == "plugins":  # both from the saved listing while nothing changed
            return cmd_plugins(load_listing(), args.json, args.strict)
        if args.command == "list":
            return cmd_list(load_listing(), args.kind, args.json)
        if args.command == "report":
            return cmd_report(args.folder)
        if args.command == "ui":
            return cmd_ui(args.port, args.output)
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


if __name__ == "__main__":
    sys.exit(main())
