"""The IWAE evaluation: log p(x) with K importance samples per input, over a test set.

Issue 18's workload: a 784-512-16 VAE with a Bernoulli likelihood on binary 28x28 images. Its
speed is read against the matmul roofline: the time the decoder's matmuls alone would take at
the FLOP/s of the calibration matmul, measured in the same test just before. The values are
held against torch.distributions' Bernoulli on the same draws; bf16 against fp32.
"""

from __future__ import annotations

import statistics

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent
from torch.utils.flop_counter import FlopCounterMode
from workloads import SIZES, SUMMARY, build_model, matmul_flops_per_s, mnist_like, recording

from aebench.estimators.likelihood import importance_sampling, iwae_bound, seeded

VAE = {"hidden": [512], "latent_dim": 16}  # 784-512-16
CHECKED_INPUTS = 50  # inputs whose values are compared with the reference computation


class TorchBernoulli(nn.Module):
    """The model, with its likelihood as torch.distributions computes it: the reference."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def prior(self):
        return self.model.prior()

    def posterior(self, x):
        return self.model.posterior(x)

    def likelihood(self, z):
        logits = self.model.likelihood(z).base_dist.logits
        return Independent(Bernoulli(logits=logits, validate_args=False), 3)


def decoder_flops_per_sample(model: nn.Module) -> float:
    """Matmul FLOPs of one decoder pass per (input, sample) pair."""
    z = torch.zeros(256, VAE["latent_dim"])
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.likelihood(z)
    return counter.get_total_flops() / len(z)


@pytest.fixture
def one_thread():
    """The roofline is the single-thread one: the estimator and the calibration on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def estimate(model: nn.Module, x: torch.Tensor, k: int, precision: str) -> torch.Tensor:
    with torch.no_grad(), seeded(torch.Generator().manual_seed(0)):  # as the metric runs it
        return iwae_bound(model, x, k, precision=precision)


ROUNDS = 5  # evaluation rounds, each after its own calibration: the machine's load moves


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_iwae_evaluation(benchmark, plugins, one_thread, precision: str) -> None:
    data = mnist_like(1, SIZES.n_test, binary=True)
    model = build_model(plugins, "vae", data.info, **VAE).eval()  # untrained: cost is the same
    x, k = data.test.x, SIZES.iwae_samples
    estimate(model, x[:8], k, precision)  # warm-up
    flops = decoder_flops_per_sample(model) * len(x) * k
    seconds: list[float] = []
    fractions: list[float] = []

    def calibrate() -> None:  # pytest-benchmark's untimed setup, before every round
        fractions.append(flops / matmul_flops_per_s(SIZES.calibration_n, repeats=3))

    values = benchmark.pedantic(
        recording(estimate, seconds),
        (model, x, k, precision),
        setup=calibrate,
        rounds=ROUNDS,
    )
    assert values.shape == (SIZES.n_test,) and torch.isfinite(values).all()
    # the roofline time of each round over its measured time
    fraction = statistics.median(r / s for r, s in zip(fractions, seconds, strict=True))
    checked = x[:CHECKED_INPUTS]
    reference = estimate(TorchBernoulli(model), checked, k, "fp32")
    error = (estimate(model, checked, k, precision) - reference).abs()
    info = {
        "n_test": len(x),
        "k": k,
        "us_per_sample": statistics.median(seconds) / (len(x) * k) * 1e6,
        "fraction_of_matmul_roofline": fraction,
        "max_abs_error_nats": error.max().item(),
        "max_rel_error": (error / reference.abs()).max().item(),
    }
    benchmark.extra_info.update(info)
    SUMMARY.append(
        f"IWAE {precision}: 784-512-16 VAE, K={k} over {len(x)} binary 28x28 inputs:"
        f" {info['us_per_sample']:.2f} us per input x sample, {fraction:.0%} of the"
        f" single-thread matmul roofline (median of {ROUNDS} rounds); against"
        f" torch.distributions fp32 on the same draws: max {info['max_abs_error_nats']:.2e} nats"
        f" ({info['max_rel_error']:.1e} relative)"
    )


def _rss_mb() -> float:
    """This process's resident memory now (not its peak)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def test_iwae_memory_growth(benchmark, plugins, one_thread) -> None:
    """Resident memory after evaluating many inputs at a large K, against before: bounded."""
    data = mnist_like(1, SIZES.memory_inputs, binary=True)
    model = build_model(plugins, "vae", data.info, **VAE).eval()
    k = SIZES.memory_samples

    def evaluate() -> torch.Tensor:
        with torch.no_grad(), seeded(torch.Generator().manual_seed(0)):
            return importance_sampling(model, data.test.x, k).bound

    evaluate_few = lambda: importance_sampling(model, data.test.x[:8], k)  # noqa: E731
    with torch.no_grad():
        evaluate_few()  # the first batch's allocations: what every later one reuses
    before = _rss_mb()
    seconds: list[float] = []
    values = benchmark.pedantic(recording(evaluate, seconds), rounds=1)
    growth = _rss_mb() - before
    assert torch.isfinite(values).all()
    benchmark.extra_info.update({"inputs": len(values), "k": k, "rss_growth_mb": growth})
    SUMMARY.append(
        f"IWAE memory: K={k} over {len(values)} inputs in {seconds[0]:.0f} s:"
        f" resident memory grew {growth:.0f} MB"
    )
