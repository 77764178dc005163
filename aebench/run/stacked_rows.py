"""Stacked trials as one batch: the group's batches concatenated, each ``nn.Linear`` a batched GEMM.

A model whose seeds train together (``aebench.run.stacked``) and that declares
``independent_samples = True`` (each sample's loss depends on its own row only: no batch
statistics, no loss across samples) trains here, not under ``torch.vmap``: one copy of the model
(the template) runs the S trials' batches concatenated, trial after trial (S * B rows), and each
of its ``nn.Linear`` layers is swapped for a ``StackedLinear`` holding every trial's weights,
(S, in, out), that multiplies each trial's rows by its own weights (``torch.baddbmm``). Its
other modules (activations, reshapes, the loss) see an ordinary batch. A layer whose input
holds k copies of the batch (a VAE's Monte Carlo samples, (k, S * B) rows) multiplies each.

Why not vmap: profiled on the Burda VAE (8 seeds, batch 20, one thread), vmap +
``functional_call`` spent a quarter of its step copying each step's weight gradients into the
stacked parameters' layout, and its weight-gradient GEMMs ran at 22 GFLOP/s, as the same GEMMs
do in a micro-benchmark writing into fresh memory (130-155 writing into a buffer in use); the
stacked step ran no faster than the 8 trials one after another. Here a weight gradient is
written by one GEMM straight into the parameter's own ``.grad`` (allocated once, reused every
step), in its layout: no copy, no fresh memory, no accumulation pass.

What it needs besides ``independent_samples``: every trainable parameter in an ``nn.Linear``,
used by calling the layer (not read as a tensor: a Linear's weight is here (S, in, out)), and
buffers equal across the trials (they are the template's); ``rows_engine`` says None otherwise,
and the group is vmapped as before.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from aebench.contract.data import Data
from aebench.contract.model import Regularizer

INDEPENDENT = "independent_samples"  # the model class attribute that opts in


Drawn = tuple[Data, Regularizer, torch.Generator]  # a trial's data, regularizer and generator
Slicer = Callable[[Tensor], Tensor]  # one trial's part of a tensor laid out as a stacked parameter


class GroupBatches:
    """Each step's (corrupted, clean) inputs of every trial, stacked: (S, B, ...) each.

    One gather of every trial's rows (the trials share the dataset's tensor), then each trial's
    ``batch_transform`` and ``corrupt`` with its own generator, as alone, written into buffers
    reused every step (a fresh 0.5 MB batch is a page-faulting allocation every step). A step's
    buffers are written again once its backward pass is done: its graph holds them no longer.

    The trials' draws run one after another: spread over a thread pool (each draw runs on one
    core), 8 Burda VAE batches binarised by torch.bernoulli took 0.9 ms instead of 1.55 alone,
    but the stacked epoch ran 8% slower, the pool's thread competing with torch's spinning
    OpenMP threads."""

    def __init__(self, trials: list[Drawn]) -> None:
        self.trials = trials
        x = self.x = trials[0][0].train.x
        # the base class's corrupt is the identity: no copy of the batch to make
        self.corrupts = any(type(r).corrupt is not Regularizer.corrupt for _, r, _ in trials)
        self.transforms = any(data.batch_transform is not None for data, _, _ in trials)
        self.shared = all(data.train.x is x for data, _, _ in trials)
        self.drawn = self.corrupts or self.transforms or not self.shared  # per-trial work
        self.buffers: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    def steps(self, epoch_orders: list[Iterator[Tensor]]) -> Iterator[tuple[Tensor, Tensor]]:
        """The epoch's steps, from each trial's order of batch indices."""
        s, x = len(self.trials), self.x
        for indices in zip(*epoch_orders, strict=True):
            b = len(indices[0])
            rows, clean, corrupted = self._buffers(b)
            if self.shared:
                torch.index_select(x, 0, torch.cat(indices), out=rows)
            if self.drawn:
                for i in range(s):
                    self._draw(indices, rows, clean, corrupted, i)
            yield corrupted.view(s, b, *x.shape[1:]), clean.view(s, b, *x.shape[1:])

    def _buffers(self, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """The (gathered, clean, corrupted) buffers of steps of ``batch`` rows per trial; one
        tensor where nothing is drawn between them."""
        if batch not in self.buffers:
            rows = self.x.new_empty((len(self.trials) * batch, *self.x.shape[1:]))
            clean = torch.empty_like(rows) if self.transforms else rows
            self.buffers[batch] = (rows, clean, torch.empty_like(rows) if self.corrupts else clean)
        return self.buffers[batch]

    def _draw(
        self, indices: tuple[Tensor, ...], rows: Tensor, clean: Tensor, corrupted: Tensor, i: int
    ) -> None:
        """Trial i's rows of the step: gathered (where the trials' data differ), transformed
        and corrupted with the trial's generator."""
        data, regularizer, generator = self.trials[i]
        b = len(indices[i])
        part = slice(i * b, (i + 1) * b)
        x = rows[part]
        if not self.shared:
            torch.index_select(data.train.x, 0, indices[i], out=x)
        if data.batch_transform is not None:
            x = data.batch_transform(x, generator)
            clean[part].copy_(x)
        if self.corrupts:
            corrupted[part].copy_(regularizer.corrupt(x, generator))


