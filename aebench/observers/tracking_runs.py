"""What a trial's MLflow run holds: its row's parameters, final metrics and tags, named as the
results table names them, in the experiment of its results folder.

Pure translation from a results row to MLflow's parameters, metrics and tags, with no call to a
store: the MLflow worker's ``tracking_recorder.Recorder`` logs what these functions give.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aebench.contract.columns import Vocabulary, is_metric_column, is_param_column
from aebench.results.rows import finite
from aebench.run.observing import Row
from aebench.views.ranking import headline_columns, leaderboard

if TYPE_CHECKING:  # not imported: the MLflow worker that uses this module imports no torch
    from aebench.run.suite import Suite

CURVE_PREFIX = "train/"  # per-epoch curves: train/loss, train/model_loss, train/penalty
AGGREGATE_PREFIX = "seeds/"  # the invocation run's means over seeds, with their intervals; after
# "headline/" in the UI's chart view, which shows its sections in name order
HEADLINE_PREFIX = "headline/"  # copies of the headline metrics: the UI charts them in one section
MAX_VALUE_LENGTH = 6000  # MLflow's limit on one parameter or tag value

# MLflow 3's UI opens an experiment on its GenAI pages unless the experiment's kind says model
# training (``tracking_ui`` links to the machine-learning pages for the same reason).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}

RUN_STATUS = {"ok": "FINISHED", "skipped": "FINISHED", "diverged": "FAILED", "failed": "FAILED"}


def git_commit(folder: Path | None = None) -> str | None:
    """The commit checked out in ``folder`` (default: here), or None outside a git repository."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def _text(value: Any) -> str:
    return str(value)[:MAX_VALUE_LENGTH]


def _shown(folder: Path) -> str:
    """A folder as the user would type it: relative to here when below here."""
    try:
        return folder.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return folder.as_posix()


def experiment_name(suite: Suite, output: Path, configured: str | None = None) -> str:
    """One experiment per results folder: ``[observers.mlflow] experiment`` if set, else the
    suite's name for its own folder (``quick`` for ``results/quick``), else the name and the folder
    (``quick (results/new)``), so that another output never mixes with the suite's baseline."""
    if configured:
        return configured
    folder = Path(output).resolve()
    if folder == suite.output_dir().resolve():
        return suite.name
    return f"{suite.name} ({_shown(folder)})"


def trial_params(row: Row) -> dict[str, str]:
    """The trial's flattened configuration, named as the results table's columns."""
    return {k: _text(v) for k, v in row.items() if is_param_column(k)}


def trial_metrics(row: Row) -> dict[str, float]:
    """The row's final metrics: finite numbers only (NaN is 'not measured', not a value)."""
    out = {}
    for key, value in row.items():
        if is_metric_column(key) and (number := finite(value)) is not None:
            out[key] = number
    return out


def headline_metrics(metrics: Mapping[str, float], headlines: Sequence[str]) -> dict[str, float]:
    """The row's headline metrics again, as ``headline/<column>``: the UI's chart view makes a
    section per prefix, so these form one section of one chart per group's primary metric."""
    return {HEADLINE_PREFIX + name: metrics[name] for name in headlines if name in metrics}


def trial_tags(row: Row, commit: str | None) -> dict[str, str]:
    tags = {
        "aebench.trial_id": row["trial_id"],
        "aebench.dataset": row["dataset"],
        "aebench.model": row["model"],
        "aebench.regularizer": row["regularizer"],
        "aebench.seed": row["seed"],
        "aebench.status": row["status"],
        "aebench.device": row.get("device", ""),
    }
    if row.get("reason"):
        tags["aebench.reason"] = row["reason"]
    for key, value in row.items():
        if key.startswith("version.") and value is not None:
            tags[f"aebench.{key}"] = value
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return {k: _text(v) for k, v in tags.items()}


def _name_part(text: str) -> str:
    """``text`` as one part of an MLflow metric name: its characters only (no ``/``, ``=``)."""
    return re.sub(r"[^\w.\- ]", "_", text.replace(" / ", " - ")).strip() or "_"


def aggregate_metrics(table: Any, vocabulary: Vocabulary) -> dict[str, float]:
    """The invocation run's aggregates: per dataset, configuration and headline column, the mean
    over seeds (the median, for a heavy-tailed column), its interval's bounds (where there is
    one: 3 seeds or more, 6 for a median) and n, as
    ``seeds/<dataset>/<configuration>/<column>.mean|median|low|high|n``."""
    out: dict[str, float] = {}
    for dataset in sorted(table["dataset"].dropna().unique()) if len(table) else []:
        board = leaderboard(table, str(dataset), vocabulary)
        if board is None:
            continue
        columns = headline_columns(board, vocabulary)
        for i in range(len(board.configs)):
            label = board.label(i)  # a configuration's label, once: it reads the table
            for column in columns:
                found = board.interval(i, column, vocabulary)
                if found.n == 0:  # never measured for it (a deterministic model's sample metric)
                    continue
                name = "/".join(_name_part(t) for t in (str(dataset), label, column))
                parts = {
                    found.statistic: found.centre,
                    "low": found.low,
                    "high": found.high,
                    "n": found.n,
                }
                out |= {
                    f"{AGGREGATE_PREFIX}{name}.{part}": float(value)
                    for part, value in parts.items()
                    if math.isfinite(value)
                }
    return out


def log_weights(client: Any, run_id: str, weights: bytes) -> None:
    """A ``state_dict``'s bytes (``torch.save``) as the run's ``model/state_dict.pt``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state_dict.pt"
        path.write_bytes(weights)
        client.log_artifact(run_id, str(path), artifact_path="model")


# MLflow's limits on one log_batch call.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000  # metrics, params and tags together


def batches(
    metrics: Sequence[Any], params: Sequence[Any], tags: Sequence[Any]
) -> Iterator[tuple[Sequence[Any], Sequence[Any], Sequence[Any]]]:
    """Metrics, params and tags packed into as few ``log_batch`` calls as MLflow's limits allow:
    one, for a trial's row and curves (each call is a store transaction, or an HTTP request)."""
    m = p = t = 0
    while m < len(metrics) or p < len(params) or t < len(tags):
        p_end = min(len(params), p + MAX_PARAMS_TAGS_PER_BATCH)
        t_end = min(len(tags), t + MAX_PARAMS_TAGS_PER_BATCH)
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - (p_end - p) - (t_end - t))
        m_end = min(len(metrics), m + room)
        yield metrics[m:m_end], params[p:p_end], tags[t:t_end]
        m, p, t = m_end, p_end, t_end
