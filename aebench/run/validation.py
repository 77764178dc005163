"""Validation during training: a held-out split, its loss per epoch, and early stopping.

The validation loss is the model's own per-sample loss, averaged over the validation split, in
eval mode and without gradients. Its sampling (a VAE's) draws from a stream seeded afresh each
epoch and then put back, so that validating changes nothing about training: a run with
validation trains exactly as one without.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from aebench.contract.data import BatchTransform, Split
from aebench.estimators.seeding import seeded_on

EVAL_BATCH = 1024


def hold_out(
    train: Split, fraction: float, seed: int, transform: BatchTransform | None = None
) -> tuple[Split, Split]:
    """(the rest, the validation split): ``fraction`` of ``train``, drawn with ``seed``; the
    validation split's inputs as training sees its batches (``drawn_once``)."""
    n = len(train)
    n_val = math.floor(n * fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(train.x.device)
    val, rest = order[:n_val], order[n_val:]
    # labels and factors go with their inputs
    return train.take(rest), drawn_once(train.take(val), transform, seed)


def drawn_once(split: Split, transform: BatchTransform | None, seed: int) -> Split:
    """``split`` with the dataset's ``batch_transform`` drawn once, seeded: inputs of the kind
    training sees (a dynamically binarised dataset stores grey levels and binarises each
    batch; its held-out and watched inputs are binarised once, as its own validation and test
    splits are, not left grey under a Bernoulli likelihood). Unchanged without one."""
    if transform is None:
        return split
    generator = torch.Generator(device=split.x.device).manual_seed(seed)
    return replace(split, x=transform(split.x, generator))


def empty_split(n: int, fraction: float) -> bool:
    """Whether holding out ``fraction`` of ``n`` samples leaves either side empty."""
    n_val = math.floor(n * fraction)
    return n_val < 1 or n - n_val < 1


@torch.no_grad()
def held_out_losses(
    model: nn.Module, x: Tensor, seed: int, *, loss: bool = True
) -> tuple[float | None, dict[str, float]]:
    """One pass over ``x`` in eval mode, its sampling seeded by ``seed``: the model's mean
    per-sample loss (None with ``loss=False``) and the means of the per-sample terms its
    ``loss_terms`` gives (a VAE's rate and distortion; {} for a model without it)."""
    terms_of = getattr(model, "loss_terms", None)
    if not loss and terms_of is None:
        return None, {}  # nothing to measure: no pass at all
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    term_sums: dict[str, Tensor] = {}
    # No graph: a model whose loss needs gradients (a gradient penalty) turns them on itself.
    with torch.no_grad(), seeded_on(x.device, seed):
        for batch in x.split(EVAL_BATCH):
            out = model(batch)
            if loss:
                loss_sum += model.loss(batch, out).double().sum()
            for name, value in (terms_of(batch, out) if terms_of is not None else {}).items():
                term_sums[name] = term_sums.get(name, 0) + value.double().sum()
    model.train(was_training)
    terms = {name: (total / len(x)).item() for name, total in term_sums.items()}
    return ((loss_sum / len(x)).item() if loss else None), terms


@dataclass
class EarlyStopping:
    """The lowest validation loss so far, its epoch and weights, and how many epochs since the
    last improvement by more than ``min_delta`` (what patience counts: a smaller one still makes
    the lowest loss, and its epoch the best, as ``best_epoch`` says).

    ``patience`` None: never stops, only keeps track of the best epoch.
    """

    patience: int | None = None
    min_delta: float = 0.0
    best: float = math.inf
    best_epoch: int = 0
    since: int = 0
    best_state: dict[str, Any] | None = field(default=None, repr=False)
    improved: float = math.inf  # the loss of the last improvement by more than min_delta

    def update(self, epoch: int, loss: float, model: nn.Module, keep_weights: bool) -> bool:
        """Record epoch ``epoch``'s loss; True when training should stop."""
        if loss < self.best:
            self.best, self.best_epoch = loss, epoch
            if keep_weights:
                self.best_state = copy.deepcopy(model.state_dict())
        if loss < self.improved - self.min_delta:
            self.improved, self.since = loss, 0
        else:
            self.since += 1
        return self.patience is not None and self.since >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "since": self.since,
            "best_state": self.best_state,
            "improved": self.improved,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.since, self.best_state = state["since"], state["best_state"]
        self.improved = state.get("improved", self.best)  # a checkpoint from before it was kept