class RowBlocks:
    """The shape of this step's rows, shared by the template's layers: S trials of ``batch``
    rows each; ``step`` counts the steps, so that a layer's first backward of a step writes its
    gradients and any later one (a layer used twice) adds to them."""

    def __init__(self, trials: int) -> None:
        self.trials, self.batch, self.step = trials, 0, 0


class _StackedLinearFunction(torch.autograd.Function):
    """y = x W + b per trial, W (S, in, out); the weight and bias gradients written into their
    ``.grad`` (returned as None: autograd accumulates nothing)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, layer: StackedLinear) -> Tensor:
        xs = layer.split(x)  # (S, k * B, in)
        ctx.save_for_backward(xs, weight)
        ctx.layer, ctx.rows = layer, x.shape[0]
        y = torch.baddbmm(bias.unsqueeze(1), xs, weight)
        return layer.merge(y)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        xs, weight = ctx.saved_tensors
        layer: StackedLinear = ctx.layer
        dy = layer.split(grad)  # (S, k * B, out)
        if ctx.needs_input_grad[1]:  # not through weights passed detached (PIWAE's decoder)
            layer.accumulate(dy, xs)
        dx = layer.merge(torch.bmm(dy, weight.transpose(1, 2))) if ctx.needs_input_grad[0] else None
        return dx, None, None, None


class StackedLinear(nn.Module):
    """The S trials' ``nn.Linear`` layers at one place of the model: weight (S, in, out), each
    trial's transposed (measured on the Burda VAE's layers: forward and weight gradient
    together 1-15% faster than (S, out, in)), bias (S, out), applied to rows laid out as
    ``blocks`` says."""

    def __init__(self, layers: list[nn.Linear], blocks: RowBlocks) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach().t() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))
        self.blocks = blocks
        self.written_at = -1  # the step whose gradients .grad holds

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        y = _StackedLinearFunction.apply(x.reshape(-1, x.shape[-1]), self.weight, self.bias, self)
        return y.view(*lead, y.shape[-1])

    def split(self, rows: Tensor) -> Tensor:
        """(k * S * B, n) rows, k copies of the batch in trial order, as (S, k * B, n)."""
        s, b = self.blocks.trials, self.blocks.batch
        copies = rows.shape[0] // (s * b)
        if copies == 1:
            return rows.reshape(s, b, rows.shape[-1])  # a view where the rows allow
        return rows.reshape(copies, s, b, -1).transpose(0, 1).reshape(s, copies * b, -1)

    def merge(self, stacked: Tensor) -> Tensor:
        """``split``'s inverse: (S, k * B, n) as (k * S * B, n)."""
        s, b = self.blocks.trials, self.blocks.batch
        copies = stacked.shape[1] // b
        if copies == 1:
            return stacked.reshape(s * b, -1)
        return stacked.view(s, copies, b, -1).transpose(0, 1).reshape(copies * s * b, -1)

    @torch.no_grad()
    def accumulate(self, dy: Tensor, xs: Tensor) -> None:
        """dW = x^T dy and db = sum dy per trial, into ``.grad``: written by the step's first
        backward through this layer, added by any later one."""
        weight, bias = self.weight, self.bias
        if weight.grad is None or bias.grad is None:  # the first step: allocated once
            weight.grad, bias.grad = torch.empty_like(weight), torch.empty_like(bias)
        first = self.written_at != self.blocks.step
        self.written_at = self.blocks.step
        weight.grad.baddbmm_(xs.transpose(1, 2), dy, beta=0.0 if first else 1.0)
        if first:
            torch.sum(dy, dim=1, out=bias.grad)
        else:
            bias.grad.add_(dy.sum(1))


