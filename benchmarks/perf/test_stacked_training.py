"""Trials trained together (``[train] stack = "auto"``, aebench.run.stacked) against the same
trials one after another, on the Burda et al. 2015 one-layer VAE (784-200-200-50 tanh, batches of
20, Adam beta1 = 0.99, dynamic binarisation); and that one trial through aebench against a bare
loop with the same fused Adam.

Samples/s are every trial's training samples over the wall time; the fraction of the roofline
is the training FLOP/s over a large float32 matmul's at the same threads, measured in the run.
Rounds alternate the contenders, so that both see the same machine load; ratios are medians of
the per-round ratios. Read the ratio beside the separate trials' samples/s: on one 2-core machine
(AVX-512, a 190-200 GFLOP/s roofline at 2 threads) the separate trials at 2 threads ran at about
6,000 samples/s in some processes and 10,000-11,000 in others (at 1 thread, 9,300-9,900), while
the stacked group held 13,500-19,000, so the same code read 2.5-2.9x or 1.6-1.7x.

Cores: the contenders run in this one process, one after the other, at the same torch thread
count, chosen once as aebench's ``threads = "auto"`` chooses (the cores no other process is
running on; ``OMP_NUM_THREADS`` where set): the stacked group and the separate trials each have
the same cores while they run. (All the cores regardless of load would time OpenMP spinning for
descheduled threads: 2 threads under a competing load ran this 10x slower than 1.)

The stacked VAE trains as one batch through batched GEMMs (``aebench.run.stacked_rows``: the
VAE declares ``independent_samples``).

Epochs hold ``N_TRAIN`` samples per trial (``N_TRAIN_ONE_TRIAL`` against the bare loop):
aebench's per-call and per-epoch work (building the optimizer; each trial's loss terms on 256
samples, for the curves: about 1 ms and 2 ms) is spread over an epoch of MNIST's 60,000 in a real
run, and would weigh 20% in an epoch of 400, 1.5% in one of 2,000 and 0.3% in one of 10,000,
against the bare loop, which does neither: one trial's ratio is read on epochs of 10,000, where
what is left is mostly each step's own bookkeeping.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from workloads import SMOKE, SUMMARY, bare_epoch, build_model, mnist_like, timed
from workloads import train_flops_per_sample as flops_per_sample

from aebench import Data
from aebench.plugins.manager import Plugins
from aebench.run.sections import TrainSection
from aebench.run.stacked import Prepared, train_together
from aebench.run.threads import choose_threads
from aebench.run.train import train_model
from aebench_plugins.datasets.images import bernoulli_draw

SEEDS = 8
N_TRAIN = 160 if SMOKE else 2000  # samples per trial per epoch
N_TRAIN_ONE_TRIAL = 160 if SMOKE else 10_000
ROUNDS = 1 if SMOKE else 3
# One trial against the bare loop differs by about 1%, under the machine's noise: the median of 3
# rounds read 0.96-1.03x, while 15 alternations of both medianed within 1.3% of each other.
ROUNDS_ONE_TRIAL = 1 if SMOKE else 11
ROOFLINE_N = 256 if SMOKE else 1024
BURDA = {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh"}
SETTINGS = TrainSection(epochs=1, batch_size=20, lr=1e-3, betas=[0.99, 0.999], eps=1e-4)


@pytest.fixture(autouse=True)
def auto_threads() -> Iterator[int]:
    """torch's threads as ``threads = "auto"`` chooses them, for both contenders; restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(choose_threads("auto"))
    yield torch.get_num_threads()
    torch.set_num_threads(before)


def binarised_dynamically(n: int) -> Data:
    """MNIST-shaped grey images, each batch a fresh Bernoulli draw of its pixels: binary data
    (a Bernoulli likelihood, as the paper's), stored as grey levels, as the mnist plugin's
    ``binarize = "dynamic"``."""
    data = mnist_like(n, 8)
    info = replace(data.info, kind="binary")
    return replace(data, info=info, batch_transform=bernoulli_draw)


