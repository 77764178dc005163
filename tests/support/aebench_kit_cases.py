"""A third party's plugins that break the contract in the ways real runs meet, for the kit's tests.

Datasets whose ``log_density`` or ``render`` is wrong in one way each (beside a right one),
observers that cope with a clean ``ok`` row and nothing else that real runs send, an observer
that takes settings (the one docs/plugins.md works through), and a metric whose column another
metric already writes.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from aebench import Column, Data, DataInfo, Metric, Split, SuiteObserver, hookimpl

# --- datasets: 2x2 squares on an 8x8 grid, their row and column the factors -------------------

INFO = DataInfo(shape=(1, 8, 8), kind="binary", factor_names=("row", "column"), factor_sizes=(4, 4))


def _render(factors: Tensor) -> Tensor:
    rows = F.one_hot(factors[:, 0], 4).repeat_interleave(2, dim=1).float()
    columns = F.one_hot(factors[:, 1], 4).repeat_interleave(2, dim=1).float()
    return (rows[:, :, None] * columns[:, None, :]).unsqueeze(1)


def _split(seed: int, n: int = 32) -> Split:
    factors = torch.randint(0, 4, (n, 2), generator=torch.Generator().manual_seed(seed))
    return Split(_render(factors), factors=factors)


def _uniform(x: Tensor) -> Tensor:
    """Each of the 16 squares equally likely: log(1/16) for each sample."""
    return torch.full((len(x),), -math.log(16.0))


def squares(
    case: Literal[
        "right",
        "density-shape",
        "density-not-finite",
        "density-train-only",
        "render-shape",
        "render-float64",
        "render-noisy",
        "render-swapped",
    ] = "right",
) -> Data:
    """Squares of known factors, rendered and with a density; ``case`` breaks one of them."""
    train, test = _split(0), _split(1)
    kept = _uniform(train.x)  # worked out for the training split only
    draws = torch.Generator().manual_seed(0)
    densities: dict[str, Callable[[Tensor], Tensor]] = {
        "density-shape": lambda x: _uniform(x)[:, None],  # (N, 1)
        "density-not-finite": lambda x: _uniform(x) + math.inf,
        # the training split's own values, looked up by its storage: NaN for any other split
        "density-train-only": lambda x: (
            kept[: len(x)]
            if x.data_ptr() == train.x.data_ptr()
            else torch.full((len(x),), math.nan)
        ),
    }
    renders: dict[str, Callable[[Tensor], Tensor]] = {
        "render-shape": lambda f: _render(f).flatten(1),  # (N, 64)
        "render-float64": lambda f: _render(f).double(),
        "render-noisy": lambda f: _render(f) + torch.rand(len(f), 1, 8, 8, generator=draws) / 1e3,
        "render-swapped": lambda f: _render(f.flip(1)),  # reads (column, row)
    }
    return Data(
        info=INFO,
        train=train,
        test=test,
        log_density=densities.get(case, _uniform),
        render=renders.get(case, _render),
    )


# --- observers -----------------------------------------------------------------------------


class NumbersOnly(SuiteObserver):
    """Formats every metric as a whole number of thousandths: ``int`` of NaN raises."""

    def trial_finished(self, trial, row, outcome):  # type: ignore[no-untyped-def]
        if row["status"] == "ok":
            {key: int(value * 1000) for key, value in row.items() if key.startswith("kit_")}


class CountsParameters(SuiteObserver):
    """Counts the model's parameters of every finished trial: a skipped one has no model."""

    def trial_finished(self, trial, row, outcome):  # type: ignore[no-untyped-def]
        if row["status"] != "failed":  # it thought of failures, not of skipped trials
            sum(p.numel() for p in outcome.model.parameters())


class FinalLoss(SuiteObserver):
    """Logs each trained trial's last loss: a failed trial has no curves."""

    def trial_finished(self, trial, row, outcome):  # type: ignore[no-untyped-def]
        if row["status"] != "skipped":  # it thought of skipped trials, not of failures
            self.last = outcome.curves["loss"][-1]


class OnceEach(SuiteObserver):
    """One record per trial, created exclusively: a trial measured again already has one."""

    def suite_started(self, suite, output, trials):  # type: ignore[no-untyped-def]
        self.folder = Path(output) / "once"
        self.folder.mkdir(exist_ok=True)

    def trial_finished(self, trial, row, outcome):  # type: ignore[no-untyped-def]
        with (self.folder / f"{trial.id}.json").open("x") as f:
            json.dump({"status": row["status"]}, f)


class StatusLog(SuiteObserver):
    """One line per finished trial of the chosen statuses, in a CSV beside the results."""

    def __init__(self, filename: str, statuses: list[str]) -> None:
        self.filename, self.statuses = filename, statuses

    def suite_started(self, suite, output, trials):  # type: ignore[no-untyped-def]
        self.path = Path(output) / self.filename

    def trial_finished(self, trial, row, outcome):  # type: ignore[no-untyped-def]
        if row["status"] in self.statuses:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerow([trial.id, trial.label(), row["status"], row["reason"]])


WRITTEN: list[tuple[str, list[str]]] = []  # the settings each StatusLog was built with


def status_log(
    suite: object,
    filename: Annotated[str, Field(pattern=r"^[\w.-]+\.csv$")] = "status.csv",
    statuses: list[str] = ("ok", "failed", "skipped", "diverged"),
) -> StatusLog:
    """A CSV of trial statuses beside the results."""
    WRITTEN.append((filename, list(statuses)))
    return StatusLog(filename, list(statuses))


# --- metrics -------------------------------------------------------------------------------


def _reconstruction(context) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """A reconstruction error under a name the built-in recon_mse already writes."""
    x = context.data.test.x
    return {"recon_mse": (context.model.decode(context.model.encode(x)) - x).pow(2).mean().item()}


COLLIDING = Metric(_reconstruction, columns=[Column("recon_mse", "lower")])


@hookimpl
def aebench_register_datasets(register):  # type: ignore[no-untyped-def]
    register("kit-squares", squares)


@hookimpl
def aebench_register_observers(register):  # type: ignore[no-untyped-def]
    register("kit-status-log", status_log)
