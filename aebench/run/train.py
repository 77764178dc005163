"""Trains one model as its trial's ``[train]`` section says (a ``TrainSection``, taken whole):
the optimizer over shuffled batches, per-epoch curves, stopping when the loss diverges.

The loop is meant to cost nothing over a hand-written one (benchmarks/perf holds it to that):
no host-device synchronisation inside an epoch (losses stay on the device until the epoch ends),
no penalty computed for a regularizer that has none, fused Adam where torch has it.

A model that owns extra parameters (a discriminator) declares ``auxiliary_parameters()`` and
``auxiliary_loss(x, out)``: they are left out of the main optimizer and trained by one of their
own after every main step (``aebench.run.auxiliary``). After training, a model with
``fit_ex_post(x)`` fits what it fits on its trained codes (an RAE's ex-post density).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from aebench.contract.checks import distribution_checks_off
from aebench.contract.data import Data, Split
from aebench.contract.model import ModelOutput, Regularizer
from aebench.estimators.precision import PRECISIONS, Precision
from aebench.estimators.precision import autocast as precision_autocast
from aebench.results.trials import LOSS_CURVES
from aebench.run import epoch_reports, stopping
from aebench.run.auxiliary import (
    AUXILIARY_CURVE,
    AuxiliaryStep,
    auxiliary_parameters,
    main_parameters,
)
from aebench.run.checkpoint import Checkpoints, checkpoint_state, restore_checkpoint
from aebench.run.data import shuffled_batches
from aebench.run.optim import make_optimizer, make_schedule
from aebench.run.sections import AnnealSection, TrainSection
from aebench.run.start import start_digest
from aebench.run.threads import adjust as adjust_threads
from aebench.run.validation import EarlyStopping, drawn_once, held_out_losses

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
    start_digest: str = ""  # of the weights training started from (``aebench.run.start``)
    stack_group: str = ""  # trained stacked with others: the group's id (``aebench.run.stacked``)


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


def watched_inputs(data: Data, generator: torch.Generator) -> Tensor:
    """The training inputs whose loss terms each epoch records where there is no validation
    split: the first ``TERMS_SAMPLES``, as training sees them (``drawn_once``, seeded by the
    trial: the same inputs every epoch)."""
    first = Split(data.train.x[:TERMS_SAMPLES])
    return drawn_once(first, data.batch_transform, generator.initial_seed()).x


def train_model(
    model: nn.Module,
    regularizer: Regularizer,
    data: Data,
    settings: TrainSection,
    *,
    generator: torch.Generator,
    checkpoints: Checkpoints | None = None,
    val: Split | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data.train`` (already on its device), as ``settings`` (the
    trial's ``[train]`` section) say: epochs, batch size, optimizer, schedule, clipping.

    ``precision="bf16"`` runs the forward pass and the losses under bfloat16 autocast (weights and
    optimizer state stay float32); ``compile`` runs them through ``torch.compile``. With
    ``checkpoints``, training resumes from the last checkpoint there and saves one whenever it
    is due: a resumed run ends exactly as an uninterrupted one (on the CPU).

    With a validation split ``val``, its loss is a curve (``val_loss``); ``early_stopping`` ends
    training once it has not improved by ``min_delta`` for ``patience`` epochs; ``restore_best``
    leaves the model with the weights of its best epoch. A ``plateau`` schedule follows the
    validation loss (the training loss without one).

    ``anneal`` warms each named loss weight of the model (an attribute it declares in
    ``annealed_weights``) up from 0 to its value, linearly, over epochs or steps; each weight's
    value per epoch (at its last step) is a curve of its own.

    A model with ``auxiliary_parameters()`` and ``auxiliary_loss(x, out)`` has those parameters
    trained by an optimizer of their own after every main step (``aebench.run.auxiliary``), its
    loss a curve (``auxiliary_loss``). A model with ``fit_ex_post(x)`` has it called once training
    ends, in eval mode without gradients, with the training inputs (as drawn, for data with a
    ``batch_transform``).

    Before every step, ``aebench.run.stopping.check()`` raises ``Interrupted`` after SIGTERM or
    Ctrl-C and ``TrialTimeout`` once the trial's time limit has passed.
    """
    training = Training(model, regularizer, data, settings, generator, val, checkpoints)
    with distribution_checks_off():
        for epoch in range(training.result.resumed_after + 1, settings.epochs + 1):
            if not training.run_epoch(epoch):  # diverged, or stopped early
                break
            training.save_if_due(epoch)
        return training.finish()


