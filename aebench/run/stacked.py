"""Trials trained together: the seeds of one configuration as one stacked model.

Trials that differ only in their seed (same dataset, model, regularizer and ``[train]``) train as
one model whose parameters carry a leading trial dimension (``torch.func.stack_module_state``),
its forward pass and loss mapped over it (``torch.vmap``, ``randomness="different"``): one batched
GEMM per layer instead of one small GEMM per trial. Each trial keeps what it has alone:

- its initial weights (torch seeded with its seed before its model is built, as alone);
- its batches: its own generator, seeded with its seed, orders its epochs (``shuffled_batches``)
  and draws its ``batch_transform`` and ``corrupt``, as alone;
- its optimizer state: Adam, AdamW and SGD are elementwise, so one optimizer over the stacked
  parameters is one per trial (equal settings: the group shares its ``[train]``);
- its curves, its model (rebuilt from its slice of the stacked weights, measured alone by
  ``trained_row``, as ``run_trial`` measures) and its row;
- its checkpoint, about once a minute, in its folder, as alone (``stacked_checkpoints``): a
  killed group resumes together from them (alone where they differ in epoch).

The model's own noise (a VAE's reparameterisation) is drawn for all the trials at once, so a
stacked trial's numbers are not those of the same trial alone: the same distribution, not the
same draws (tests/run/test_stacked.py holds it to that). Hence ``[train] stack`` is off unless a
suite asks (``"auto"``).

A model opts in with a class attribute ``stackable = True`` (its forward pass and loss are
vmap-able: no data-dependent Python control flow, no ``.item()``). One that also declares
``independent_samples = True`` (an MLP whose samples' losses are their own: the built-in ``ae``
and ``vae``) trains without vmap, the group's batches as one batch through batched GEMMs
(``aebench.run.stacked_rows``): on one thread of the shared 2-core machine, 8 Burda VAE seeds
trained at 1.2-2.4x the samples/s of the same trials one after another (vmap: 0.8-1.1x),
benchmarks/perf/test_stacked_training.py.

What stacked training does not do falls back to training each trial alone (``stack_key`` and
``_prepare`` say which): early stopping and a restored best epoch, a held-out fraction,
annealing, a plateau schedule, gradient clipping, bf16, ``compile = true`` (``"auto"`` gives way
to stacking, which pays more: 2.2-2.3x against compile's 1.10x on the Burda VAE), checkpoints
every N epochs, a model's auxiliary optimizer, a regularizer's penalty, isolation, a time limit,
a search's pruner. A group whose stacked training raises trains its trials alone, one by one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from aebench.contract.checks import check_first_batch, distribution_checks_off
from aebench.contract.data import Data
from aebench.contract.model import Regularizer
from aebench.plugins.blame import failure_reason
from aebench.results.trials import CHECKPOINT, trial_folder
from aebench.run import epoch_reports, stacked_checkpoints, stopping
from aebench.run.auxiliary import auxiliary_parameters
from aebench.run.checkpoint import Checkpoints
from aebench.run.data import shuffled_batches
from aebench.run.observing import Row, TrialOutcome
from aebench.run.optim import make_optimizer, make_schedule
from aebench.run.plan import wrong_kind
from aebench.run.sections import PlateauSchedule, TrainSection
from aebench.run.stacked_rows import GroupBatches, RowsEngine, Slicer, rows_engine
from aebench.run.start import start_digest
from aebench.run.suite import NOT_TRAINING, Trial
from aebench.run.threads import adjust as adjust_threads
from aebench.run.train import TrainResult, fit_ex_post, has_penalty, watched_inputs
from aebench.run.trial import base_row, trained_row
from aebench.run.validation import EarlyStopping, held_out_losses

if TYPE_CHECKING:
    from aebench.run.executors import Workload

log = logging.getLogger("aebench")

MAX_GROUP = 32  # trials per stacked model: memory grows with the group
STACKABLE = "stackable"  # the model class attribute that opts in

Finished = tuple[Trial, Row, TrialOutcome]


def stack_key(trial: Trial, work: Workload, isolate: bool | None) -> str | None:
    """What a trial shares with those it may train with (everything it is but its seed and its
    evaluation), or None where it trains alone: ``stack`` off, or a feature stacked training
    does not have (the module's docstring lists them)."""
    if work.isolate if isolate is None else isolate:  # each trial in a process of its own
        return None
    settings = trial.settings()
    alone = (
        settings.stack != "auto"
        or work.timeout is not None
        or epoch_reports._listener.get() is not None  # a search's pruner hears one trial
        or not _stackable_settings(settings)
        or not getattr(work.plugins.models.get(trial.model.plugin).factory, STACKABLE, False)
    )
    if alone:
        return None
    config = {k: v for k, v in trial.config().items() if k not in ("seed", "eval")}
    config["train"] = {k: v for k, v in trial.train.items() if k not in NOT_TRAINING}
    return json.dumps(config, sort_keys=True, default=str)


def _stackable_settings(settings: TrainSection) -> bool:
    return (
        settings.early_stopping is None
        and not settings.restore_best
        and settings.val_fraction == 0
        and not settings.anneal
        and not isinstance(settings.schedule, PlateauSchedule)  # follows each trial's loss
        and settings.clip_norm is None  # a norm over each trial's gradients
        and settings.precision == "fp32"
        and settings.compile is not True  # "auto": stacked instead, uncompiled
        and settings.checkpoint_every is None  # asked for checkpoints: trains alone, keeps them
    )


def groups(work: Workload, isolate: bool | None = None) -> list[list[Trial]]:
    """The trials in groups trained together, in the order their first trial comes; a trial
    that trains alone is a group of one."""
    out: list[list[Trial]] = []
    open_groups: dict[str, list[Trial]] = {}
    for trial in work.trials:
        key = stack_key(trial, work, isolate)
        group = open_groups.get(key) if key is not None else None
        if group is None or len(group) >= MAX_GROUP:
            group = [trial]
            out.append(group)
            if key is not None:
                open_groups[key] = group
        else:
            group.append(trial)
    return out


@dataclass
class Prepared:
    """A trial ready to train in a group: its model built and fitted as ``run_trial`` builds it,
    its generator, regularizer and data."""

    trial: Trial
    model: nn.Module
    regularizer: Regularizer
    data: Data
    generator: torch.Generator
    checkpoints: Checkpoints | None = None  # its own, in its folder (stacked_checkpoints)
    resumed: dict[str, Any] | None = None  # the checkpoint it resumes from
    watch: EarlyStopping = field(default_factory=EarlyStopping)  # the best validation epoch


def _prepare(trial: Trial, work: Workload) -> Prepared | None:
    """The trial built as alone, with its checkpoint if it has one; None where it must train
    alone (``run_trial`` then records its skip or its failure as it would)."""
    device, plugins = work.device, work.plugins
    checkpoints = None
    if work.output is not None:
        path = trial_folder(work.output, trial.id) / CHECKPOINT
        checkpoints = Checkpoints(path, trial.id, root=work.output)
    try:
        data = work.cache.get(trial.dataset, device)
        model_entry = plugins.models.get(trial.model.plugin)
        if wrong_kind(model_entry, data.info):
            return None
        torch.manual_seed(trial.seed)  # the model's initial weights, as alone
        model = model_entry.factory(data.info, **trial.model.params).to(device)
        regularizer = plugins.regularizers.get(trial.regularizer.plugin).factory(
            **trial.regularizer.params
        )
        settings = trial.settings()
        x = data.train.x[: settings.batch_size]
        if (
            regularizer.decline(model, data.info)
            or has_penalty(regularizer)
            or auxiliary_parameters(model) is not None
            or check_first_batch(model, regularizer, data.info, x)
        ):
            return None
        generator = torch.Generator(device=device).manual_seed(trial.seed)
        if hasattr(model, "fit_before_training"):
            with torch.no_grad():
                model.fit_before_training(data.train.x)
    except Exception:  # alone, it fails with its plugin blamed
        return None
    resumed = checkpoints.load() if checkpoints is not None else None  # (unreadable: starts over)
    return Prepared(trial, model, regularizer, data, generator, checkpoints, resumed)


class _Objective(nn.Module):
    """One trial's batch-mean loss as a module's forward pass, so that ``functional_call`` runs
    the model's ``loss`` (which reads its buffers) with the trial's slice too."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_in: Tensor, x: Tensor) -> Tensor:
        return self.model.loss(x, self.model(x_in)).float().mean()


class VmapEngine:
    """The group as stacked parameters (``stack_module_state``), the model's forward pass and
    loss mapped over them (``torch.vmap``): any stackable model."""

    def __init__(self, models: list[nn.Module]) -> None:
        self.models = models
        self.objective = _Objective(models[0])
        params, buffers = stack_module_state(models)  # type: ignore[arg-type]
        self.params = {f"model.{k}": v for k, v in params.items()}
        self.buffers = {f"model.{k}": v for k, v in buffers.items()}
        self.mapped = torch.vmap(self._one, in_dims=(0, 0, 0, 0), randomness="different")

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def backward(self, losses: Tensor) -> None:
        """The gradients of the step's losses (the last step's cleared first)."""
        for param in self.params.values():
            param.grad = None
        losses.sum().backward()

    def losses(self, x_in: Tensor, x: Tensor) -> Tensor:
        """Each trial's batch-mean loss, (S,), from its rows of (S, B, ...) inputs."""
        return self.mapped(self.params, self.buffers, x_in, x)

    def _one(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x_in, x) -> Tensor:
        return functional_call(self.objective, (params, buffers), (x_in, x))

    def trial_parameters(self, i: int) -> Iterator[tuple[str, Tensor, Slicer]]:
        """Per stacked parameter: trial i's own parameter's name, and how to take its part."""
        for key, param in self.params.items():
            yield key.removeprefix("model."), param, lambda t: t[i]

    @torch.no_grad()
    def unstack(self) -> None:
        """Each trial's model gets its slice of the stacked weights."""
        for i, model in enumerate(self.models):
            state = {k.removeprefix("model."): v[i] for k, v in self.params.items()}
            state |= {k.removeprefix("model."): v[i] for k, v in self.buffers.items()}
            model.load_state_dict(state)


