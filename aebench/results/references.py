"""Published numbers beside ours: a suite's ``[[references]]`` and the reproduction they check.

A reference names one published value: where it is published (``paper``, ``table``), the results
column it is a value of (``metric``), in that column's unit and sign (a test NLL of 86.76 nats is a
log-likelihood of -86.76: ``value = -86.76``, and ``note`` says so), how far ours may be from it
(``tolerance``, in the column's unit), and the configuration it applies to (``where``: results
columns and their values, ``{ model = "iwae", "model.k" = 50 }``). ``check = "within"`` (the
default) asks for ours within the tolerance on either side; ``"not-worse"`` only that ours is not
worse by more than it, in the column's declared better direction.

Ours is a mean over seeds, and whether it reproduces is a test, not a reading of that mean: the
verdict is ``inside`` where its interval (Student's t over the seeds, 95% unless asked) lies
wholly within what the check allows, ``outside`` where a t-test shows it beyond, and
``inconclusive`` otherwise or where fewer than 3 seeds give no interval. ``inside`` is then
wrong no more often than the interval misses the true mean (5% at 95%), and "every value
reproduced" no more often either (each must pass on its own). ``outside`` is a discovery, and a
suite names several values: a paper's table, where any one outside fails the reproduction. Each
one alone was as good as outside at 5% when its interval lay wholly beyond, and six values all
on their tolerance's edge then failed 14% of the time, so the ``outside`` tests of a folder's
values are corrected together by Holm's method (``verdicts``): any of them wrong at most 5%.
A heavy-tailed column (a sample-quality score, say) is read as its cells show it: ours is the
median over seeds with its distribution-free interval (none below 6 seeds at 95%), and
``outside`` a sign test, for the t interval of such a column's mean covered it 68% of the time at
a stated 95%.

A reference may also say how long the published model trained (``epochs``): a configuration trained
for fewer is a shortened run, and the report says so; and which per-epoch curve tracks the metric
(``curve``, times ``scale``), so that a shortened run's learning curve is shown against the value.

The references travel with the results, in the folder's ``suite.json`` (the suite last run there):
the report and ``aebench compare`` read them without the suite file. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aebench.contract.columns import Column, Vocabulary, is_config_column
from aebench.results.rows import canonical, flatten, label
from aebench.results.stats import (
    DEFAULT_CONFIDENCE,
    MIN_SEEDS,
    Interval,
    holm,
    interval,
)
from aebench.results.table import SUITE_FILE

Scalar = str | int | float | bool
Check = Literal["within", "not-worse"]
Verdict = Literal["inside", "outside", "inconclusive"]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class CurveSection(BaseModel):
    """The per-epoch curve (``curves.json``) that tracks the metric: ``scale * curve`` is in the
    metric's unit and sign (``val_loss`` is a loss, -1 times a bound on log p(x))."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(min_length=1)]
    scale: Finite = 1.0


class Reference(BaseModel):
    """One published value and the configuration of ours it is compared with."""

    model_config = ConfigDict(extra="forbid", strict=True)
    paper: Annotated[str, Field(min_length=1)]
    table: str = ""  # where in the paper: "Table 1"
    metric: Annotated[str, Field(min_length=1)]  # a results column
    value: Finite  # in the column's unit and sign
    tolerance: Annotated[float, Field(gt=0, allow_inf_nan=False)]  # in the column's unit
    check: Check = "within"
    where: Annotated[dict[str, Scalar | list[Scalar]], Field(min_length=1)]
    note: str = ""  # how the published number maps onto the column
    epochs: Annotated[int, Field(ge=1)] | None = None  # how long the published model trained
    curve: CurveSection | None = None

    def label(self) -> str:
        """``Burda et al. 2015, Table 1``."""
        return f"{self.paper}, {self.table}" if self.table else self.paper


# --- matching -----------------------------------------------------------------------------------


def matches(row: Mapping[str, object], where: Mapping[str, object]) -> bool:
    """Whether a row (or a trial's columns) has every value ``where`` names."""
    return all(key in row and canonical(row[key]) == canonical(v) for key, v in where.items())


def trial_columns(config: Mapping[str, Any]) -> dict[str, object]:
    """The configuration columns a trial's row will have (``Trial.config()`` flattened, as the
    runner writes them)."""
    columns: dict[str, object] = {
        key: config[key]["plugin"] for key in ("dataset", "model", "regularizer")
    }
    for key in ("dataset", "model", "regularizer"):
        columns |= flatten(key, config[key]["params"])
    columns |= flatten("train", config["train"])
    columns |= flatten("eval", {"metrics": config["eval"]["metrics"]})
    for metric, params in config["eval"]["params"].items():
        columns |= flatten(f"eval.{metric}", params)
    return columns


