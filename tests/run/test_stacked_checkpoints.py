"""Checkpoints of trials trained together (aebench.run.stacked_checkpoints): each trial's own, in
the form its training alone reads; a killed group resumes together where its trials stopped, or
alone where their checkpoints are of different epochs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from builders import entry
from test_stacked import run, trials, workload

from aebench.plugins.manager import Plugins
from aebench.results.trials import CHECKPOINT, trial_folder
from aebench.run import stacked
from aebench.run.checkpoint import Checkpoints
from aebench.run.stacked_rows import rows_engine

SMALL_AE = entry("ae", latent_dim=4, hidden=[32])  # no noise of its own: stacked ends as alone


def _models(plugins: Plugins, n: int) -> list[torch.nn.Module]:
    from aebench import DataInfo

    info = DataInfo(shape=(1, 8, 8), kind="unit", n_classes=10)
    factory = plugins.models.get("ae").factory
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        models.append(factory(info, latent_dim=4, hidden=[16]))
    return models


@pytest.mark.parametrize("engine", ["rows", "vmap"])
def test_each_trials_part_of_a_stacked_parameter_is_its_own_parameter(
    plugins: Plugins, engine: str
) -> None:
    models = _models(plugins, 3)
    built = rows_engine(models) if engine == "rows" else stacked.VmapEngine(models)
    assert built is not None
    for i, model in enumerate(models):
        parts = list(built.trial_parameters(i))
        assert sorted(name for name, _, _ in parts) == sorted(
            n for n, _ in model.named_parameters()
        )
        for name, param, part in parts:
            assert torch.equal(part(param), model.get_parameter(name)), (engine, i, name)


def test_a_killed_group_resumes_together_where_it_stopped(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A group killed in its third epoch of four: each trial has its checkpoint of epoch 2; run
    again, the group resumes from them and ends where it ends never killed, its optimizer state,
    batches and schedule carried over."""
    # cosine over 4 epochs: rates 1, 0.75, 0.25 and 0 of lr (the third moves the weights)
    schedule = {"schedule": {"kind": "cosine"}}
    found = trials(plugins, SMALL_AE, seeds=[0, 1, 2], epochs=4, train=schedule)
    never_killed = run(workload(plugins, found))

    monkeypatch.setattr(Checkpoints, "due", lambda self, epoch: True)
    epochs: list[int] = []  # the epochs the group trained, as it trained them
    kill_in = [3]
    train_epoch = stacked.StackedTraining._train_epoch

    def spied(self: stacked.StackedTraining) -> Any:
        epochs.append(len(self.results[0].curves["loss"]) + 1)
        if epochs[-1] in kill_in:
            raise KeyboardInterrupt
        return train_epoch(self)

    monkeypatch.setattr(stacked.StackedTraining, "_train_epoch", spied)
    with pytest.raises(KeyboardInterrupt):
        run(workload(plugins, found, output=tmp_path))
    for trial in found:
        saved = Checkpoints(trial_folder(tmp_path, trial.id) / CHECKPOINT, trial.id).load()
        assert saved is not None and saved["epoch"] == 2, trial.seed
        assert len(saved["curves"]["loss"]) == 2
        for moments in saved["optimizer"]["state"].values():
            for value in moments.values():  # laid out as its parameter, and its own storage
                assert value.is_contiguous()
                assert value.untyped_storage().nbytes() == value.numel() * value.element_size()

    kill_in.clear()
    resumed = run(workload(plugins, found, output=tmp_path))
    assert epochs == [1, 2, 3, 3, 4]  # the group trained its last two epochs together
    for seed in (0, 1, 2):
        row, outcome = resumed[seed]
        assert row["status"] == "ok" and outcome.resumed_after == 2
        assert len(outcome.curves["loss"]) == 4
        assert outcome.curves["lr"] == never_killed[seed][1].curves["lr"]
        assert row["final_loss"] == pytest.approx(never_killed[seed][0]["final_loss"], rel=1e-4)
        ends, expected = outcome.model.state_dict(), never_killed[seed][1].model.state_dict()
        for name, value in expected.items():
            assert torch.allclose(ends[name], value, atol=1e-5), (seed, name)


def test_trials_whose_checkpoints_differ_in_epoch_resume_alone(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    found = trials(plugins, SMALL_AE, seeds=[0, 1, 2], epochs=3)
    monkeypatch.setattr(Checkpoints, "due", lambda self, epoch: True)
    train_epoch = stacked.StackedTraining._train_epoch

    def killed_in_the_second(self: stacked.StackedTraining) -> Any:
        if len(self.results[0].curves["loss"]) == 1:
            raise KeyboardInterrupt
        return train_epoch(self)

    monkeypatch.setattr(stacked.StackedTraining, "_train_epoch", killed_in_the_second)
    with pytest.raises(KeyboardInterrupt):
        run(workload(plugins, found, output=tmp_path))
    (trial_folder(tmp_path, found[0].id) / CHECKPOINT).unlink()  # seed 0 starts over

    monkeypatch.setattr(stacked.StackedTraining, "_train_epoch", train_epoch)
    together: list[int] = []
    spied = stacked.train_together
    spy = lambda g, s: together.append(len(g)) or spied(g, s)  # noqa: E731
    monkeypatch.setattr(stacked, "train_together", spy)
    resumed = run(workload(plugins, found, output=tmp_path))
    assert together == []  # seed 0 from scratch, seeds 1 and 2 from epoch 1: each alone
    for seed, after in ((0, 0), (1, 1), (2, 1)):
        row, outcome = resumed[seed]
        assert row["status"] == "ok" and outcome.resumed_after == after, seed
        assert len(outcome.curves["loss"]) == 3
