"""A stacked group's checkpoints: one per trial, in its own folder, as it writes one alone.

About once a minute of training (``checkpoint.DEFAULT_SECONDS``), each trial of a group trained
together (``aebench.run.stacked``) gets the checkpoint that ``train_model`` reads back: its model
(its slice of the stacked weights), its optimizer state (its part of each stacked parameter's
state, laid out as its own parameters), its generator, the group's schedule, its curves and its
share of the time. Run again, a killed group resumes together where every trial's checkpoint is
of one epoch (``restore_trials``, then ``resume_group`` puts each trial's optimizer state back in
its part of the stacked one); trials whose checkpoints differ in epoch resume alone, as the same
distribution of results either way.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from torch import nn

from aebench.run.checkpoint import checkpoint_state, restore_checkpoint
from aebench.run.optim import make_optimizer
from aebench.run.sections import TrainSection

if TYPE_CHECKING:
    from aebench.run.stacked import Prepared, StackedTraining


def save_if_due(training: StackedTraining, epoch: int) -> None:
    """Every trial's checkpoint after ``epoch`` when one is due (never after the last epoch, nor
    for a trial that diverged: alone, it would have stopped)."""
    first = training.group[0].checkpoints
    if first is None or epoch >= training.settings.epochs or not first.due(epoch):
        return
    size = len(training.group)
    trained_s = (training.earlier_s + time.perf_counter() - training.start) / size  # a share
    for i, (prepared, result) in enumerate(zip(training.group, training.results, strict=True)):
        if prepared.checkpoints is None or result.diverged_at is not None:
            continue
        optimizer = trial_optimizer(training, i, prepared.model)
        prepared.checkpoints.save(
            checkpoint_state(
                prepared.model,
                optimizer,
                prepared.generator,
                training.scheduler,
                prepared.watch,
                epoch=epoch,
                train_s=trained_s,
                curves=result.curves,
                timed=(training.timed_s / size, training.timed_samples),
            )
        )


def trial_optimizer(training: StackedTraining, i: int, model: nn.Module) -> torch.optim.Optimizer:
    """Trial i's optimizer as alone (``make_optimizer`` over its model, unstacked), holding its
    part of the group optimizer's state and the rate the schedule has set."""
    group = training.optimizer
    single = make_optimizer(model, training.settings)
    trainable = (name for name, p in model.named_parameters() if p.requires_grad)
    own = {name: k for k, name in enumerate(trainable)}  # its optimizer's order
    state = {}
    for name, param, part in training.engine.trial_parameters(i):
        kept = group.state.get(param)
        if name in own and kept:
            # contiguous copies: a fused optimizer walks its state in its parameter's layout (a
            # transposed view would pair each weight with another's moments), and a view would
            # save its whole stacked storage
            state[own[name]] = {
                key: (part(value) if value.shape == param.shape else value).clone(
                    memory_format=torch.contiguous_format
                )
                for key, value in kept.items()
            }
    groups = [
        {**{k: v for k, v in stacked.items() if k != "params"}, "params": alone["params"]}
        for stacked, alone in zip(
            group.param_groups, single.state_dict()["param_groups"], strict=True
        )
    ]
    single.load_state_dict({"state": state, "param_groups": groups})
    return single


def restore_trials(
    group: list[Prepared], settings: TrainSection
) -> list[torch.optim.Optimizer | None]:
    """Each resumed trial's model, generator, torch's stream and best epoch as its checkpoint
    holds them, and its optimizer as alone with its state (None for a trial that starts); before
    the group stacks its weights."""
    alone: list[torch.optim.Optimizer | None] = []
    for prepared in group:
        state = prepared.resumed
        if state is None:
            alone.append(None)
            continue
        optimizer = make_optimizer(prepared.model, settings)
        device = prepared.data.train.x.device
        restore_checkpoint(state, prepared.model, optimizer, prepared.generator, device)
        prepared.watch.load_state_dict(state["watch"])
        alone.append(optimizer)
    return alone


@torch.no_grad()
def resume_group(training: StackedTraining, alone: list[torch.optim.Optimizer | None]) -> int:
    """The group's optimizer, schedule, curves and time as its trials' checkpoints hold them
    (``run_group`` resumes a group only from checkpoints of one epoch); the epoch it resumes
    after, 0 where it starts afresh."""
    first = training.group[0].resumed
    if first is None or any(optimizer is None for optimizer in alone):
        return 0
    optimizer = training.optimizer
    for i, (prepared, single) in enumerate(zip(training.group, alone, strict=True)):
        assert single is not None and prepared.resumed is not None
        own = dict(prepared.model.named_parameters())
        for name, param, part in training.engine.trial_parameters(i):
            moments = single.state.get(own[name], {}) if name in own else {}
            stacked = optimizer.state[param]
            for key, value in moments.items():
                if value.shape == own[name].shape:  # a moment: into the trial's part
                    part(stacked.setdefault(key, torch.zeros_like(param))).copy_(value)
                else:  # the step count: one for all
                    stacked[key] = value.clone()
        result = training.results[i]
        result.curves = {name: list(values) for name, values in prepared.resumed["curves"].items()}
        result.resumed_after = prepared.resumed["epoch"]
    assert alone[0] is not None
    for stacked_group, single_group in zip(
        optimizer.param_groups, alone[0].param_groups, strict=True
    ):
        stacked_group.update({k: v for k, v in single_group.items() if k != "params"})
    training.scheduler.load_state_dict(first["scheduler"])
    size = len(training.group)
    training.timed_s, training.timed_samples = first["timed_s"] * size, first["timed_samples"]
    training.earlier_s = first["train_s"] * size
    return first["epoch"]