def matmul_roofline(n: int = ROOFLINE_N, repeats: int = 5) -> float:
    """FLOP/s of an n x n float32 matmul at the contenders' threads, best of ``repeats``."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    return 2 * n**3 / min(timed(lambda: a @ b) for _ in range(repeats))


def test_seeds_stacked_against_separate(benchmark, plugins: Plugins) -> None:
    data = binarised_dynamically(N_TRAIN)
    models = [build_model(plugins, "vae", data.info, seed=s, **BURDA) for s in range(SEEDS)]
    regularizer = plugins.regularizers.get("none").factory()
    generators = [torch.Generator().manual_seed(s) for s in range(SEEDS)]
    group = [  # a trial is only its id here: what its stack's id is made of
        Prepared(SimpleNamespace(id=f"seed{s}"), m, regularizer, data, g)  # type: ignore[arg-type]
        for s, (m, g) in enumerate(zip(models, generators, strict=True))
    ]

    def stacked_epoch() -> None:
        train_together(group, SETTINGS)

    def separate_epochs() -> None:
        for model, generator in zip(models, generators, strict=True):
            train_model(model, regularizer, data, SETTINGS, generator=generator)

    times: dict[str, list[float]] = {"stacked": [], "separate": []}
    stacked_epoch(), separate_epochs()  # warm-up

    def separate() -> None:
        times["separate"].append(timed(separate_epochs))

    def stacked() -> None:
        times["stacked"].append(timed(stacked_epoch))

    benchmark.pedantic(stacked, setup=separate, rounds=ROUNDS)
    speedup = statistics.median(
        s / t for s, t in zip(times["separate"], times["stacked"], strict=True)
    )
    per_s = {k: SEEDS * N_TRAIN / statistics.median(v) for k, v in times.items()}
    flops = flops_per_sample(models[0], data.train.x[:20])
    roofline = matmul_roofline()
    fraction = {k: flops * v / roofline for k, v in per_s.items()}
    benchmark.extra_info.update(
        {"samples_per_s": per_s, "speedup": speedup, "fraction_of_roofline": fraction}
    )
    SUMMARY.append(
        f"{SEEDS} Burda VAE seeds, batch 20, {torch.get_num_threads()} threads: samples/s stacked"
        f" {per_s['stacked']:.0f}, separate {per_s['separate']:.0f} (speedup {speedup:.2f}x,"
        f" target 3x); of the matmul roofline ({roofline / 1e9:.0f} GFLOP/s):"
        f" {fraction['stacked']:.1%} stacked, {fraction['separate']:.1%} separate"
    )


def test_one_trial_against_a_bare_loop(benchmark, plugins: Plugins) -> None:
    data = mnist_like(N_TRAIN_ONE_TRIAL, 8, binary=True)  # the bare loop: no batch_transform
    model = build_model(plugins, "vae", data.info, **BURDA)
    regularizer = plugins.regularizers.get("none").factory()
    generator = torch.Generator().manual_seed(0)
    x = data.train.x

    def aebench_epoch() -> None:
        train_model(model, regularizer, data, SETTINGS, generator=generator)

    def bare() -> None:
        bare_epoch(model, x, batch_size=20, lr=SETTINGS.lr, generator=generator, fused=True)

    times: dict[str, list[float]] = {"aebench": [], "bare": []}
    aebench_epoch(), bare()  # warm-up
    benchmark.pedantic(
        lambda: times["aebench"].append(timed(aebench_epoch)),
        setup=lambda: times["bare"].append(timed(bare)),
        rounds=ROUNDS_ONE_TRIAL,
    )
    ratio = statistics.median(b / a for a, b in zip(times["aebench"], times["bare"], strict=True))
    per_s = {k: N_TRAIN_ONE_TRIAL / statistics.median(v) for k, v in times.items()}
    flops = flops_per_sample(model, x[:20])
    roofline = matmul_roofline()
    fraction = {k: flops * v / roofline for k, v in per_s.items()}
    benchmark.extra_info.update({"samples_per_s": per_s, "speed_vs_bare": ratio})
    SUMMARY.append(
        f"one Burda VAE trial, batch 20, {torch.get_num_threads()} threads: samples/s aebench"
        f" {per_s['aebench']:.0f}, bare fused-Adam loop {per_s['bare']:.0f} (aebench at"
        f" {ratio:.2f}x the bare loop's speed, target 1.0x); of the matmul roofline:"
        f" {fraction['aebench']:.1%} aebench, {fraction['bare']:.1%} bare"
    )
