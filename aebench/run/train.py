"""Trains one model: Adam over shuffled batches; per-epoch curves; stops when the loss diverges.

The loop is meant to cost nothing over a hand-written one (benchmarks/perf holds it to that):
no host-device synchronisation inside an epoch (losses stay on the device until the epoch ends),
no penalty computed for a regularizer that has none, fused Adam where torch has it.

A model that owns extra parameters (a discriminator) declares ``auxiliary_parameters()`` and
``auxiliary_loss(x, out)``: they are left out of the main optimizer and trained by one of their
own after every main step (``aebench.auxiliary``). After training, a model with
``fit_ex_post(x)`` fits what it fits on its trained codes (an RAE's ex-post density).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from aebench.contract.data import Data, Split
from aebench.contract.model import ModelOutput, Regularizer
from aebench.estimators.precision import PRECISIONS, Precision
from aebench.estimators.precision import autocast as precision_autocast
from aebench.results.trials import LOSS_CURVES
from aebench.run import stopping
from aebench.run.auxiliary import (
    AUXILIARY_CURVE,
    AuxiliaryStep,
    auxiliary_parameters,
    main_parameters,
)
from aebench.run.checkpoint import Checkpoints
from aebench.run.data import shuffled_batches
from aebench.run.optim import make_optimizer, make_schedule
from aebench.run.threads import adjust as adjust_threads
from aebench.run.validation import EarlyStopping, held_out_losses

# A model's loss terms per epoch (a VAE's rate and distortion): on the validation split, else on
# this many training samples. 256 put the mean within about 0.2 nats for curves; 1,024 cost a
# VAE epoch 2% of its time over a bare loop (benchmarks/perf).
TERMS_SAMPLES = 256
CURVES = (*LOSS_CURVES, "lr")  # per epoch; lr: the learning rate it trained at

# (loss, model_loss, penalty) of one batch; penalty None when the regularizer has none.
Objective = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor | None]]


@dataclass
class TrainResult:
    curves: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CURVES})
    train_s: float = 0.0
    samples_per_s: float = float("nan")  # measured after a warm-up epoch when there is one
    diverged_at: int | None = None  # the epoch (1-based) whose loss was NaN or infinite
    # CUDA's peak allocation. NaN elsewhere: the CPU's peak RSS is the process's high-water mark,
    # set by whatever ran first, so after one trial every later one would read 0.
    peak_mem_mb: float = float("nan")
    resumed_after: int = 0  # the epoch of the checkpoint training resumed from (0: from scratch)
    stopped_epoch: int = 0  # the last epoch trained (early stopping may end before ``epochs``)
    best_epoch: int | None = None  # the epoch of the lowest validation loss (with validation)
    best_val_loss: float = float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def has_penalty(regularizer: Regularizer) -> bool:
    """Whether the regularizer overrides ``penalty``; the base class's is a constant zero."""
    return type(regularizer).penalty is not Regularizer.penalty