class Annealing:
    """Loss weights of the model warmed up linearly from 0 to the values it was built with."""

    def __init__(
        self, model: nn.Module, anneal: dict[str, AnnealSection], steps_per_epoch: int
    ) -> None:
        self.model = model
        self.anneal = anneal
        self.steps_per_epoch = steps_per_epoch
        self.targets = {name: float(getattr(model, name)) for name in anneal}  # values to reach

    def __bool__(self) -> bool:
        return bool(self.anneal)

    def set(self, epoch: int, step: int) -> None:
        """The weights of this step of this epoch (both counted from 1 and 0)."""
        for name, spec in self.anneal.items():
            done = (
                (epoch - 1) / spec.epochs
                if spec.epochs
                else (((epoch - 1) * self.steps_per_epoch + step) / spec.steps)
            )
            setattr(self.model, name, self.targets[name] * min(1.0, done))

    def current(self) -> dict[str, float]:
        return {name: float(getattr(self.model, name)) for name in self.anneal}

    def restore(self) -> None:
        """The configured values back: the model is measured with them."""
        for name, target in self.targets.items():
            setattr(self.model, name, target)

    @contextmanager
    def at_targets(self) -> Iterator[None]:
        """The configured values while inside, the warm-up's after: every epoch's validation
        loss on one scale, the one the model is measured at (a loss at a rising weight made
        later epochs look no better, and early stopping restored a half-warmed model)."""
        now = self.current()
        self.restore()
        try:
            yield
        finally:
            for name, value in now.items():
                setattr(self.model, name, value)


