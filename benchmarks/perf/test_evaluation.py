"""The IWAE evaluation: log p(x) with K importance samples per input, over a test set."""

from __future__ import annotations

import resource

import torch
from workloads import SIZES, SUMMARY, build_model, mnist_like, recording

from aebench.likelihood import iwae_bound, seeded


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_iwae_evaluation(benchmark, plugins) -> None:
    data = mnist_like(1, SIZES.n_test)
    model = build_model(plugins, "vae", data.info).eval()  # untrained: the cost does not care
    k = SIZES.iwae_samples

    def evaluate() -> torch.Tensor:
        with torch.no_grad(), seeded(torch.Generator().manual_seed(0)):  # as the metric runs it
            return iwae_bound(model, data.test.x, k)

    rss_before = _peak_rss_mb()
    seconds: list[float] = []
    values = benchmark.pedantic(recording(evaluate, seconds), rounds=1)
    # The growth of this process's peak RSS: a lower bound when an earlier benchmark peaked higher.
    growth = _peak_rss_mb() - rss_before
    assert values.shape == (SIZES.n_test,) and torch.isfinite(values).all()
    benchmark.extra_info.update({"n_test": SIZES.n_test, "k": k, "peak_rss_growth_mb": growth})
    SUMMARY.append(
        f"IWAE: vae, K={k} over {SIZES.n_test} 1x28x28 inputs: {seconds[0]:.1f} s,"
        f" peak RSS growth {growth:.0f} MB"
    )
