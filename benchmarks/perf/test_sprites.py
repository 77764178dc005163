"""Drawing dSprites from factor values: what loading `dsprites` and the intervention metrics
(BetaVAE and FactorVAE scores render every batch they encode) pay per image."""

from __future__ import annotations

import torch
from workloads import SMOKE, SUMMARY, recording

from aebench_plugins.datasets.dsprites import dsprites

IMAGES = 512 if SMOKE else 12_000  # dsprites' default n_train + n_test


def test_dsprites_rendering(benchmark) -> None:
    data = dsprites(n_train=1, n_test=1)
    sizes = data.info.factor_sizes
    generator = torch.Generator().manual_seed(0)
    factors = torch.stack(
        [torch.randint(size, (IMAGES,), generator=generator) for size in sizes], 1
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the per-thread cost: the machine's other cores may be busy
    try:
        seconds: list[float] = []
        images = benchmark.pedantic(recording(lambda: data.render(factors), seconds), rounds=3)
    finally:
        torch.set_num_threads(threads)
    assert images.shape == (IMAGES, 1, 64, 64)
    fastest = min(seconds)
    benchmark.extra_info.update({"images": IMAGES, "threads": 1})
    SUMMARY.append(
        f"dsprites rendering: {IMAGES} 64x64 images in {fastest:.2f} s on 1 thread"
        f" ({IMAGES / fastest:,.0f} images/s)"
    )