class StackedTraining:
    """The group's training: one optimizer over the stacked parameters, each trial's batches
    from its own generator, each trial's curves. The model as one batch through batched GEMMs
    where it can (``stacked_rows``), else vmapped (``VmapEngine``)."""

    def __init__(self, group: list[Prepared], settings: TrainSection) -> None:
        self.group, self.settings = group, settings
        starts = [start_digest(p.model) for p in group]  # before checkpoints replace the starts
        alone = stacked_checkpoints.restore_trials(group, settings)  # before their weights stack
        models = [p.model for p in group]
        for model in models:
            model.train()
        rows = rows_engine(models)
        self.engine: RowsEngine | VmapEngine = rows if rows is not None else VmapEngine(models)
        self.optimizer = make_optimizer(self.engine.parameters(), settings)
        self.scheduler = make_schedule(self.optimizer, settings)
        data = group[0].data
        self.n = len(data.train)
        steps = math.ceil(self.n / settings.batch_size)
        weights = torch.full((steps,), float(settings.batch_size), dtype=torch.float64)
        weights[-1] = self.n - settings.batch_size * (steps - 1)
        self.weights = weights.to(data.train.x.device)
        self.batches = GroupBatches([(p.data, p.regularizer, p.generator) for p in group])
        self.results = [TrainResult(start_digest=start) for start in starts]
        self.timed_s, self.timed_samples, self.earlier_s = 0.0, 0, 0.0
        self.resumed_after = stacked_checkpoints.resume_group(self, alone)

    def run(self) -> list[TrainResult]:
        settings, results = self.settings, self.results
        self.start = start = time.perf_counter()
        for epoch in range(self.resumed_after + 1, settings.epochs + 1):
            adjust_threads()
            lr = self.optimizer.param_groups[0]["lr"]
            epoch_start = time.perf_counter()
            means = self._train_epoch()
            epoch_s = time.perf_counter() - epoch_start
            if epoch > 1 or settings.epochs == 1:
                self.timed_s += epoch_s
                self.timed_samples += self.n
            self.engine.unstack()
            for i, (prepared, result) in enumerate(zip(self.group, results, strict=True)):
                if result.diverged_at is None:
                    self._record(prepared, result, epoch, lr, means[i])
            if all(r.diverged_at is not None for r in results):
                break
            self.scheduler.step()
            stacked_checkpoints.save_if_due(self, epoch)
        return self._finish(self.earlier_s + time.perf_counter() - start)

    def _train_epoch(self) -> list[float]:
        size = self.settings.batch_size
        orders = [shuffled_batches(self.n, size, p.generator) for p in self.group]
        losses: list[Tensor] = []
        for x_in, x in self.batches.steps(orders):
            stopping.check()
            loss = self.engine.losses(x_in, x)  # (S,)
            self.engine.backward(loss)
            self.optimizer.step()
            losses.append(loss.detach())
        per_step = torch.stack(losses).double()  # (steps, S): one sync per epoch
        return ((per_step * self.weights[:, None]).sum(0) / self.n).tolist()

    def _record(
        self, prepared: Prepared, result: TrainResult, epoch: int, lr: float, loss: float
    ) -> None:
        """The trial's curves of this epoch, as alone: lr, the losses (no penalty), the loss
        terms on the dataset's validation split (and its loss there, ``val_loss``) or on
        ``TERMS_SAMPLES`` training samples."""
        curves = result.curves
        curves["lr"].append(lr)
        for name, value in (("loss", loss), ("model_loss", loss), ("penalty", 0.0)):
            curves[name].append(value)
        result.stopped_epoch = epoch
        if not math.isfinite(loss):
            result.diverged_at = epoch
            return
        val = prepared.data.val
        watched = val.x if val is not None else watched_inputs(prepared.data, prepared.generator)
        seed = prepared.generator.initial_seed() + epoch
        model = prepared.model
        val_loss, terms = held_out_losses(model, watched, seed, loss=val is not None)
        for name, value in terms.items():
            curves.setdefault(name, []).append(value)
        if val_loss is not None:
            curves.setdefault("val_loss", []).append(val_loss)
            prepared.watch.update(epoch, val_loss, model, keep_weights=False)

    def _finish(self, train_s: float) -> list[TrainResult]:
        """The results; the group's time is shared among its trials (each trial's ``train_s``
        and samples/s are its share, what it cost), and so are its measurements of speed: one for
        the group, not one a trial, which ``stack_group`` says (``compare`` counts it once)."""
        size = len(self.group)
        ids = sorted(prepared.trial.id for prepared in self.group)
        group = hashlib.blake2b("\n".join(ids).encode(), digest_size=8).hexdigest()
        device = self.group[0].data.train.x.device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        for prepared, result in zip(self.group, self.results, strict=True):
            result.train_s, result.stack_group = train_s / size, group
            watch = prepared.watch
            if watch.best_epoch:
                result.best_epoch, result.best_val_loss = watch.best_epoch, watch.best
            if self.timed_s > 0:
                result.samples_per_s = self.timed_samples * size / self.timed_s
            if device.type == "cuda":
                result.peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20 / size
            if result.diverged_at is None and hasattr(prepared.model, "fit_ex_post"):
                fit_ex_post(prepared.model, prepared.data, prepared.generator)
        return self.results


