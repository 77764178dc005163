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
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "weight_decay": 0.0,
    "momentum": 0.0,
    "nesterov": False,
}


def make_optimizer(
    model: nn.Module | Iterable[torch.Tensor], lr: float, settings: Mapping[str, Any] | None = None
) -> torch.optim.Optimizer:
    """The trial's optimizer over the model's trainable parameters, or over the parameters given
    (a model's auxiliary ones have an optimizer of their own); fused where torch can."""
    s = DEFAULTS | dict(settings or {})
    given = model.parameters() if isinstance(model, nn.Module) else model
    params = [p for p in given if p.requires_grad]
    if s["optimizer"] == "sgd":
        cls, options = torch.optim.SGD, {"momentum": s["momentum"], "nesterov": s["nesterov"]}
    else:
        cls = torch.optim.AdamW if s["optimizer"] == "adamw" else torch.optim.Adam
        options = {"betas": tuple(s["betas"]), "eps": s["eps"]}
    options |= {"lr": lr, "weight_decay": s["weight_decay"]}
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if params and fusable:
        try:
            return cls(params, fused=True, **options)
        except (RuntimeError, TypeError):  # no fused kernel for this device or optimizer
            pass
    return cls(params, **options)


def epoch_factor(schedule: Mapping[str, Any], epochs: int) -> Any:
    """The factor on the base rate for epoch ``e`` (counted from 0), as the schedule says."""
    kind = schedule["kind"]
    if kind == "multistep":
        milestones, gamma = list(schedule["milestones"]), schedule.get("gamma", 0.1)
        return lambda e: gamma ** sum(1 for m in milestones if e >= m)
    if kind == "exponential":
        return lambda e: schedule["gamma"] ** e
    if kind == "cosine":
        warmup = schedule.get("warmup_epochs", 0)
        floor = schedule.get("min_lr", 0.0)

        def cosine(e: int) -> float:
            if e < warmup:
                return (e + 1) / (warmup + 1)
            progress = (e - warmup) / max(1, epochs - warmup - 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return cosine
    return lambda e: 1.0


def make_schedule(
    optimizer: torch.optim.Optimizer, schedule: Mapping[str, Any] | None, epochs: int
) -> LRScheduler | ReduceLROnPlateau:
    """A scheduler stepped once per epoch: epoch ``e`` trains at ``lr * factor(e)``; a plateau
    schedule is stepped with the epoch's validation loss instead."""
    schedule = dict(schedule or {"kind": "constant"})
    if schedule["kind"] == "plateau":
        return ReduceLROnPlateau(
            optimizer,
            factor=schedule.get("factor", 0.1),
            patience=schedule.get("patience", 10),
            min_lr=schedule.get("min_lr", 0.0),
        )
    if schedule["kind"] == "cosine":  # min_lr is a rate, not a factor: relative to the base
        base = optimizer.param_groups[0]["lr"]
        schedule["min_lr"] = schedule.get("min_lr", 0.0) / base
    return LambdaLR(optimizer, epoch_factor(schedule, epochs))