class Training:
    """One model's training under way: its optimizers, schedule, curves and clocks, epoch by
    epoch (``train_model`` drives it)."""

    def __init__(
        self,
        model: nn.Module,
        regularizer: Regularizer,
        data: Data,
        settings: TrainSection,
        generator: torch.Generator,
        val: Split | None,
        checkpoints: Checkpoints | None,
    ) -> None:
        if settings.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {settings.precision!r}"
            )
        self.model, self.regularizer, self.data = model, regularizer, data
        self.settings, self.generator, self.val = settings, generator, val
        self.checkpoints = checkpoints
        self.device = device = data.train.x.device
        self.tf32 = torch.backends.cuda.matmul.allow_tf32  # given back in finish: metrics in fp32
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores for float32 matmuls
            torch.cuda.reset_peak_memory_stats(device)
        self._make_optimizers()
        self.scheduler = make_schedule(self.optimizer, settings)
        keep = None if self.auxiliary is None else self.auxiliary.keep
        objective = make_objective(model, regularizer, device, settings.precision, keep=keep)
        compiled = settings.compiles(len(data.train))
        self.objective = torch.compile(objective) if compiled else objective
        rule = settings.early_stopping
        self.watch = EarlyStopping(rule.patience, rule.min_delta) if rule else EarlyStopping()
        self.n = len(data.train)
        self.annealing = Annealing(model, settings.anneal, math.ceil(self.n / settings.batch_size))
        self.weights = _batch_weights(self.n, settings.batch_size, device)
        # The start's digest, taken before a checkpoint's weights replace the start (``_resume``)
        self.result = TrainResult(start_digest=start_digest(model))
        own_curves = ["val_loss"] if val is not None else []
        own_curves += [AUXILIARY_CURVE] if self.auxiliary is not None else []
        for name in [*own_curves, *settings.anneal]:
            self.result.curves.setdefault(name, [])
        self.timed_s, self.timed_samples, self.earlier_s = 0.0, 0, 0.0
        state = checkpoints.load() if checkpoints is not None else None
        if state is not None:
            self._resume(state)
        self.start = time.perf_counter()

    def _make_optimizers(self) -> None:
        """The main optimizer, and the auxiliary step of a model that trains parameters apart."""
        model, settings = self.model, self.settings
        extra = auxiliary_parameters(model)  # None for a model without its own extra optimizer
        self.auxiliary: AuxiliaryStep | None = None
        if extra is None:  # the loop as it always was
            self.params = [p for p in model.parameters() if p.requires_grad]
            self.optimizer = make_optimizer(model, settings)
            return
        # The main optimizer leaves the auxiliary parameters to one of their own.
        self.params = main_parameters(model, extra)
        self.optimizer = make_optimizer(self.params, settings)
        autocast = functools.partial(precision_autocast, settings.precision, self.device)
        self.auxiliary = AuxiliaryStep(model, extra, settings, autocast=autocast)

    def _resume(self, state: dict[str, Any]) -> None:
        restore_checkpoint(state, self.model, self.optimizer, self.generator, self.device)
        if self.auxiliary is not None and "auxiliary_optimizer" in state:
            self.auxiliary.optimizer.load_state_dict(state["auxiliary_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.watch.load_state_dict(state["watch"])
        self.result.curves = {name: list(values) for name, values in state["curves"].items()}
        self.timed_s, self.timed_samples = state["timed_s"], state["timed_samples"]
        self.earlier_s = state["train_s"]
        self.result.resumed_after = state["epoch"]

    def run_epoch(self, epoch: int) -> bool:
        """Train one epoch and record its curves; False when training ends here (the loss
        diverged, or early stopping)."""
        adjust_threads()  # "auto" threads follow the machine's load (aebench.threads)
        curves, result = self.result.curves, self.result
        curves["lr"].append(self.optimizer.param_groups[0]["lr"])
        epoch_start = time.perf_counter()
        means = self._train_epoch(epoch)
        epoch_s = time.perf_counter() - epoch_start
        for name, value in zip(LOSS_CURVES, means, strict=True):
            curves[name].append(value)
        for name, value in self.annealing.current().items():
            curves[name].append(value)
        if self.auxiliary is not None:
            curves[AUXILIARY_CURVE].append(self.auxiliary.epoch_mean(self.weights, self.n))
        result.stopped_epoch = epoch
        if not math.isfinite(means[0]):
            result.diverged_at = epoch
            return False
        # each process's first epoch warms up (allocations, a compile): timed only if the only one
        warm = epoch > self.result.resumed_after + 1
        if warm or (epoch == self.settings.epochs and self.timed_samples == 0):
            self.timed_s += epoch_s
            self.timed_samples += self.n
        return not self._after_epoch(epoch, means[0])

    def _train_epoch(self, epoch: int) -> list[float]:
        """The steps of one epoch; its (loss, model_loss, penalty) means."""
        model, data, generator = self.model, self.data, self.generator
        optimizer, auxiliary, annealing = self.optimizer, self.auxiliary, self.annealing
        clip_norm = self.settings.clip_norm
        model.train()
        # Detached batch means stay on the device: one host sync per epoch, not one per step.
        losses: list[Tensor] = []
        model_losses: list[Tensor] = []
        penalties: list[Tensor] = []
        for step, index in enumerate(shuffled_batches(self.n, self.settings.batch_size, generator)):
            # SIGTERM, Ctrl-C or the trial's time limit: acted on here, between steps, where
            # nothing is half-done (aebench.stopping).
            stopping.check()
            if annealing:
                annealing.set(epoch, step)
            x = data.train.x.index_select(0, index)  # 4x faster than x[index] (measured)
            if data.batch_transform is not None:
                x = data.batch_transform(x, generator)
            loss, model_loss, penalty = self.objective(self.regularizer.corrupt(x, generator), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.params, clip_norm)
            optimizer.step()
            if auxiliary is not None:  # the model's own optimizer, after the main step
                auxiliary.step(x)
            losses.append(loss.detach())
            if penalty is not None:
                model_losses.append(model_loss.detach())
                penalties.append(penalty.detach())
        return _epoch_means(losses, model_losses, penalties, self.weights, self.n)

    def _after_epoch(self, epoch: int, loss: float) -> bool:
        """The held-out losses, early stopping and the next epoch's rate; True to stop."""
        val = self.val
        seed = self.generator.initial_seed() + epoch
        watched = val.x if val is not None else watched_inputs(self.data, self.generator)
        with self.annealing.at_targets():
            val_loss, terms = held_out_losses(self.model, watched, seed, loss=val is not None)
        for name, value in terms.items():
            self.result.curves.setdefault(name, []).append(value)
        stop = False
        if val_loss is not None:
            self.result.curves["val_loss"].append(val_loss)
            epoch_reports.report(epoch, val_loss)  # a search's pruner listens
            keep = self.settings.restore_best
            stop = self.watch.update(epoch, val_loss, self.model, keep_weights=keep)
        if isinstance(self.scheduler, ReduceLROnPlateau):  # the rate of the next epoch
            self.scheduler.step(val_loss if val_loss is not None else loss)
        else:
            self.scheduler.step()
        return stop

    def save_if_due(self, epoch: int) -> None:
        """A checkpoint after ``epoch`` when one is due (never after the last)."""
        checkpoints = self.checkpoints
        if checkpoints is None or epoch >= self.settings.epochs or not checkpoints.due(epoch):
            return
        trained_s = self.earlier_s + time.perf_counter() - self.start
        auxiliary = self.auxiliary
        own = {} if auxiliary is None else {"auxiliary_optimizer": auxiliary.optimizer}
        checkpoints.save(
            checkpoint_state(
                self.model,
                self.optimizer,
                self.generator,
                self.scheduler,
                self.watch,
                epoch=epoch,
                train_s=trained_s,
                curves=self.result.curves,
                timed=(self.timed_s, self.timed_samples),
            )
            | {name: o.state_dict() for name, o in own.items()}
        )

    def finish(self) -> TrainResult:
        """The result, the configured loss weights back, the best weights where asked, and the
        model's ex-post fit."""
        model, device, result, watch = self.model, self.device, self.result, self.watch
        _sync(device)
        result.train_s = self.earlier_s + time.perf_counter() - self.start
        self.annealing.restore()  # measured with the weights it was configured with
        if self.val is not None and watch.best_epoch:
            result.best_epoch, result.best_val_loss = watch.best_epoch, watch.best
            if self.settings.restore_best and watch.best_state is not None:
                model.load_state_dict(watch.best_state)
        if result.diverged_at is None and hasattr(model, "fit_ex_post"):
            fit_ex_post(model, self.data, self.generator)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            result.peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20
        if self.timed_s > 0:
            result.samples_per_s = self.timed_samples / self.timed_s
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
