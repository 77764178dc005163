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
    SMOKE,
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


def test_what_reading_the_reconstruction_costs_a_step(benchmark, plugins) -> None:
    """A Burda VAE's batch-20 training step (forward, loss, backward, fused Adam) as the trainer
    runs it, the loss read from logits alone, against the same step that also reads
    ``out.recon`` (its sigmoid over every pixel, which the model computed in every forward pass
    before the reconstruction was given as a function)."""
    steps = 10 if SMOKE else 100
    data = mnist_like(20 * steps, 8, binary=True)
    burda = {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh"}
    model = build_model(plugins, "vae", data.info, **burda).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    batches = data.train.x.split(20)
    recons: list[torch.Tensor] = [torch.empty(0)]

    def block(read_recon: bool) -> None:
        for x in batches:
            out = model(x)
            loss = model.loss(x, out).mean()
            if read_recon:
                recons.append(out.recon)  # kept a step, as a caller that reads it keeps it
                recons.pop(0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    times: dict[str, list[float]] = {"loss only": [], "reading recon": []}
    block(True), block(False)  # warm-up
    benchmark.pedantic(
        lambda: times["loss only"].append(timed(lambda: block(False))),
        setup=lambda: times["reading recon"].append(timed(lambda: block(True))),
        rounds=1 if SMOKE else 15,
    )
    saved = statistics.median(
        r / o for o, r in zip(times["loss only"], times["reading recon"], strict=True)
    )
    benchmark.extra_info["speedup_without_recon"] = saved
    SUMMARY.append(
        f"Burda VAE batch-20 step, {torch.get_num_threads()} threads: the loss alone runs at"
        f" {saved:.3f}x the speed of the step that also reads out.recon"
    )
