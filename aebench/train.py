"""Trains one model: Adam over shuffled batches; per-epoch curves; stops when the loss diverges."""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from aebench.contracts import Data, Regularizer
from aebench.data import shuffled_batches

CURVES = ("loss", "model_loss", "penalty")


@dataclass
class TrainResult:
    curves: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CURVES})
    train_s: float = 0.0
    samples_per_s: float = float("nan")  # measured after a warm-up epoch when there is one
    diverged_at: int | None = None  # the epoch (1-based) whose loss was NaN or infinite
    peak_mem_mb: float = float("nan")  # CUDA peak allocation, or growth of the peak RSS on the CPU


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_model(
    model: nn.Module,
    regularizer: Regularizer,
    data: Data,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> TrainResult:
    device = data.train.x.device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    result = TrainResult()
    n = len(data.train)
    timed_s, timed_samples = 0.0, 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        # Sums stay on the device: one host sync per epoch, not one per step.
        sums = torch.zeros(len(CURVES), device=device)
        for index in shuffled_batches(n, batch_size, generator):
            x = data.train.x[index]
            if data.batch_transform is not None:
                x = data.batch_transform(x, generator)
            x_in = regularizer.corrupt(x, generator)
            out = model(x_in)
            model_loss = model.loss(x, out).mean()
            penalty = regularizer.penalty(x_in, out, model).mean()
            loss = model_loss + penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += torch.stack([loss, model_loss, penalty]).detach() * len(index)
        means = (sums / n).tolist()
        epoch_s = time.perf_counter() - epoch_start
        for name, value in zip(CURVES, means, strict=True):
            result.curves[name].append(value)
        if not math.isfinite(means[0]):
            result.diverged_at = epoch
            break
        if epoch > 1 or epochs == 1:  # the first epoch warms up (allocations, kernels)
            timed_s += epoch_s
            timed_samples += n
    _sync(device)
    result.train_s = time.perf_counter() - start
    if device.type == "cuda":
        result.peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result.peak_mem_mb = _peak_rss_mb() - rss_before
    if timed_s > 0:
        result.samples_per_s = timed_samples / timed_s
    return result