def _configuration(columns: Mapping[str, object]) -> str:
    return json.dumps({k: canonical(v) for k, v in sorted(columns.items())}, default=str)


def _impossible(reference: Reference, vocabulary: Vocabulary) -> str | None:
    """Why no value of the column could be within the reference's tolerance (a percent for a
    share, a sign flipped), or None."""
    column = vocabulary.get(reference.metric)
    low, high = reference.value - reference.tolerance, reference.value + reference.tolerance
    below = column.at_least is not None and high < column.at_least
    above = column.at_most is not None and low > column.at_most
    if not (below or above):
        return None
    bounds = f"[{column.at_least if column.at_least is not None else '-inf'}, "
    bounds += f"{column.at_most if column.at_most is not None else 'inf'}]"
    return (
        f"{reference.value:g} ± {reference.tolerance:g} lies outside what {reference.metric!r}"
        f" can take, {bounds}: give it in the column's unit and sign"
    )


def check_references(
    references: Sequence[Reference],
    trials: Sequence[Mapping[str, Any]],
    vocabulary: Vocabulary,
    problem: Callable[[str, str], None],
) -> None:
    """What a reference's fields cannot check alone, against the suite's ``trials`` (their
    ``config()``) and the columns its metrics declare: each mistake to ``problem(place, what)``."""
    columns = [trial_columns(t) for t in trials]
    for i, reference in enumerate(references):
        place = f"references[{i}]"
        if reference.metric not in vocabulary.columns:
            known = ", ".join(sorted(vocabulary.columns))
            problem(f"{place}.metric", f"{reference.metric!r} is no column of this suite ({known})")
        elif reference.check == "not-worse" and vocabulary.direction(reference.metric) == 0:
            problem(f"{place}.check", f"{reference.metric!r} declares no better direction")
        if reference.metric in vocabulary.columns and (why := _impossible(reference, vocabulary)):
            problem(f"{place}.value", why)
        bad_keys = [key for key in reference.where if not is_config_column(key)]
        for key in bad_keys:
            problem(
                f"{place}.where.{key}",
                "not a configuration column (dataset, model, regularizer or a dataset., model.,"
                " regularizer., train. or eval. parameter)",
            )
        if bad_keys:
            continue
        found = {_configuration(c) for c in columns if matches(c, reference.where)}
        if not found:
            wanted = ", ".join(f"{k} = {json.dumps(v)}" for k, v in reference.where.items())
            problem(f"{place}.where", f"no trial of this suite has {wanted}")
        elif len(found) > 1:
            problem(
                f"{place}.where",
                f"matches {len(found)} configurations; name the parameters that tell them apart",
            )


class ReferencesError(ValueError):
    """References saved with a folder that cannot be read; ``str(error)`` is the one line."""


def read_references(folder: Path) -> list[Reference]:
    """The references saved with a results folder (its ``suite.json``); none when it has none or
    the file is not one aebench wrote (the report and compare still work without them). A
    ``references`` list there that cannot be read whole (an entry of another version, a hand
    edit) is a ``ReferencesError``: left out, the reproduction would pass unchecked."""
    path = Path(folder) / SUITE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    listed = raw.get("references", []) if isinstance(raw, dict) else []
    if not isinstance(listed, list):
        raise ReferencesError(f"{path}: references: a list expected")
    references = []
    for i, entry in enumerate(listed):
        try:
            references.append(Reference.model_validate(entry))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in (f"references[{i}]", *error["loc"]))
            raise ReferencesError(f"{path}: {where}: {error['msg']}") from None
    return references


# --- the reproduction: ours against each reference ----------------------------------------------


