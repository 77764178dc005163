"""The vocabulary of the results table: which columns configure a trial, which are measured, and
what each measured column declares about itself (which way is better, how noisy it is, what
change ``aebench compare`` tolerates, which group of the report it is in and that group's place,
whether it compares only within one likelihood protocol).

Metrics declare their columns (``aebench.Column``); the core declares only its own (timings,
memory, the final training loss). The declarations of a run are saved beside its table as
``columns.json``, so that the report and ``aebench compare`` read a table's meaning from the table's
folder, without importing a plugin. Nothing here imports torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from typing import Literal

IDENTITY = ("dataset", "model", "regularizer")
PARAM_PREFIXES = ("dataset.", "model.", "regularizer.", "train.", "eval.")
# nan_reasons: why metrics gave NaN; metric_errors: metrics that raised or broke their contract;
# notes: measured values above their column's flag_above (estimator diagnostics, not training
# warnings); likelihood, binarize: the protocol a likelihood is of; threads: torch's, in the
# trial's process; start_digest: the weights its training started from (aebench.run.start);
# test_data: a digest of the test split it was measured on (aebench.run.data.digest_of_test_split);
# search_params: the parameter columns a [search] chose for it, comma-separated; stack_group:
# the trials it trained stacked with (aebench.run.stacked), one id for all, "" alone.
START_DIGEST = "start_digest"
TEST_DATA = "test_data"
SEARCH_PARAMS = "search_params"
STACK_GROUP = "stack_group"
BOOKKEEPING = frozenset(
    {
        "trial_id",
        "status",
        "reason",
        "warnings",
        "device",
        "eval_id",
        "nan_reasons",
        "metric_errors",
        "notes",
        "likelihood",
        "binarize",
        "threads",
        START_DIGEST,
        TEST_DATA,
        SEARCH_PARAMS,
        STACK_GROUP,
    }
)
CORE_KEYS = frozenset({*IDENTITY, "seed", *BOOKKEEPING})
COLUMN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # no dots: dotted names are configuration
COLUMNS_FILE = "columns.json"

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Column:
    """One measured column of the results table, and how to read it.

    - ``better``: ``"higher"``, ``"lower"``, or None when neither is better (a count, a spread).
    - ``floor``: for ``aebench compare``, the smallest worsening (in the column's unit) that
      counts as a quality regression (a change inside it never is). None: compare does not check
      this column.
    - ``noisy``: the value moves with the machine and its load (timings, memory): the report never
      marks a best value.
    - ``speed``: a throughput; compare flags a fall by more than ``--speed-tolerance`` (relative).
    - ``heavy_tailed``: its seeds have outliers (a sample-quality score, say): it is tested by rank
      tests (Mann–Whitney U; paired, Wilcoxon's signed-rank), and reports show its median over
      seeds with the distribution-free interval of a median (none below 6 seeds at 95%), not a
      mean.
    - ``unit`` and ``description``: shown in reports and axis labels.
    - ``flag_above``: values above it are not to be trusted (an estimator that has not converged,
      say); the report flags the rows that have them.
    - ``group``: the family of measurements it belongs to (a name of the metric's choosing; the
      core's own columns are in ``"speed"`` and ``"training"``); the report has a detail table per
      group.
    - ``group_order``: its group's place in the report: groups come in increasing ``group_order``
      (the smallest any of their columns declares), then those that declare none, as first seen,
      then the columns without a group. The core's groups declare 600 (speed) and 700 (training).
    - ``per_protocol``: its values compare only between trials of one likelihood protocol (their
      p(x|z) and binarization: a log-likelihood of binarized data is not one of grey levels): the
      report marks a best value per protocol, ranks by the column only where one protocol was
      measured, and shows each configuration's protocol in its group's table.
    - ``headline``: the column is its group's primary metric: the report's headline table and the
      MLflow charts show it (the first declared headline column of each group).
    - ``at_least``, ``at_most``: the values it can take (a time is at least 0, an accuracy
      between 0 and 1): an interval over seeds is cut there. A t interval of a few seeds can
      reach past them (a throughput's ``[-3608, 95970]``), and the true mean cannot: cut, it
      covers the mean exactly as often, and reads as what the column is.
    """

    name: str
    better: Better | None = None
    floor: float | None = None
    noisy: bool = False
    speed: bool = False
    heavy_tailed: bool = False
    unit: str = ""
    description: str = ""
    flag_above: float | None = None
    group: str = ""
    group_order: int | None = None
    per_protocol: bool = False
    headline: bool = False
    at_least: float | None = None
    at_most: float | None = None

    def __post_init__(self) -> None:
        if not COLUMN_NAME.match(self.name):
            raise ValueError(f"column name {self.name!r}: letters, digits and '_' only")
        if self.name in CORE_KEYS:
            raise ValueError(f"column name {self.name!r} is one of the core's own columns")
        if self.better not in (None, "higher", "lower"):
            raise ValueError(f"column {self.name!r}: better is 'higher', 'lower' or None")
        if (self.floor is not None or self.speed) and self.better is None:
            raise ValueError(f"column {self.name!r}: a floor or speed needs a better direction")
        if self.floor is not None and self.speed:
            raise ValueError(f"column {self.name!r}: compared either as quality or as speed")
        if self.floor is not None and not self.floor >= 0:
            raise ValueError(f"column {self.name!r}: the floor must be >= 0")
        if self.at_least is not None and self.at_most is not None:
            if not self.at_least < self.at_most:
                raise ValueError(f"column {self.name!r}: at_least must be below at_most")
        if self.group and not COLUMN_NAME.match(self.group):
            raise ValueError(f"column {self.name!r}: group {self.group!r}: letters, digits, '_'")
        if self.headline and not self.group:
            raise ValueError(f"column {self.name!r}: a headline column needs a group")
        if self.group_order is not None and not self.group:
            raise ValueError(f"column {self.name!r}: a group_order needs a group")

    @property
    def direction(self) -> int:
        """+1 when higher is better, -1 when lower is, 0 when neither."""
        return {"higher": 1, "lower": -1}.get(self.better or "", 0)

    @property
    def label(self) -> str:
        """The name with its unit: ``train_s [s]``."""
        return f"{self.name} [{self.unit}]" if self.unit else self.name


# The core's own measurements: every trial that trains has them, whatever its metrics. Their
# groups come after the metrics' in the report (a metric's group declares a smaller group_order).
# timings and memory, none of them below 0
_speed = partial(Column, noisy=True, group="speed", group_order=600, at_least=0.0)
_training = partial(Column, group="training", group_order=700)
_search = partial(Column, group="search", group_order=800)
CORE_COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        _speed("train_s", "lower", unit="s", description="training time"),
        _speed(
            "train_samples_per_s",
            "higher",
            speed=True,
            unit="samples/s",
            description="training throughput after the first epoch",
            headline=True,
        ),
        _speed(
            "peak_mem_mb",
            "lower",
            unit="MiB",
            description="peak memory allocated in training on a CUDA device (NaN elsewhere)",
        ),
        _speed("eval_s", "lower", unit="s", description="time spent in the metrics"),
        _training(
            "final_loss",
            description="mean training loss of the last epoch (each model's own objective)",
        ),
        _training("stopped_epoch", description="the last epoch trained"),
        _training("best_epoch", description="the epoch of the lowest validation loss"),
        _training(
            "best_val_loss", description="the lowest validation loss (the model's objective)"
        ),
        # A configuration tuned by a [search]: what its search cost and found (on validation).
        _search("search_trials", description="search trials its parameters were chosen from"),
        _search("search_budget_s", unit="s", description="seconds its search trials took"),
        _search("search_best_value", description="the search's best validation objective"),
    )
}


METRIC_TIME_PREFIX = "eval_s_"


def metric_time_column(metric_name: str) -> Column:
    """The column of one metric's wall time in a trial: ``eval_s_<metric>``, any character of the
    name other than a letter, digit or '_' made '_' (a dotted name would read as configuration).
    A core speed column, like ``eval_s`` (their sum): what each metric costs a comparison."""
    return _speed(
        METRIC_TIME_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", metric_name),
        "lower",
        unit="s",
        description=f"time spent in metric {metric_name!r}",
    )


def is_param_column(name: str) -> bool:
    """A column of the trial's configuration: plugin names, flattened params, the seed."""
    return name in IDENTITY or name == "seed" or name.startswith(PARAM_PREFIXES)


def is_config_column(name: str) -> bool:
    """A configuration column other than the seed: what configurations are matched on."""
    return is_param_column(name) and name != "seed"


def is_metric_column(name: str) -> bool:
    """A column of measured numbers (not configuration, not bookkeeping, not versions)."""
    return not (is_param_column(name) or name in BOOKKEEPING or name.startswith("version."))


@dataclass
class Vocabulary:
    """Every measured column a table may hold, as declared, and the planes metrics ask to plot."""

    columns: dict[str, Column] = field(default_factory=lambda: dict(CORE_COLUMNS))
    # Pairs of columns plotted against each other in the report, as (x, y).
    planes: list[tuple[str, str]] = field(default_factory=list)

    def add(self, columns: Iterable[Column], planes: Iterable[tuple[str, str]] = ()) -> None:
        for column in columns:
            self.columns[column.name] = column
        for plane in planes:
            if tuple(plane) not in self.planes:
                self.planes.append(tuple(plane))

    def get(self, name: str) -> Column:
        """The column's declaration; an undeclared column is one with nothing declared."""
        return self.columns.get(name) or Column(name)

    def headlines(self) -> dict[str, str]:
        """Group -> its headline column: the first one declared (core columns count first)."""
        out: dict[str, str] = {}
        for column in self.columns.values():
            if column.headline:
                out.setdefault(column.group, column.name)
        return out

    def group_places(self) -> dict[str, int]:
        """Group -> its place in the report: the smallest ``group_order`` its columns declare (a
        group whose columns declare none is not here)."""
        places: dict[str, int] = {}
        for column in self.columns.values():
            if column.group_order is not None:
                place = places.get(column.group, column.group_order)
                places[column.group] = min(place, column.group_order)
        return places

    def direction(self, name: str) -> int:
        return self.get(name).direction

    def merged(self, other: Vocabulary) -> Vocabulary:
        """This vocabulary with ``other``'s declarations added (``other`` wins on a clash)."""
        out = Vocabulary(dict(self.columns), list(self.planes))
        out.add(other.columns.values(), other.planes)
        return out

    def to_json(self) -> str:
        return json.dumps(
            {"columns": [asdict(c) for c in self.columns.values()], "planes": self.planes},
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, known: Mapping[str, Column] | None = None) -> Vocabulary:
        """The vocabulary ``to_json`` wrote. A file written before a field of ``Column`` existed
        lacks it: the column then takes the field from ``known``'s declaration of that column
        (default: the core's columns), else the field's default."""
        raw = json.loads(text)
        vocabulary = cls()
        declared = {name: asdict(column) for name, column in (known or CORE_COLUMNS).items()}
        vocabulary.add(
            (Column(**(declared.get(c["name"], {}) | c)) for c in raw.get("columns", [])),
            (tuple(p) for p in raw.get("planes", [])),
        )
        return vocabulary

    @staticmethod
    def is_outdated(text: str) -> bool:
        """Whether a saved vocabulary lacks a field that ``Column`` declares now."""
        names = {f.name for f in fields(Column)}
        return any(names - set(c) for c in json.loads(text).get("columns", []))


def declared(metrics: Mapping[str, object]) -> Vocabulary:
    """The vocabulary of the core and of ``metrics`` (name -> ``aebench.Metric``), with each
    metric's time column (``metric_time_column``)."""
    vocabulary = Vocabulary()
    for metric in metrics.values():
        vocabulary.add(metric.columns, metric.planes)  # type: ignore[attr-defined]
    vocabulary.add(metric_time_column(name) for name in metrics)
    return vocabulary
