"""A fixed float32 matmul: divide other timings by it to compare machines."""

from __future__ import annotations

import torch
from workloads import SIZES, SUMMARY


def test_calibration_matmul(benchmark, calibration_flops) -> None:
    n = SIZES.calibration_n
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(n, n, generator=generator), torch.rand(n, n, generator=generator)
    product = benchmark(torch.mm, a, b)
    assert product.shape == (n, n)
    benchmark.extra_info.update({"n": n, "best_flops_per_s": calibration_flops})
    SUMMARY.append(
        f"calibration: {n}x{n} float32 matmul, best {calibration_flops / 1e9:.1f} GFLOP/s"
        f" ({torch.get_num_threads()} threads)"
    )
