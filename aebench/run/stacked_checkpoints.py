"""A stacked group's checkpoints: one per trial, in its own folder, as it writes one alone.

About once a minute of training (``checkpoint.DEFAULT_SECONDS``), each trial of a group trained
together (``aebench.run.stacked``) gets the checkpoint that ``train_model`` reads back: its model
(its slice of the stacked weights), its optimizer state (its part of each stacked parameter's
state, laid out as its own parameters), its generator, the group's schedule, its curves and its
share of the time. A killed group's trials then resume alone, each from its own checkpoint
(``_prepare`` leaves them out of the group), as the same distribution of results.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from torch import nn

from aebench.run.checkpoint import checkpoint_state
from aebench.run.optim import make_optimizer

if TYPE_CHECKING:
    from aebench.run.stacked import StackedTraining


def save_if_due(training: StackedTraining, epoch: int) -> None:
    """Every trial's checkpoint after ``epoch`` when one is due (never after the last epoch, nor
    for a trial that diverged: alone, it would have stopped)."""
    first = training.group[0].checkpoints
    if first is None or epoch >= training.settings.epochs or not first.due(epoch):
        return
    size = len(training.group)
    trained_s = (time.perf_counter() - training.start) / size  # each trial's share
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
    own = [name for name, p in model.named_parameters() if p.requires_grad]  # its order
    position = {id(p): k for k, p in enumerate(p for g in group.param_groups for p in g["params"])}
    group_state = group.state_dict()
    state = {}
    for name, param, part in training.engine.trial_parameters(i):
        kept = group_state["state"].get(position.get(id(param), -1))
        if name in own and kept is not None:
            # contiguous copies: a fused optimizer walks its state in its parameter's layout (a
            # transposed view would pair each weight with another's moments), and a view would
            # save its whole stacked storage
            state[own.index(name)] = {
                key: (part(value) if value.shape == param.shape else value).clone(
                    memory_format=torch.contiguous_format
                )
                for key, value in kept.items()
            }
    groups = [
        {**stacked, "params": alone["params"]}
        for stacked, alone in zip(
            group_state["param_groups"], single.state_dict()["param_groups"], strict=True
        )
    ]
    single.load_state_dict({"state": state, "param_groups": groups})
    return single