@dataclass
class Outcome:
    """One reference against one configuration of ours (every ok seed of it)."""

    reference: Reference
    configuration: str  # "mnist/iwae/none model.k=50": ours; "" when nothing ok matched
    values: tuple[float, ...]  # the ok seeds' finite values of the metric (none: not measured)
    epochs: int | None  # what ours trained for (train.epochs), where the table says
    trials: list[str]  # the trial ids of the seeds
    schedule: object = None  # its learning-rate schedule (the train.schedule column)
    # The metric's declaration: a heavy-tailed column's ours is its median and outside a sign
    # test; its interval is cut at the values it can take. None: a mean, uncut.
    column: Column | None = None
    lost: int = 0  # its seeds without a value: failed, diverged, or not a number (NaN, infinite)

    @property
    def seeds_text(self) -> str:
        """``5`` or, where some gave no value, ``5 of 8``."""
        return f"{self.seeds} of {self.seeds + self.lost}" if self.lost else str(self.seeds)

    @property
    def seeds(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        """NaN: not measured."""
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        """The sample standard deviation over seeds; NaN with one seed."""
        return float(np.std(self.values, ddof=1)) if self.seeds > 1 else math.nan

    @property
    def heavy_tailed(self) -> bool:
        return self.column is not None and self.column.heavy_tailed

    @property
    def centre(self) -> float:
        """Ours: the mean over seeds, or a heavy-tailed column's median (as its cells show it)."""
        return float(np.median(self.values)) if self.heavy_tailed and self.values else self.mean

    @property
    def difference(self) -> float:
        return self.centre - self.reference.value

    def interval(self, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
        """Ours: the mean over seeds with its Student's t interval (none below 3 seeds), or a
        heavy-tailed column's median with its order statistics' (none below 6 at 95%); cut at
        the values the column can take."""
        column = self.column or Column(self.reference.metric)
        declared = {"heavy_tailed": column.heavy_tailed, "at_least": column.at_least}
        return interval(self.values, confidence, at_most=column.at_most, **declared)

    def verdict(
        self,
        direction: int,
        confidence: float = DEFAULT_CONFIDENCE,
        p_outside: float | None = None,
    ) -> Verdict:
        """``inside`` where ours' interval lies within the tolerance (``within``), or nowhere
        worse than it (``not-worse``, with the column's ``direction``: +1 higher is better);
        ``outside`` where ``p_outside`` (default: this value's own, ``outside_p``; ``verdicts``
        gives the family's, corrected) is below ``1 - confidence``; else ``inconclusive``, as
        without an interval. Not measured: ``outside`` (a reproduction that did not happen fails
        it)."""
        if not math.isfinite(self.mean):
            return "outside"
        ours = self.interval(confidence)
        if not ours.exists or (self.reference.check == "not-worse" and direction == 0):
            return "inconclusive"  # no interval; or no declared direction says which side is worse
        value, ends = self.reference.value, (ours.low, ours.high)
        if self.reference.check == "not-worse":  # how much better than the value, at its worse end
            worst = min(direction * (end - value) for end in ends)
        else:  # how far from the value, at the interval's farthest end
            worst = -max(abs(end - value) for end in ends)
        if worst >= -self.reference.tolerance:
            # Not where some seeds gave no value: theirs could lie anywhere (3 seeds near the
            # value, 3 diverged and one at -inf read "inside" on the 3).
            return "inconclusive" if self.lost else "inside"
        p = self.outside_p(direction) if p_outside is None else p_outside
        return "outside" if p < 1 - confidence else "inconclusive"

    def outside_p(self, direction: int) -> float:
        """The p-value of "ours lies beyond the tolerance": a one-sided test of each way out the
        check allows (above and below the value for ``within``, the worse side for
        ``not-worse``), doubled, so that alone it calls ``outside`` exactly where the two-sided
        interval lies wholly beyond: a t-test of the mean, or for a heavy-tailed column the sign
        test of the median (the seeds beyond the edge, counted). NaN where there is no interval
        (fewer than 3 seeds)."""
        if self.seeds < MIN_SEEDS or not (math.isfinite(self.mean) and math.isfinite(self.std)):
            return math.nan
        if self.reference.check == "not-worse" and direction == 0:
            return math.nan  # no worse side to be beyond
        upper = self.reference.value + self.reference.tolerance
        lower = self.reference.value - self.reference.tolerance
        if self.reference.check == "not-worse":  # the worse side only
            edges = [(lower, -1)] if direction > 0 else [(upper, +1)]
        else:
            edges = [(upper, +1), (lower, -1)]
        one_sided = min(self._beyond_p(edge, side) for edge, side in edges)
        return min(1.0, 2 * one_sided)

    def _beyond_p(self, edge: float, side: int) -> float:
        """One-sided p of "ours lies beyond ``edge``" on ``side`` (+1 above it, -1 below)."""
        from scipy import stats

        if self.heavy_tailed:
            beyond = sum(side * (v - edge) > 0 for v in self.values)
            return float(stats.binomtest(beyond, len(self.values), alternative="greater").pvalue)
        distance = side * (self.mean - edge)
        if self.std == 0:
            return 0.0 if distance > 0 else 1.0
        error = self.std / math.sqrt(self.seeds)
        return float(stats.t.sf(distance / error, self.seeds - 1))

    @property
    def shortened(self) -> bool:
        wanted = self.reference.epochs
        return wanted is not None and self.epochs is not None and self.epochs < wanted


def outcomes(
    table: pd.DataFrame, references: Sequence[Reference], vocabulary: Vocabulary | None = None
) -> list[Outcome]:
    """Each reference against each configuration of ``table`` it matches (its ``ok`` rows, seeds
    averaged); a reference that matches nothing ok gives one unmeasured outcome. ``vocabulary``:
    the columns' declarations, where a heavy-tailed one's outcome is read by its median."""
    ok = table[table["status"] == "ok"] if "status" in table else table.iloc[0:0]
    keys = [c for c in ok.columns if is_config_column(c)]
    # every seed of each configuration, whatever its status: those that gave no value are counted
    seeds = Counter(_configuration(r) for r in table.reindex(columns=keys).to_dict("records"))
    out = []
    for reference in references:
        where = reference.where
        if any(k not in ok.columns for k in where):
            chosen = ok.iloc[0:0]
        else:
            chosen = ok[[matches(r, where) for r in ok[list(where)].to_dict("records")]]
        if chosen.empty:
            out.append(Outcome(reference, "", (), None, []))
            continue
        configs = [_configuration(r) for r in chosen[keys].to_dict("records")]
        # the parameters the reference names, and any that tell its matches apart (a folder that
        # holds runs of the suite under other settings)
        differing = [k for k in keys if chosen[k].map(canonical).nunique(dropna=False) > 1]
        shown = [k for k in keys if "." in k and (k in where or k in differing)]
        for config, rows in chosen.groupby(configs, sort=True):
            if reference.metric in rows:
                values = pd.to_numeric(rows[reference.metric], errors="coerce").to_numpy(float)
            else:
                values = np.full(len(rows), math.nan)
            finite = values[np.isfinite(values)]
            epochs = rows["train.epochs"].iloc[0] if "train.epochs" in rows else None
            schedule = rows["train.schedule"].iloc[0] if "train.schedule" in rows else None
            out.append(
                Outcome(
                    reference,
                    label(rows.iloc[0], shown),
                    tuple(float(v) for v in finite),
                    None if epochs is None or pd.isna(epochs) else int(epochs),
                    [str(t) for t in rows["trial_id"]] if "trial_id" in rows else [],
                    schedule,
                    None if vocabulary is None else vocabulary.get(reference.metric),
                    lost=seeds[config] - len(finite),
                )
            )
    return out


def verdicts(
    results: Sequence[Outcome], directions: Sequence[int], confidence: float = DEFAULT_CONFIDENCE
) -> list[Verdict]:
    """Each outcome's verdict (``Outcome.verdict``, its column's direction in ``directions``),
    the ``outside`` tests of them all corrected together by Holm's method: the chance that any
    value is called outside while inside its tolerance is at most ``1 - confidence``."""
    adjusted = holm([o.outside_p(d) for o, d in zip(results, directions, strict=True)])
    return [
        o.verdict(d, confidence, p_outside=float(p))
        for o, d, p in zip(results, directions, adjusted, strict=True)
    ]


def stage_ends(schedule: object, epochs: int) -> list[int]:
    """The epochs a learning curve is shown at: the end of each stage of a ``multistep`` schedule
    (its milestones) and the last epoch; without stages, 1, 2, 4, 8, ... and the last."""
    ends: list[int] = []
    try:
        parsed = json.loads(schedule) if isinstance(schedule, str) else schedule
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "multistep":
        ends = [int(m) for m in parsed.get("milestones", []) if int(m) < epochs]
    else:
        step = 1
        while step < epochs:
            ends.append(step)
            step *= 2
    return [*ends, epochs]


def curve_at(curves: Sequence[Mapping[str, list[float]]], name: str, epochs: list[int]) -> list:
    """The mean over seeds of curve ``name`` at each of ``epochs`` (1-based); NaN where a seed's
    curve is shorter or absent."""
    out = []
    for epoch in epochs:
        values = [c[name][epoch - 1] for c in curves if len(c.get(name, [])) >= epoch]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        out.append(float(np.mean(finite)) if len(finite) == len(curves) and finite else math.nan)
    return out
