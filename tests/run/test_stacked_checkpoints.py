"""Checkpoints of trials trained together (aebench.run.stacked_checkpoints): each trial's own, in
the form its training alone reads, so that a killed group's trials resume alone where they
stopped."""

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


def test_a_killed_group_resumes_each_trial_alone_where_it_stopped(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A group killed in its third epoch of four: each trial has its checkpoint of epoch 2, and
    run again, resumes alone from it and ends where the group, never killed, ends (an autoencoder
    ends where it ends alone), its optimizer state, batches and schedule carried over."""
    # cosine over 4 epochs: rates 1, 0.75, 0.25 and 0 of lr (the third moves the weights)
    schedule = {"schedule": {"kind": "cosine"}}
    found = trials(plugins, SMALL_AE, seeds=[0, 1, 2], epochs=4, train=schedule)
    never_killed = run(workload(plugins, found))

    monkeypatch.setattr(Checkpoints, "due", lambda self, epoch: True)
    epochs: list[int] = []
    train_epoch = stacked.StackedTraining._train_epoch

    def killed_in_the_third(self: stacked.StackedTraining) -> Any:
        epochs.append(len(epochs) + 1)
        if len(epochs) == 3:
            raise KeyboardInterrupt
        return train_epoch(self)

    monkeypatch.setattr(stacked.StackedTraining, "_train_epoch", killed_in_the_third)
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

    monkeypatch.setattr(stacked.StackedTraining, "_train_epoch", train_epoch)
    resumed = run(workload(plugins, found, output=tmp_path))
    assert epochs == [1, 2, 3]  # the group did not train again: each trial resumed alone
    for seed in (0, 1, 2):
        row, outcome = resumed[seed]
        assert row["status"] == "ok" and outcome.resumed_after == 2
        assert len(outcome.curves["loss"]) == 4
        assert outcome.curves["lr"] == never_killed[seed][1].curves["lr"]
        assert row["final_loss"] == pytest.approx(never_killed[seed][0]["final_loss"], rel=1e-4)
        ends, expected = outcome.model.state_dict(), never_killed[seed][1].model.state_dict()
        for name, value in expected.items():
            assert torch.allclose(ends[name], value, atol=1e-5), (seed, name)
