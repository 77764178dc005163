"""Trials trained together (``[train] stack = "auto"``, aebench.run.stacked): which trials group,
that each keeps its own model, curves and row, that stacked and separate runs of the same seeds
give the same distribution of results, and that a group that cannot train together trains alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from builders import build_suite, entry
from scipy import stats

from aebench.plugins.manager import Plugins
from aebench.run import stacked
from aebench.run.data import DataCache
from aebench.run.executors import LocalExecutor, Workload
from aebench.run.observing import Row, TrialOutcome
from aebench.run.suite import SuiteError, Trial, load_suite

DIGITS = entry("digits", binarize="dynamic")  # a batch_transform drawn from each trial's stream
SMALL_VAE = entry("vae", latent_dim=4, hidden=[32])


def trials(
    plugins: Plugins,
    *models: dict[str, Any],
    seeds: list[int],
    train: dict[str, Any] | None = None,
    epochs: int = 2,
    regularizers: list[dict[str, Any]] | None = None,
    **settings: Any,
) -> list[Trial]:
    suite = build_suite(
        *(models or (SMALL_VAE,)),
        datasets=[DIGITS],
        seeds=seeds,
        epochs=epochs,
        train={"stack": "auto"} | (train or {}),
        **settings,
    )
    if regularizers is not None:
        suite["regularizers"] = regularizers
    return load_suite(suite, plugins).trials


def workload(plugins: Plugins, found: list[Trial], **changes: Any) -> Workload:
    return Workload(found, plugins, torch.device("cpu"), DataCache(plugins), **changes)


def run(work: Workload) -> dict[int, tuple[Row, TrialOutcome]]:
    """Each trial's row and outcome by seed, through the local executor."""
    return {t.seed: (row, out) for t, row, out in LocalExecutor().run(work, lambda t: None)}


def test_stack_is_not_part_of_the_trial_id(plugins: Plugins) -> None:
    (trial,) = trials(plugins, seeds=[0])
    assert trial.train["stack"] == "auto"
    (alone,) = trials(plugins, seeds=[0], train={"stack": False})
    assert alone.train["stack"] == "off"  # one type in the table's column: parquet needs it
    assert alone.id == trial.id


def test_stack_is_auto_or_false(plugins: Plugins) -> None:
    with pytest.raises(SuiteError, match=r"train\.stack"):
        trials(plugins, seeds=[0], train={"stack": True})


def test_the_seeds_of_one_configuration_train_together(plugins: Plugins) -> None:
    grid = entry("vae", latent_dim=4, grid={"hidden": [[16], [32]]})
    found = trials(plugins, grid, entry("vq-vae"), seeds=[0, 1, 2])
    groups = stacked.groups(workload(plugins, found))
    shapes = sorted((g[0].model.plugin, len(g), len({t.seed for t in g})) for g in groups)
    # vq-vae does not declare itself stackable: its seeds train alone
    assert shapes == [("vae", 3, 3), ("vae", 3, 3), ("vq-vae", 1, 1)] + [("vq-vae", 1, 1)] * 2


@pytest.mark.parametrize(
    ("train", "settings", "changes"),
    [
        ({"stack": False}, {}, {}),
        ({"early_stopping": {"patience": 2}}, {}, {}),
        ({"clip_norm": 1.0}, {}, {}),
        ({"checkpoint_every": 1}, {}, {}),
        ({"schedule": {"kind": "plateau"}}, {}, {}),
        ({}, {}, {"isolate": True}),
        ({}, {}, {"timeout": 60.0}),
    ],
    ids=["off", "early-stopping", "clip", "checkpoints", "plateau", "isolate", "timeout"],
)
def test_what_stacking_does_not_do_trains_alone(
    plugins: Plugins, train: dict[str, Any], settings: dict[str, Any], changes: dict[str, Any]
) -> None:
    found = trials(plugins, seeds=[0, 1, 2], train=train, **settings)
    groups = stacked.groups(workload(plugins, found, **changes))
    assert [len(g) for g in groups] == [1, 1, 1]


