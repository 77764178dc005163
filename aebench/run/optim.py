"""The optimizer and the learning-rate schedule of a trial, from its ``[train]`` settings.

Optimizers: ``adam``, ``adamw`` (betas, eps, weight_decay) and ``sgd`` (momentum, nesterov,
weight_decay), each with its fused kernel where torch has one. Schedules set the rate per epoch:
``constant``, ``multistep`` (times ``gamma`` after each milestone epoch), ``exponential`` (times
``gamma`` after every epoch), ``cosine`` (a linear warm-up from 0, then a cosine to
``min_lr``) and ``plateau`` (times ``factor`` once the validation loss has not improved for
``patience`` epochs). Both keep their state in ``state_dict``s, so a checkpoint resumes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from aebench.run.sections import (
    CosineSchedule,
    ExponentialSchedule,
    MultiStepSchedule,
    PlateauSchedule,
    Schedule,
    TrainSection,
)


def make_optimizer(
    model: nn.Module | Iterable[torch.Tensor], settings: TrainSection
) -> torch.optim.Optimizer:
    """The trial's optimizer at ``settings.lr`` over the model's trainable parameters, or over the
    parameters given (a model's auxiliary ones have an optimizer of their own); fused where
    torch can."""
    given = model.parameters() if isinstance(model, nn.Module) else model
    params = [p for p in given if p.requires_grad]
    if settings.optimizer == "sgd":
        cls = torch.optim.SGD
        options = {"momentum": settings.momentum, "nesterov": settings.nesterov}
    else:
        cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
        options = {"betas": tuple(settings.betas), "eps": settings.eps}
    options |= {"lr": settings.lr, "weight_decay": settings.weight_decay}
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if params and fusable:
        try:
            return cls(params, fused=True, **options)
        except (RuntimeError, TypeError):  # no fused kernel for this device or optimizer
            pass
    return cls(params, **options)


def epoch_factor(schedule: Schedule, epochs: int, base_lr: float) -> Callable[[int], float]:
    """The factor on the base rate ``base_lr`` for epoch ``e`` (counted from 0), as the schedule
    says (not for ``plateau``, which follows the validation loss)."""
    if isinstance(schedule, MultiStepSchedule):
        milestones, gamma = schedule.milestones, schedule.gamma
        return lambda e: gamma ** sum(1 for m in milestones if e >= m)
    if isinstance(schedule, ExponentialSchedule):
        gamma = schedule.gamma
        return lambda e: gamma**e
    if isinstance(schedule, CosineSchedule):
        warmup = schedule.warmup_epochs
        floor = schedule.min_lr / base_lr  # min_lr is a rate, not a factor: relative to the base

        def cosine(e: int) -> float:
            if e < warmup:
                return (e + 1) / (warmup + 1)
            progress = (e - warmup) / max(1, epochs - warmup - 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return cosine
    return lambda e: 1.0


def make_schedule(
    optimizer: torch.optim.Optimizer, settings: TrainSection
) -> LRScheduler | ReduceLROnPlateau:
    """A scheduler stepped once per epoch: epoch ``e`` trains at ``lr * factor(e)``; a plateau
    schedule is stepped with the epoch's validation loss instead."""
    schedule = settings.schedule
    if isinstance(schedule, PlateauSchedule):
        # torch cuts after patience + 1 epochs without a relative gain of 1e-4; ours, as early
        # stopping counts, after ``patience`` epochs without a lower loss
        return ReduceLROnPlateau(
            optimizer,
            factor=schedule.factor,
            patience=schedule.patience - 1,
            threshold=0.0,
            min_lr=schedule.min_lr,
        )
    base = optimizer.param_groups[0]["lr"]
    return LambdaLR(optimizer, epoch_factor(schedule, settings.epochs, base))