def make_objective(
    model: nn.Module,
    regularizer: Regularizer,
    device: torch.device,
    precision: Precision,
    keep: Callable[[ModelOutput], None] | None = None,
) -> Objective:
    """The forward pass and the batch's mean losses, under bf16 autocast when asked.

    ``keep`` is handed each forward pass's output (an auxiliary step trains on it)."""
    penalised = has_penalty(regularizer)
    autocast = functools.partial(precision_autocast, precision, device)

    def objective(x_in: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        with autocast():
            out = model(x_in)
            if keep is not None:
                keep(out)
            model_loss = model.loss(x, out).float().mean()
            if not penalised:
                return model_loss, model_loss, None
            penalty = regularizer.penalty(x_in, out, model).float().mean()
            return model_loss + penalty, model_loss, penalty

    return objective


def _batch_weights(n: int, batch_size: int, device: torch.device) -> Tensor:
    """Samples per batch of an epoch (all full but maybe the last): weights of the batch means."""
    steps = math.ceil(n / batch_size)
    weights = torch.full((steps,), float(batch_size), device=device)
    weights[-1] = n - batch_size * (steps - 1)
    return weights


def train_model(
    model: nn.Module,
    regularizer: Regularizer,
    data: Data,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    precision: Precision = "fp32",
    compile: bool = False,
    checkpoints: Checkpoints | None = None,
    optimizer: Mapping[str, Any] | None = None,
    schedule: Mapping[str, Any] | None = None,
    clip_norm: float | None = None,
    val: Split | None = None,
    early_stopping: Mapping[str, Any] | None = None,
    restore_best: bool = False,
    anneal: Mapping[str, Mapping[str, Any]] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data.train`` (already on its device).

    ``precision="bf16"`` runs the forward pass and the losses under bfloat16 autocast (weights and
    optimizer state stay float32); ``compile=True`` runs them through ``torch.compile``. With
    ``checkpoints``, training resumes from the last checkpoint there and saves one whenever it
    is due: a resumed run ends exactly as an uninterrupted one (on the CPU).

    With a validation split ``val``, its loss is a curve (``val_loss``); ``early_stopping``
    (``{"patience": N, "min_delta": d}``) ends training once it has not improved by ``d`` for
    ``N`` epochs; ``restore_best`` leaves the model with the weights of its best epoch. A
    ``plateau`` schedule follows the validation loss (the training loss without one).

    ``anneal`` (``{"beta": {"epochs": 100}}`` or ``{"steps": ...}``) warms each named loss weight
    of the model (an attribute it declares in ``annealed_weights``) up from 0 to its value,
    linearly; each weight's value per epoch (at its last step) is a curve of its own.

    A model with ``auxiliary_parameters()`` and ``auxiliary_loss(x, out)`` has those parameters
    trained by an optimizer of their own after every main step (``aebench.auxiliary``), its loss
    a curve (``auxiliary_loss``). A model with ``fit_ex_post(x)`` has it called once training
    ends, in eval mode without gradients, with the training inputs (as drawn, for data with a
    ``batch_transform``).

    Before every step, ``aebench.stopping.check()`` raises ``Interrupted`` after SIGTERM or
    Ctrl-C and ``TrialTimeout`` once the trial's time limit has passed.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    device = data.train.x.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores for float32 matmuls
        torch.cuda.reset_peak_memory_stats(device)
    settings = optimizer
    extra = auxiliary_parameters(model)  # None for a model without its own extra optimizer
    auxiliary: AuxiliaryStep | None = None
    if extra is None:  # the loop as it always was
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(model, lr, settings)
    else:  # the main optimizer leaves the auxiliary parameters to one of their own
        params = main_parameters(model, extra)
        optimizer = make_optimizer(params, lr, settings)
        autocast = functools.partial(precision_autocast, precision, device)
        auxiliary = AuxiliaryStep(
            model, extra, lr, settings, clip_norm=clip_norm, autocast=autocast
        )
    scheduler = make_schedule(optimizer, schedule, epochs)
    objective = make_objective(
        model, regularizer, device, precision, keep=None if auxiliary is None else auxiliary.keep
    )
    if compile:
        objective = torch.compile(objective)
    result = TrainResult()
    if val is not None:
        result.curves["val_loss"] = []
    if auxiliary is not None:
        result.curves[AUXILIARY_CURVE] = []
    watch = EarlyStopping(**dict(early_stopping or {}))
    anneal = dict(anneal or {})
    targets = {name: float(getattr(model, name)) for name in anneal}  # the values to reach
    for name in anneal:
        result.curves.setdefault(name, [])
    n = len(data.train)
    steps_per_epoch = math.ceil(n / batch_size)
    weights = _batch_weights(n, batch_size, device)
    timed_s, timed_samples, earlier_s = 0.0, 0, 0.0
    state = checkpoints.load() if checkpoints is not None else None
    if state is not None:
        _restore(state, model, optimizer, generator, device)
        if auxiliary is not None and "auxiliary_optimizer" in state:
            auxiliary.optimizer.load_state_dict(state["auxiliary_optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        watch.load_state_dict(state["watch"])
        result.curves = {name: list(values) for name, values in state["curves"].items()}
        timed_s, timed_samples = state["timed_s"], state["timed_samples"]
        earlier_s = state["train_s"]
        result.resumed_after = state["epoch"]
    start = time.perf_counter()
    for epoch in range(result.resumed_after + 1, epochs + 1):
        adjust_threads()  # "auto" threads follow the machine's load (aebench.threads)
        model.train()
        result.curves["lr"].append(optimizer.param_groups[0]["lr"])
        epoch_start = time.perf_counter()
        # Detached batch means stay on the device: one host sync per epoch, not one per step.
        losses: list[Tensor] = []
        model_losses: list[Tensor] = []
        penalties: list[Tensor] = []
        for step, index in enumerate(shuffled_batches(n, batch_size, generator)):
            # SIGTERM, Ctrl-C or the trial's time limit: acted on here, between steps, where
            # nothing is half-done (aebench.stopping).
            stopping.check()
            for name, spec in anneal.items():  # the weight of this step
                done = (
                    (epoch - 1) / spec["epochs"]
                    if spec.get("epochs")
                    else (((epoch - 1) * steps_per_epoch + step) / spec["steps"])
                )
                setattr(model, name, targets[name] * min(1.0, done))
            x = data.train.x.index_select(0, index)  # 4x faster than x[index] (measured)
            if data.batch_transform is not None:
                x = data.batch_transform(x, generator)
            loss, model_loss, penalty = objective(regularizer.corrupt(x, generator), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            optimizer.step()
            if auxiliary is not None:  # the model's own optimizer, after the main step
                auxiliary.step(x)
            losses.append(loss.detach())
            if penalty is not None:
                model_losses.append(model_loss.detach())
                penalties.append(penalty.detach())
        means = _epoch_means(losses, model_losses, penalties, weights, n)
        epoch_s = time.perf_counter() - epoch_start
        for name, value in zip(LOSS_CURVES, means, strict=True):
            result.curves[name].append(value)
        for name in anneal:
            result.curves[name].append(float(getattr(model, name)))
        if auxiliary is not None:
            result.curves[AUXILIARY_CURVE].append(auxiliary.epoch_mean(weights, n))
        result.stopped_epoch = epoch
        if not math.isfinite(means[0]):
            result.diverged_at = epoch
            break
        if epoch > 1 or epochs == 1:  # the first epoch warms up (allocations, kernels)
            timed_s += epoch_s
            timed_samples += n
        watched = val.x if val is not None else data.train.x[:TERMS_SAMPLES]
        seed = generator.initial_seed() + epoch
        val_loss, terms = held_out_losses(model, watched, seed, loss=val is not None)
        for name, value in terms.items():
            result.curves.setdefault(name, []).append(value)
        stop = False
        if val_loss is not None:
            result.curves["val_loss"].append(val_loss)
            stop = watch.update(epoch, val_loss, model, keep_weights=restore_best)
        if isinstance(scheduler, ReduceLROnPlateau):  # the rate of the next epoch
            scheduler.step(val_loss if val_loss is not None else means[0])
        else:
            scheduler.step()
        if stop:
            break
        if checkpoints is not None and epoch < epochs and checkpoints.due(epoch):
            trained_s = earlier_s + time.perf_counter() - start
            own = {} if auxiliary is None else {"auxiliary_optimizer": auxiliary.optimizer}
            checkpoints.save(
                _snapshot(model, optimizer, generator, device)
                | {name: o.state_dict() for name, o in own.items()}
                | {"scheduler": scheduler.state_dict(), "watch": watch.state_dict()}
                | {"epoch": epoch, "train_s": trained_s}
                | {"curves": result.curves, "timed_s": timed_s, "timed_samples": timed_samples}
            )
    _sync(device)
    result.train_s = earlier_s + time.perf_counter() - start
    for name, target in targets.items():  # measured with the weight it was configured with
        setattr(model, name, target)
    if val is not None and watch.best_epoch:
        result.best_epoch, result.best_val_loss = watch.best_epoch, watch.best
        if restore_best and watch.best_state is not None:
            model.load_state_dict(watch.best_state)
    if result.diverged_at is None and hasattr(model, "fit_ex_post"):
        fit_ex_post(model, data, generator)
    if device.type == "cuda":
        result.peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20
    if timed_s > 0:
        result.samples_per_s = timed_samples / timed_s
    return result


def fit_ex_post(model: nn.Module, data: Data, generator: torch.Generator) -> None:
    """Call the model's ``fit_ex_post`` with the training inputs, in eval mode, no gradients.

    A ``batch_transform`` draws them as training did, from a generator of the trial's seed of
    its own, so that the trial's stream is left as it was."""
    x = data.train.x
    if data.batch_transform is not None:
        own = torch.Generator(device=generator.device).manual_seed(generator.initial_seed())
        x = data.batch_transform(x, own)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model.fit_ex_post(x)
    model.train(was_training)


def _snapshot(
    model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator, device
) -> dict:
    """What the rest of training depends on, besides the epoch and the curves."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),  # the global stream: a VAE's samples come from it
    }
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def _restore(
    state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, generator, device
) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def _epoch_means(
    losses: list[Tensor],
    model_losses: list[Tensor],
    penalties: list[Tensor],
    weights: Tensor,
    n: int,
) -> list[float]:
    """(loss, model_loss, penalty) averaged over the epoch's samples: the one sync per epoch."""
    if penalties:
        per_batch = torch.stack(
            [torch.stack(losses), torch.stack(model_losses), torch.stack(penalties)]
        )
    else:  # no penalty: the model's loss is the loss
        loss = torch.stack(losses)
        per_batch = torch.stack([loss, loss, torch.zeros_like(loss)])
    return ((per_batch.double() * weights.double()).sum(1) / n).tolist()