def test_each_stacked_trial_has_its_own_model_curves_and_row(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    together = stacked.train_together

    def spy(group: list[stacked.Prepared], settings: Any) -> Any:
        calls.append(len(group))
        return together(group, settings)

    monkeypatch.setattr(stacked, "train_together", spy)
    found = trials(plugins, seeds=[0, 1, 2], epochs=3)
    done = run(workload(plugins, found))
    assert calls == [3]  # one stacked training of the three seeds
    assert sorted(done) == [0, 1, 2]
    weights = []
    for seed, (row, outcome) in done.items():
        assert row["status"] == "ok", row["reason"]
        assert row["seed"] == seed and row["trial_id"] == found[seed].id
        assert len(outcome.curves["loss"]) == 3 and len(outcome.curves["lr"]) == 3
        assert row["final_loss"] == outcome.curves["loss"][-1]
        assert np.isfinite(row["recon_mse"]) and row["train_s"] > 0
        assert outcome.model is not None and not outcome.model.training  # measured in eval mode
        weights.append(outcome.model.encoder.net[0].weight.detach())
        # its curves are its own: its model's loss terms, not another trial's
        assert "rate" in outcome.curves
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    losses = [done[s][0]["final_loss"] for s in range(3)]
    assert len(set(losses)) == 3


@pytest.mark.parametrize(("regularizer", "together"), [("l1", False), ("denoising", True)])
def test_a_penalty_trains_alone_and_a_corruption_is_drawn_per_trial(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch, regularizer: str, together: bool
) -> None:
    """A penalty is not vmapped: its trials train alone; a corruption is drawn per trial, from
    the trial's own generator, outside the mapped forward pass, so it trains together."""
    calls: list[int] = []
    spied = stacked.train_together
    monkeypatch.setattr(stacked, "train_together", lambda g, s: calls.append(len(g)) or spied(g, s))
    found = trials(plugins, seeds=[0, 1], regularizers=[entry(regularizer)])
    assert [len(g) for g in stacked.groups(workload(plugins, found))] == [2]
    done = run(workload(plugins, found))
    assert [done[s][0]["status"] for s in (0, 1)] == ["ok", "ok"]
    assert done[0][0]["regularizer"] == regularizer
    assert calls == ([2] if together else [])


def test_a_group_that_cannot_train_together_trains_alone(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: stacked.StackedTraining) -> None:
        raise RuntimeError("vmap: data-dependent control flow")

    monkeypatch.setattr(stacked.StackedTraining, "run", broken)
    found = trials(plugins, seeds=[0, 1])
    done = run(workload(plugins, found))
    assert [done[s][0]["status"] for s in (0, 1)] == ["ok", "ok"]
    assert "could not train together" in caplog.text


def test_stacked_and_separate_runs_agree_in_distribution(plugins: Plugins) -> None:
    """Eight seeds stacked and the same eight alone: not the same numbers (the VAE's noise is
    drawn for the group at once), the same distribution of final losses: Welch's t on the means
    and Levene's test on the spreads, at a loose level (a real difference, such as trials
    sharing their batches or their optimizer state, moves the mean by far more)."""
    seeds = list(range(8))
    found = trials(plugins, seeds=seeds, epochs=3)
    together = run(workload(plugins, found))
    alone = run(workload(plugins, [replace(t, train={**t.train, "stack": False}) for t in found]))
    a = np.array([together[s][0]["final_loss"] for s in seeds])
    b = np.array([alone[s][0]["final_loss"] for s in seeds])
    assert not np.array_equal(a, b)  # the stacked path ran
    assert stats.ttest_ind(a, b, equal_var=False).pvalue > 1e-3, (a, b)
    assert stats.levene(a, b).pvalue > 1e-3, (a, b)
    # within 5% of each other's mean, as a sanity bound on what the tests above allow
    assert abs(a.mean() - b.mean()) < 0.05 * abs(b.mean())
