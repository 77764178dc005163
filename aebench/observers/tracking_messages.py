"""What the run tells the MLflow worker (``RunStart``, ``TrialDone``, ``FolderDrawn``,
``RunEnd``) and what the worker answers once a run's end is logged (``Outcome``): plain data,
pickled through a pipe, importing neither mlflow nor torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aebench.run.observing import Row


@dataclass(frozen=True)
class RunStart:
    """A run begins: the store, the experiment, and the trials it is about to run (their runs
    come with them; the repair leaves them alone)."""

    uri: str
    experiment: str
    log_model: bool
    suite_name: str
    suite_path: str
    output: Path  # absolute: the worker may have been started by an earlier run, elsewhere
    trials: int
    pending: frozenset[str]
    started_ms: int
    cwd: str
    env: dict[str, str]  # the run's environment: a worker kept from an earlier run has its own
    limits: dict[str, float]  # ``tracking_store``'s bounds as the run reads them


@dataclass(frozen=True)
class TrialDone:
    """A finished trial, as its run records it."""

    row: Row
    curves: dict[str, list[float]]
    label: str  # names the trial in a failure's line
    started_ms: int
    finished_ms: int  # its run's end, and its metrics' time: not when the worker got to it
    traceback: str = ""
    weights: bytes | None = None  # ``log_model``: its state_dict as ``torch.save`` writes it
    folder: Path | None = None  # its figures drawn: logged with it; None: a ``FolderDrawn`` later


@dataclass(frozen=True)
class FolderDrawn:
    """A trial folder whose figures are drawn now: logged as its run's artifacts."""

    trial_id: str
    folder: Path


@dataclass(frozen=True)
class RunEnd:
    """The run ended: its counts, the invocation run's status; answered with ``Outcome``."""

    counts: dict[str, int]
    status: str  # FINISHED, FAILED or KILLED


@dataclass
class Outcome:
    """What the worker recorded of a run, for the tracker's attributes."""

    experiment_id: str = ""
    trial_run_ids: dict[str, str] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)  # trials given a run a killed run lacked
    killed: list[str] = field(default_factory=list)  # runs a killed run left RUNNING
    failed: bool = False
    connected: bool = False  # the store was opened, and every finished trial has its run
    log_batches: list[int] = field(default_factory=list)  # each log_batch call's entities