def train_together(group: list[Prepared], settings: TrainSection) -> list[TrainResult]:
    """Train the group as one stacked model; each trial's model ends with its trained weights.

    Distribution argument checks are off inside (``distribution_checks_off``): the models' own
    checks, in ``check_first_batch``, have run on each trial."""
    with distribution_checks_off(), warnings.catch_warnings():
        # vmap's note that an op runs slice by slice
        warnings.filterwarnings("ignore", "There is a performance drop", UserWarning)
        return StackedTraining(group, settings).run()


def run_group(group: list[Trial], work: Workload) -> Iterator[Finished]:
    """The group's trials trained together, each one's (trial, row, outcome) once all are
    trained; those that cannot (``_prepare``), and all of them where stacked training raises,
    trained alone."""
    ready: list[Prepared] = []
    for trial in group:
        prepared = _prepare(trial, work)
        if prepared is None:
            yield trial, *work.run_here(trial, isolate=False)
        else:
            ready.append(prepared)
    if len({p.resumed["epoch"] if p.resumed else 0 for p in ready}) > 1:
        # not all from one epoch: those with a checkpoint resume alone, the others train together
        for prepared in [p for p in ready if p.resumed is not None]:
            yield prepared.trial, *work.run_here(prepared.trial, isolate=False)
        ready = [p for p in ready if p.resumed is None]
    if len(ready) == 1:
        yield ready[0].trial, *work.run_here(ready[0].trial, isolate=False)
        return
    if not ready:
        return
    try:
        results = train_together(ready, ready[0].trial.settings())
    except (stopping.TrialTimeout, KeyboardInterrupt):
        raise
    except Exception as exc:
        log.warning(
            "%d trials of %s could not train together (%s: %s); training them one by one",
            len(ready),
            ready[0].trial.label(),
            type(exc).__name__,
            exc,
        )
        for prepared in ready:
            yield prepared.trial, *work.run_here(prepared.trial, isolate=False)
        return
    for prepared, result in zip(ready, results, strict=True):
        yield prepared.trial, *_measured(prepared, result, work)


def _measured(prepared: Prepared, result: TrainResult, work: Workload) -> tuple[Row, TrialOutcome]:
    """The trial's row and outcome, its model measured alone as ``run_trial`` measures it."""
    trial, plugins, device = prepared.trial, work.plugins, work.device
    row = base_row(trial, plugins, device)
    outcome = TrialOutcome(data=prepared.data)
    try:
        row |= trained_row(trial, plugins, prepared.model, prepared.data, device, result, outcome)
    except Exception as exc:  # measured alone, a failure is the trial's own
        suspects = [
            plugins.datasets.get(trial.dataset.plugin),
            plugins.models.get(trial.model.plugin),
            plugins.regularizers.get(trial.regularizer.plugin),
        ]
        row["status"], row["reason"] = "failed", failure_reason(exc, suspects)
        outcome.traceback = traceback.format_exc()
    return row, outcome
