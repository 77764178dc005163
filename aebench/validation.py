"""Validation during training: a held-out split, its loss per epoch, and early stopping.

The validation loss is the model's own per-sample loss, averaged over the validation split, in
eval mode and without gradients. Its sampling (a VAE's) draws from a stream seeded afresh each
epoch and then put back, so that validating changes nothing about training: a run with
validation trains exactly as one without.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from aebench.contracts import Split

EVAL_BATCH = 1024


def hold_out(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(the rest, the validation split): ``fraction`` of ``train``, drawn with ``seed``."""
    n = len(train)
    n_val = math.floor(n * fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(train.x.device)
    val, rest = order[:n_val], order[n_val:]

    def take(index: Tensor) -> Split:
        return Split(train.x[index], None if train.y is None else train.y[index])

    return take(rest), take(val)


def empty_split(n: int, fraction: float) -> bool:
    """Whether holding out ``fraction`` of ``n`` samples leaves either side empty."""
    n_val = math.floor(n * fraction)
    return n_val < 1 or n - n_val < 1


@torch.no_grad()
def validation_loss(model: nn.Module, x: Tensor, seed: int) -> float:
    """The model's mean per-sample loss on ``x``, in eval mode, its sampling seeded by ``seed``."""
    was_training = model.training
    model.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    with torch.random.fork_rng(devices=devices, device_type=x.device.type):
        torch.manual_seed(seed)
        for batch in x.split(EVAL_BATCH):
            total += model.loss(batch, model(batch)).double().sum()
    model.train(was_training)
    return (total / len(x)).item()


@torch.no_grad()
def loss_terms(model: nn.Module, x: Tensor, seed: int) -> dict[str, float]:
    """The means over ``x`` of the per-sample terms a model's ``loss_terms`` gives (a VAE's rate
    and distortion), in eval mode, sampling seeded by ``seed``; {} for a model without it."""
    terms_of = getattr(model, "loss_terms", None)
    if terms_of is None:
        return {}
    was_training = model.training
    model.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    sums: dict[str, Tensor] = {}
    with torch.random.fork_rng(devices=devices, device_type=x.device.type):
        torch.manual_seed(seed)
        for batch in x.split(EVAL_BATCH):
            for name, values in terms_of(batch, model(batch)).items():
                sums[name] = sums.get(name, 0) + values.double().sum()
    model.train(was_training)
    return {name: (total / len(x)).item() for name, total in sums.items()}


@dataclass
class EarlyStopping:
    """The best validation loss so far, its epoch and weights, and how many epochs since.

    ``patience`` None: never stops, only keeps track of the best epoch.
    """

    patience: int | None = None
    min_delta: float = 0.0
    best: float = math.inf
    best_epoch: int = 0
    since: int = 0
    best_state: dict[str, Any] | None = field(default=None, repr=False)

    def update(self, epoch: int, loss: float, model: nn.Module, keep_weights: bool) -> bool:
        """Record epoch ``epoch``'s loss; True when training should stop."""
        if loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.since = loss, epoch, 0
            if keep_weights:
                self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.since += 1
        return self.patience is not None and self.since >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "since": self.since,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.since, self.best_state = state["since"], state["best_state"]
