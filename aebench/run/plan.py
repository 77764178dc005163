"""Before a run trains: datasets loaded, trials declined with a reason, the work left to do."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aebench.contract.data import Data, DataInfo
from aebench.plugins.manager import Plugins
from aebench.plugins.registry import Entry
from aebench.results.trials import (
    WEIGHTS,
    trial_folder,
)
from aebench.run.data import DataCache
from aebench.run.observing import Row
from aebench.run.suite import Suite, SuiteError, Trial
from aebench.run.validation import empty_split

if TYPE_CHECKING:
    pass

log = logging.getLogger("aebench")


def load_datasets(suite: Suite, plugins: Plugins, device: torch.device) -> DataCache:
    """Every dataset of the suite, loaded before anything trains: a dataset that cannot be loaded
    (missing files, say) is a ``SuiteError`` naming its place in the file."""
    cache = DataCache(plugins)
    for component in {t.dataset.source: t.dataset for t in suite.trials}.values():
        try:
            data = cache.get(component, device)
        except Exception as exc:
            raise SuiteError(
                f"{suite.path}: {component.source}: cannot load dataset {component.plugin!r}: {exc}"
            ) from None
        for trial in suite.trials:
            if trial.dataset.source == component.source:
                _check_validation(suite, trial, data)
    return cache


def _check_validation(suite: Suite, trial: Trial, data: Data) -> None:
    """A validation split that can be made, where the protocol needs one."""
    fraction = trial.train.get("val_fraction", 0.0)
    where = f"{suite.path}: train"
    if fraction and empty_split(len(data.train), fraction):
        raise SuiteError(
            f"{where}.val_fraction: {fraction} of {trial.dataset.plugin}'s"
            f" {len(data.train)} training samples leaves an empty split"
        )
    needs = [k for k in ("early_stopping", "restore_best") if trial.train.get(k)]
    if needs and not fraction and data.val is None:
        raise SuiteError(
            f"{where}.{needs[0]}: needs a validation split; set train.val_fraction"
            f" ({trial.dataset.plugin} has none of its own)"
        )


def declined(suite: Suite, plugins: Plugins, cache: DataCache, device: torch.device) -> dict:
    """Trials that will be skipped, found before anything trains: trial id -> the reason.

    A model that does not take the data's kind, or a regularizer that declines the model, is
    known from the model's class and a model built on the meta device (no memory, no compute).
    A model that cannot be built that way is left to be checked when its trial runs."""
    reasons: dict[str, str] = {}
    found: dict[str, str | None] = {}  # by what decides it: dataset, model, regularizer
    for trial in suite.trials:
        model, regularizer = trial.model, trial.regularizer
        key = json.dumps(
            [
                trial.dataset.source,
                model.plugin,
                model.params,
                regularizer.plugin,
                regularizer.params,
            ],
            sort_keys=True,
            default=str,
        )
        if key not in found:
            found[key] = _decline(trial, plugins, cache.get(trial.dataset, device).info)
        if found[key]:
            reasons[trial.id] = found[key]
    return reasons


def wrong_kind(entry: Entry, info: DataInfo) -> str | None:
    """Why a model does not take this data, from what its class declares: the kinds it takes
    (``data_kinds``), and whether it takes images only (``image_only``: conv networks)."""
    kinds = getattr(entry.factory, "data_kinds", None)
    if kinds is not None and info.kind not in kinds:
        return f"{entry.origin} takes {', '.join(kinds)} data, not {info.kind}"
    if getattr(entry.factory, "image_only", False) and len(info.shape) != 3:
        return f"{entry.origin} takes (C, H, W) images, not samples of shape {tuple(info.shape)}"
    return None


def _decline(trial: Trial, plugins: Plugins, info: DataInfo) -> str | None:
    entry = plugins.models.get(trial.model.plugin)
    if reason := wrong_kind(entry, info):
        return reason
    try:
        with torch.device("meta"):
            model = entry.factory(info, **trial.model.params)
        regularizer = plugins.regularizers.get(trial.regularizer.plugin).factory(
            **trial.regularizer.params
        )
        return regularizer.decline(model, info) or None
    except Exception:  # its trial will tell, with the plugin to blame
        return None


# Statuses that a rerun does not repeat. A failed trial is tried again: its cause may be fixed.
FINISHED = frozenset({"ok", "skipped", "diverged"})


@dataclass
class Plan:
    """What a run does: trials to train, and finished trials whose kept model is measured again
    (their evaluation settings changed), each with its earlier row."""

    train: list[Trial]
    evaluate: list[tuple[Trial, Row]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.train) + len(self.evaluate)


def plan(suite: Suite, table: Any, output: Path, rerun: bool = False) -> Plan:
    """What of ``suite`` the results ``table`` does not hold as finished with the same
    evaluation settings. A trial measured differently is evaluated again when its weights were
    kept, else trained again."""
    if rerun or table.empty:
        return Plan(list(suite.trials))
    finished = table[table["status"].isin(FINISHED)]
    rows = {row["trial_id"]: row for row in finished.to_dict("records")}
    out = Plan([])
    for trial in suite.trials:
        row = rows.get(trial.id)
        if row is None:
            out.train.append(trial)
        elif row["status"] != "ok" or row.get("eval_id") == trial.eval_id:
            continue  # done: skipped and diverged trials have nothing to measure
        elif (trial_folder(output, trial.id) / WEIGHTS).is_file():
            out.evaluate.append((trial, row))
        else:
            out.train.append(trial)
    return out
