"""Models that own extra optimizer steps: a discriminator, a critic, anything trained apart.

A model opts in with two methods (docs/plugins.md, "Auxiliary parameters"):

- ``auxiliary_parameters() -> Iterable[nn.Parameter]``: parameters of the model (so that its
  ``state_dict`` keeps them) that the main optimizer leaves out;
- ``auxiliary_loss(x, out) -> Tensor``: ``(B,)`` or a scalar, whose mean the core minimises over
  those parameters with an optimizer of their own, right after every main step, on that step's
  output ``out`` detached (so it trains the auxiliary parameters only).

The auxiliary optimizer is the trial's kind with its ``[train]`` settings and rate, except where
the model's optional ``auxiliary_optimizer`` mapping says otherwise (``{"lr": 1e-4, "betas":
(0.5, 0.9)}``); its rate stays constant (the trial's schedule is the main optimizer's). Models
without the two methods never reach this module: their training loop is the one it always was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from aebench.contract.model import ModelOutput
from aebench.run.optim import make_optimizer
from aebench.run.sections import TrainSection

AUXILIARY_CURVE = "auxiliary_loss"  # its per-epoch mean, a training curve of its own


def auxiliary_parameters(model: nn.Module) -> list[nn.Parameter] | None:
    """The trainable parameters the model trains with its own loss, or None without the hook."""
    declared = getattr(model, "auxiliary_parameters", None)
    if declared is None:
        return None
    if not callable(declared) or not callable(getattr(model, "auxiliary_loss", None)):
        raise TypeError(
            f"{type(model).__name__} declares auxiliary_parameters but no auxiliary_loss(x, out)"
            " method: a model that owns extra parameters gives both"
        )
    return [p for p in declared() if p.requires_grad]


def main_parameters(model: nn.Module, auxiliary: list[nn.Parameter] | None) -> list[nn.Parameter]:
    """The trainable parameters the main optimizer steps: all but the auxiliary ones."""
    left_out = {id(p) for p in auxiliary or ()}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in left_out]


def detached(out: ModelOutput) -> ModelOutput:
    """``out`` cut from the main step's graph: the auxiliary loss cannot reach the main weights."""
    return ModelOutput(
        code=out.code.detach(),
        recon=out.recon.detach(),
        hidden=None if out.hidden is None else out.hidden.detach(),
        extras={k: v.detach() if isinstance(v, Tensor) else v for k, v in out.extras.items()},
    )


class AuxiliaryStep:
    """The second optimizer of a model that owns one, and its step after each main step.

    ``keep(out)`` is called by the objective with the main forward pass's output; ``step(x)``
    then minimises the mean of ``model.auxiliary_loss(x, detached(out))``.
    """

    def __init__(
        self,
        model: nn.Module,
        params: list[nn.Parameter],
        settings: TrainSection,
        *,
        autocast: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        if not params:
            raise ValueError(f"{type(model).__name__}.auxiliary_parameters() gave no parameters")
        overrides: Mapping[str, Any] = getattr(model, "auxiliary_optimizer", None) or {}
        self.model = model
        self.params = params
        self.optimizer = make_optimizer(params, settings.model_copy(update=dict(overrides)))
        self.clip_norm = settings.clip_norm  # the trial's, whatever the model overrides
        self.autocast = autocast
        self.out: ModelOutput | None = None
        self.losses: list[Tensor] = []  # detached batch means: synchronised once per epoch

    def keep(self, out: ModelOutput) -> None:
        self.out = out

    def step(self, x: Tensor) -> None:
        assert self.out is not None, "the objective keeps the output before the step"
        out, self.out = detached(self.out), None
        with self.autocast():
            loss = self.model.auxiliary_loss(x, out).float().mean()
        # The main backward left gradients on these parameters (a generator's loss goes through
        # the discriminator); they are dropped, not applied: only this loss trains them.
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.optimizer.step()
        self.losses.append(loss.detach())

    def epoch_mean(self, weights: Tensor, n: int) -> float:
        """The epoch's loss averaged over its samples; resets the batch means."""
        losses, self.losses = self.losses, []
        if not losses:  # no step was taken
            return float("nan")
        return float((torch.stack(losses).double() * weights.double()).sum() / n)
