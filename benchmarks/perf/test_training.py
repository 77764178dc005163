"""A training epoch per model family through aebench's ``train_model``, against a bare loop.

The overhead ratio is aebench's epoch time over the bare loop's with the same (fused) Adam: the
harness's own cost. The epochs alternate, so both see the same machine load, and the ratio is the
median of the per-round ratios. The bare loop with torch's default Adam (what a hand-written loop
gets) is timed in the same rounds.
"""

from __future__ import annotations

import statistics

import pytest
import torch
from workloads import (
    BATCH_SIZE,
    FAMILIES,
    LR,
    SIZES,
    SUMMARY,
    bare_epoch,
    build_model,
    mnist_like,
    timed,
    train_flops_per_sample,
)

from aebench.run.sections import TrainSection
from aebench.run.train import train_model


@pytest.mark.parametrize("family", FAMILIES)
def test_train_epoch(benchmark, plugins, calibration_flops, family: str) -> None:
    data = mnist_like(SIZES.n_train, 8, binary=True)  # binarised: a VAE's Bernoulli likelihood
    model = build_model(plugins, family, data.info)
    regularizer = plugins.regularizers.get("none").factory()
    generator = torch.Generator().manual_seed(0)
    x = data.train.x

    def aebench_epoch() -> None:
        settings = TrainSection(epochs=1, batch_size=BATCH_SIZE, lr=LR)
        train_model(model, regularizer, data, settings, generator=generator)

    loops = {
        "bare": lambda: bare_epoch(
            model, x, batch_size=BATCH_SIZE, lr=LR, generator=generator, fused=True
        ),
        "bare, default Adam": lambda: bare_epoch(
            model, x, batch_size=BATCH_SIZE, lr=LR, generator=generator
        ),
    }
    times: dict[str, list[float]] = {"aebench": [], **{name: [] for name in loops}}

    def bare_epochs() -> None:  # pytest-benchmark's untimed setup: the references, in turn
        for name, loop in loops.items():
            times[name].append(timed(loop))

    def timed_aebench_epoch() -> None:
        times["aebench"].append(timed(aebench_epoch))

    for loop in (aebench_epoch, *loops.values()):  # warm-up: allocations, first kernels
        loop()
    benchmark.pedantic(timed_aebench_epoch, setup=bare_epochs, rounds=SIZES.rounds)

    def ratio(name: str) -> float:
        paired = [a / b for a, b in zip(times["aebench"], times[name], strict=True)]
        return statistics.median(paired)

    samples_per_s = {name: SIZES.n_train / statistics.median(t) for name, t in times.items()}
    flops = train_flops_per_sample(model, x[:BATCH_SIZE])
    fraction = flops * samples_per_s["aebench"] / calibration_flops
    info = {
        "samples_per_s": samples_per_s,
        "overhead_ratio": ratio("bare"),
        "ratio_to_default_adam_loop": ratio("bare, default Adam"),
        "train_flops_per_sample": flops,
        "train_flops_fraction_of_matmul": fraction,
        "n_train": SIZES.n_train,
        "batch_size": BATCH_SIZE,
    }
    benchmark.extra_info.update(info)
    SUMMARY.append(
        f"{family:8s} samples/s: aebench {samples_per_s['aebench']:9.0f},"
        f" bare {samples_per_s['bare']:9.0f} (overhead ratio {info['overhead_ratio']:.3f}),"
        f" bare with default Adam {samples_per_s['bare, default Adam']:9.0f}"
        f" (ratio {info['ratio_to_default_adam_loop']:.3f});"
        f" {flops / 1e6:.2f} MFLOP/sample, {fraction:.1%} of the calibration matmul's FLOP/s"
    )
