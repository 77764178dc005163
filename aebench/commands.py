"""What each ``aebench`` command does, once ``aebench.cli`` has read its arguments.

A command returns its exit status; bad input raises ``UsageError``, whose message is the one line
the user sees. Heavy modules are imported inside the commands that need them, so that ``aebench
list`` and ``aebench --help`` stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from aebench.plugins.listing import Listing
from aebench.plugins.manager import KINDS, Plugins
from aebench.results.trials import TRIALS, folder_size

if TYPE_CHECKING:
    from aebench.contract.executor import Executor
    from aebench.run.observing import SuiteRun
    from aebench.run.suite import Suite
    from aebench.session import Session


class UsageError(Exception):
    """Bad input from the user; the message is the one line they see."""


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
    _print_load_errors(errors + listing.get("load_warnings", []))  # strict: the errors alone
    return failed


def _print_load_errors(errors: list[dict]) -> None:
    for error in errors:
        word = {"collision": "DROPPED", "deprecated": "DEPRECATED"}.get(error.get("problem", ""))
        print(f"{word or 'FAILED'} {error['plugin']} [{error['distribution']}]: {error['error']}")


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
    if listing.get("load_warnings"):
        print("plugins registered the deprecated way:")
        _print_load_errors(listing["load_warnings"])
    return 0


def cmd_run(plugins: Plugins, args: argparse.Namespace) -> int:
    from aebench.results.files import FolderError
    from aebench.run.suite import SuiteError
    from aebench.session import Session

    for problem in plugins.problems:  # every run says what the installed plugins lack
        print(f"aebench: warning: {problem.message}", file=sys.stderr)
    if getattr(args, "strict", False) and plugins.problems:
        n = len(plugins.problems)
        raise UsageError(f"--strict: {n} plugin problem{'s' * (n != 1)} (warned above)")
    try:
        session = Session.open(
            args.suite,
            plugins=plugins,
            output=args.output,
            device=args.device,
            threads=args.threads,
            executor=_executor(plugins, args),
        )
        if args.dry_run:
            return dry_run(session, args.rerun)
        table = session.check_folder(args.rerun)  # before anything loads
        work = session.plan(table, args.rerun)
        if len(work) or session.suite.spec.search is not None:  # no data for a run with no work
            session.load_data()
    except (SuiteError, FolderError) as exc:
        raise UsageError(str(exc)) from None
    to_train = {t.id for t in work.train}
    declined = session.declined() if to_train else {}  # a model declining data: data loaded
    reasons = {t: r for t, r in declined.items() if t in to_train}
    skipped = announce_declined(session.suite, reasons)

    from aebench.results.log_file import log_to
    from aebench.run.executors import ExecutorError
    from aebench.views.progress import SuiteProgress

    try:
        session.start_observers()  # MLflow, figures, report, third parties'
    except SuiteError as exc:
        raise UsageError(str(exc)) from None
    try:
        log_to(session.output / "aebench.log")  # failed trials' tracebacks
    except FolderError as exc:
        raise UsageError(str(exc)) from None
    try:
        run = session.run(rerun=args.rerun, observers=[SuiteProgress(announced=skipped)])
    except (ExecutorError, FolderError) as exc:  # no scheduler there; a full disk; a busy folder
        raise UsageError(str(exc)) from None
    _summarise(session, run)
    unreported = _report_missing(session)  # said after the summary: the table is safe by now
    return 1 if run.counts.get("failed") or unreported else 0


def _report_missing(session: Session) -> bool:
    """Whether the report observer ran and wrote no report (its error is on stderr already): the
    run then ends non-zero, for a script or CI to see, although its results are all saved."""
    from aebench.views.report import ReportBuilder

    reports = [one for one in session.observers if isinstance(one, ReportBuilder)]
    if not any(report.paths is None for report in reports):
        return False
    print(
        f"aebench: no report was written; the results are saved, and `aebench report"
        f" {session.output}` writes it",
        file=sys.stderr,
    )
    return True


@contextlib.contextmanager
def _holding(folder: Path) -> Iterator[None]:
    """The results folder's lock for a whole command (``report``, ``evaluate``), from its first
    read to its last write: no run writes there meanwhile, and none starts.

    Only a folder that a run has held has its lock file (it stays, ``aebench.results.lock``): one
    without it is no run's (a missing folder, a hand-made one) and none is made there, so that a
    command refused for bad input writes nothing."""
    from aebench.results.files import FolderError
    from aebench.results.lock import LOCK_FILE, check_output, folder_lock

    with contextlib.ExitStack() as stack:
        if os.path.lexists(Path(folder) / LOCK_FILE):
            try:
                check_output(Path(folder))  # read-only, or in use: before anything is written
                stack.enter_context(folder_lock(Path(folder)))
            except FolderError as exc:
                raise UsageError(str(exc)) from None
        yield


def _summarise(session: Session, run: SuiteRun) -> None:
    """What the run did, the best configurations, and where everything is."""
    from aebench.results.rows import label
    from aebench.run.measure import costliest_metrics
    from aebench.views.report import ReportBuilder, sharing_leaderboards
    from aebench.views.standing import standing

    output = session.output
    if run.already_done:
        print(f"{run.already_done} trials were already finished in {output} (--rerun repeats them)")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(run.counts.items()))
    print(f"{len(run.rows)} trials run ({counts or 'nothing left to run'}); results in {output}")
    if run.evaluated:
        print(f"{run.evaluated} of them measured again from their kept models, without training")
    with sharing_leaderboards(session.observers):  # the report's, not ranked a second time
        now = standing(output)  # kept from the last run where the results are the same
    for dataset, best in now.best.items():
        print(f"top on {dataset}: {best}")  # the text says whether tests make it best
    for metric, seconds in costliest_metrics(run.rows):  # where measuring cost more than training
        print(f"aebench: metric {metric!r} took {seconds:.1f} s of the evaluation", file=sys.stderr)
    if now.reproduction:  # the suite's [[references]]
        print(now.reproduction)
    warned = [row for row in run.rows if row.get("warnings")]
    if warned:
        print(f"{len(warned)} trials trained with warnings:")
        for row in warned:
            print(f"  {label(row, ['seed'])}: {row['warnings']}")
    trials = output / TRIALS
    if trials.is_dir():
        print(f"trial folders: {folder_size(trials) / 2**20:.1f} MB in {trials}")
    for observer in session.observers:
        if isinstance(observer, ReportBuilder) and observer.paths:
            print(f"report: {observer.paths[1]}")


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


def dry_run(session: Session, rerun: bool) -> int:
    """Each trial with what ``aebench run`` would do with it, given what its folder holds."""
    from aebench.results.table import read_results

    suite, folder = session.suite, session.output
    work = session.plan(read_results(folder, replace_unusable=rerun), rerun)
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


def _executor(plugins: Plugins, args: argparse.Namespace) -> Executor:
    """The registered executor ``--executor`` names, built from ``--executor-set KEY=VALUE``
    (each value read as TOML, else as text), ``--workers`` and ``--scheduler``."""
    from aebench.run.executors import ExecutorError, make_executor

    params: dict[str, object] = {}
    for text in args.executor_set:
        key, sep, value = text.partition("=")
        if not (sep and key.strip()):
            raise UsageError(f"--executor-set {text}: expected KEY=VALUE")
        try:
            params[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            params[key.strip()] = value.strip()  # a bare word: text
    for option in ("workers", "scheduler"):
        if getattr(args, option) is not None:
            params[option] = getattr(args, option)
    try:
        return make_executor(plugins, args.executor, params)
    except ExecutorError as exc:
        raise UsageError(str(exc)) from None


def cmd_report(folder: Path) -> int:
    from aebench.results.files import FolderError
    from aebench.results.trials import TrialFileError
    from aebench.views.report import build_report

    if folder.exists() and not folder.is_dir():  # else its journal "is not a directory"
        raise UsageError(f"{folder}: a file, not a results folder")
    try:
        with _holding(folder):
            md, page = build_report(folder)
    except (FileNotFoundError, FolderError, TrialFileError) as exc:  # no table, a damaged one,
        raise UsageError(str(exc)) from None  # a trial id that is a path, a full disk
    print(f"report: {page} and {md}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from aebench.views.compare import compare, parse_kinds
    from aebench.views.compare_matching import settings_apart
    from aebench.views.compare_tables import (
        CompareError,
        load_table,
        table_references,
        table_vocabulary,
    )
    from aebench.views.compare_text import format_comparison

    if not args.speed_tolerance >= 0:
        raise UsageError("--speed-tolerance must be a number >= 0")
    if not 0.5 < args.confidence < 1:
        raise UsageError(f"--confidence {args.confidence}: must be between 0.5 and 1 (exclusive)")
    for option in ("quality_tolerance", "unstable_spread"):  # the rules before verdicts by test
        if getattr(args, option) is not None:
            flag = f"--{option.replace('_', '-')}"
            print(f"aebench compare: {flag} is deprecated and ignored", file=sys.stderr)
    try:
        fail_on = parse_kinds(args.fail_on)
        new, baseline = load_table(args.new), load_table(args.baseline)
        # What each column means is declared beside each table; the new table's declarations win.
        vocabulary = table_vocabulary(args.baseline).merged(table_vocabulary(args.new))
        comparison = compare(
            new,
            baseline,
            speed_tolerance=args.speed_tolerance,
            confidence=args.confidence,
            vocabulary=vocabulary,
            references=table_references(args.new),
        )
    except CompareError as exc:
        raise UsageError(str(exc)) from None
    if comparison.rows.empty:
        apart = ", ".join(settings_apart(new, baseline)) or "their settings"
        raise UsageError(f"{args.new}: no configuration matches one of {args.baseline} ({apart})")
    print(format_comparison(comparison, show_all=args.all))
    return 1 if len(comparison.regressions(fail_on)) else 0


def cmd_evaluate(plugins: Plugins, args: argparse.Namespace) -> int:
    if args.checkpoint:  # reads a running trial's checkpoint: writes nothing, takes no lock
        return _evaluate_checkpoint(plugins, args)
    with _holding(args.folder):  # from reading the table to writing its new rows
        return _evaluate(plugins, args)


def _metric_names(args: argparse.Namespace) -> list[str] | None:
    """``--metrics a,b``: the names; a usage error where it names none (an empty list would
    measure nothing and leave every metric's columns NaN)."""
    if args.metrics is None:
        return None
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if not names:
        raise UsageError(f"--metrics {args.metrics!r}: names no metric")
    return names


def _evaluate_checkpoint(plugins: Plugins, args: argparse.Namespace) -> int:
    """``aebench evaluate --checkpoint``: one trial's last checkpoint, its columns printed."""
    from aebench.measure_checkpoint import measure_checkpoint
    from aebench.results.trials import TrialFileError
    from aebench.run.kept import KeptTrialError

    if not args.trial or len(args.trial) != 1:
        raise UsageError("--checkpoint measures one trial: name it with --trial ID")
    try:
        measured = measure_checkpoint(
            args.folder,
            args.trial[0],
            metrics=_metric_names(args),
            sets=args.set,
            plugins=plugins,
            device=args.device,
        )
    except (KeptTrialError, TrialFileError) as exc:
        raise UsageError(str(exc)) from None
    print("\n".join(measured.lines(plugins)))
    return 1 if measured.row.get("metric_errors") else 0


def _evaluate(plugins: Plugins, args: argparse.Namespace) -> int:
    from aebench.measure_again import evaluate
    from aebench.results.trials import WEIGHTS, TrialFileError
    from aebench.run.kept import KeptTrialError
    from aebench.run.suite import SuiteError
    from aebench.views.progress import SuiteProgress

    metrics = _metric_names(args)
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
    except (KeptTrialError, TrialFileError, SuiteError) as exc:  # a trial id that is a path
        raise UsageError(str(exc)) from None
    counts = ", ".join(f"{n} {status}" for status, n in sorted(run.counts.items()))
    print(f"{len(run.rows)} kept trials measured again ({counts}); results in {args.folder}")
    if run.already_done:
        print(
            f"{run.already_done} kept trials left as they were: {', '.join(metrics or [])}"
            " cannot measure them"
        )
    if lacking := run.without_model:
        n = "1 trained trial" if len(lacking) == 1 else f"{len(lacking)} trained trials"
        print(f"{n} left as recorded, no model kept ({WEIGHTS} missing): {', '.join(lacking)}")
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