class RowsEngine:
    """The group's model as a template whose ``nn.Linear`` layers are stacked: per-trial
    losses of a step, the parameters to optimise, and each trial's weights back."""

    def __init__(self, models: list[nn.Module]) -> None:
        self.models = models
        self.blocks = RowBlocks(len(models))
        self.template = copy.deepcopy(models[0])
        self.names = [name for name, m in models[0].named_modules() if isinstance(m, nn.Linear)]
        self.layers: dict[str, StackedLinear] = {}
        for name in self.names:
            layers = [m.get_submodule(name) for m in models]
            stacked = StackedLinear(layers, self.blocks)  # type: ignore[arg-type]
            self.template.set_submodule(name, stacked)
            self.layers[name] = stacked
        self.template.train()

    def parameters(self) -> list[Tensor]:
        return [p for layer in self.layers.values() for p in (layer.weight, layer.bias)]

    def backward(self, losses: Tensor) -> None:
        """The gradients of the step's losses, in each layer's ``.grad``; a layer the step did
        not reach has none (not the last step's, which would be applied again)."""
        losses.sum().backward()
        for layer in self.layers.values():
            if layer.written_at != self.blocks.step:
                layer.weight.grad = layer.bias.grad = None

    def losses(self, x_in: Tensor, x: Tensor) -> Tensor:
        """Each trial's batch-mean loss, (S,), from its rows of (S, B, ...) inputs."""
        s, b = x.shape[:2]
        self.blocks.batch = b
        self.blocks.step += 1
        model = self.template
        per_sample = model.loss(x.flatten(0, 1), model(x_in.flatten(0, 1))).float()
        return per_sample.view(s, b).mean(1)

    def trial_parameters(self, i: int) -> Iterator[tuple[str, Tensor, Slicer]]:
        """Per stacked parameter: trial i's own parameter's name, and how to take its part of a
        tensor laid out as the stacked one (a weight is stored transposed)."""
        for name, layer in self.layers.items():
            yield f"{name}.weight", layer.weight, lambda t: t[i].t()
            yield f"{name}.bias", layer.bias, lambda t: t[i]

    @torch.no_grad()
    def unstack(self) -> None:
        """Each trial's model gets its slice of the stacked weights."""
        for i, model in enumerate(self.models):
            for name, layer in self.layers.items():
                linear = model.get_submodule(name)
                linear.weight.copy_(layer.weight[i].t())
                linear.bias.copy_(layer.bias[i])


def rows_engine(models: list[nn.Module]) -> RowsEngine | None:
    """The group's ``RowsEngine``, or None where the model cannot train as one batch: it does
    not declare ``independent_samples``, a parameter outside an ``nn.Linear`` is trainable, a
    Linear is frozen or has no bias, or what the template would hold for every trial (buffers,
    frozen parameters) differs between the trials."""
    first = models[0]
    if not getattr(type(first), INDEPENDENT, False):
        return None
    linears = [m for m in first.modules() if isinstance(m, nn.Linear)]
    if any(m.bias is None or not all(p.requires_grad for p in m.parameters()) for m in linears):
        return None
    in_linear = {id(p) for m in linears for p in m.parameters()}
    if any(p.requires_grad and id(p) not in in_linear for p in first.parameters()):
        return None
    shared = [_shared_state(m) for m in models]
    for other in shared[1:]:
        if any(not torch.equal(value, other[name]) for name, value in shared[0].items()):
            return None
    return RowsEngine(models)


def _shared_state(model: nn.Module) -> dict[str, Tensor]:
    """The model's buffers and its parameters outside its Linear layers (all frozen)."""
    linear = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    state = dict(model.named_buffers())
    for name, value in model.named_parameters():
        if name.rpartition(".")[0] not in linear:
            state[name] = value
    return state
