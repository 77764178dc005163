"""What the performance benchmarks run: MNIST-shaped data, the models, a bare PyTorch training loop
to hold aebench's loop against, and the FLOP counts that turn samples/s into FLOP/s.

``AEBENCH_BENCH_SMOKE=1`` shrinks every size so that CI can run each benchmark once, quickly.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from aebench import Data, DataInfo, Split
from aebench.plugins.manager import Plugins

T = TypeVar("T")
SMOKE = os.environ.get("AEBENCH_BENCH_SMOKE", "") not in ("", "0")


@dataclass(frozen=True)
class Sizes:
    n_train: int  # samples in one training epoch
    n_test: int  # inputs of the IWAE evaluation
    iwae_samples: int  # K
    rounds: int  # timed epochs per loop; aebench's and the bare loop's alternate
    calibration_n: int  # side of the calibration matmul
    suite_trials: int  # trials of the grid-expansion benchmark
    memory_inputs: int  # inputs of the IWAE memory benchmark, at K = memory_samples
    memory_samples: int


SIZES = (
    Sizes(
        n_train=512,
        n_test=64,
        iwae_samples=50,
        rounds=1,
        calibration_n=512,
        suite_trials=1000,
        memory_inputs=64,
        memory_samples=50,
    )
    if SMOKE
    else Sizes(
        n_train=10_000,
        n_test=200,
        iwae_samples=1000,
        rounds=7,
        calibration_n=1024,
        suite_trials=1000,
        memory_inputs=10_000,
        memory_samples=5000,
    )
)
BATCH_SIZE = 128
LR = 1e-3
FAMILIES = ("ae", "conv-ae", "vae")  # each with its registered defaults


def mnist_like(n_train: int, n_test: int, seed: int = 0, binary: bool = False) -> Data:
    """Random 1x28x28 images in [0, 1] (``binary``: in {0, 1}, as binarised MNIST, which a VAE
    scores with a Bernoulli likelihood): MNIST's shape and range, with no files to read."""
    generator = torch.Generator().manual_seed(seed)
    train = torch.rand(n_train, 1, 28, 28, generator=generator)
    test = torch.rand(n_test, 1, 28, 28, generator=generator)
    if binary:
        train, test = train.round(), test.round()
    return Data(
        info=DataInfo(shape=(1, 28, 28), kind="binary" if binary else "unit", n_classes=10),
        train=Split(train),
        test=Split(test),
    )


def build_model(
    plugins: Plugins, name: str, info: DataInfo, seed: int = 0, **params: object
) -> nn.Module:
    """A registered model with its default parameters but ``params``, seeded."""
    entry = plugins.models.get(name)
    torch.manual_seed(seed)
    return entry.factory(info, **entry.params.model_validate(params).model_dump())


def bare_epoch(
    model: nn.Module,
    x: torch.Tensor,
    *,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    fused: bool | None = None,
) -> float:
    """One epoch the way a researcher writes it by hand: shuffled slices, Adam, no bookkeeping.

    ``fused=None`` is torch's default Adam (what a hand-written loop gets); ``fused=True`` is the
    kernel aebench uses, so that the ratio measures the harness alone. Returns the last batch's
    loss (read after the epoch, as aebench reads its means).
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=fused)
    model.train()
    loss = torch.zeros(())
    for index in torch.randperm(len(x), generator=generator, device=x.device).split(batch_size):
        xb = x[index]
        loss = model.loss(xb, model(xb)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.item()


def timed(fn: Callable[[], object]) -> float:
    """Seconds that ``fn()`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def recording(fn: Callable[..., T], seconds: list[float]) -> Callable[..., T]:
    """``fn``, appending the seconds of each call to ``seconds`` (also when benchmarks are
    disabled, when pytest-benchmark keeps no statistics)."""

    def call(*args: object, **kwargs: object) -> T:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return out

    return call


def median(values: list[float]) -> float:
    return statistics.median(values)


def train_flops_per_sample(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one training step per sample: matmuls and convolutions, forward and backward.

    Counted by torch's FlopCounterMode (2 FLOPs per multiply-add; about 6 x weights per sample
    for an MLP); elementwise work, the loss's reductions and the optimizer are not counted.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(x, model(x)).mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def matmul_flops_per_s(n: int, repeats: int = 5) -> float:
    """FLOP/s of an n x n float32 matmul, best of ``repeats``: the machine's calibration."""
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=generator)
    b = torch.rand(n, n, generator=generator)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


# Lines for the end of the pytest run (conftest prints them): ratios are the point of the run.
SUMMARY: list[str] = []
