"""Inference throughput and model size (training speed and memory are the runner's columns)."""

from __future__ import annotations

import time

import torch

from aebench import MetricContext
from aebench_plugins.metrics.codes import EVAL_BATCH

MIN_TIMED_S = 0.2  # repeat passes over the test split until at least this long was timed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def infer_samples_per_s(context: MetricContext) -> dict[str, float]:
    """Test samples per second through encode + decode, inference mode, batches of 1,024.

    After one warm-up batch; CUDA synchronised; whole passes over the test split are repeated
    until at least 0.2 s were timed.
    """
    model, batches = context.model, context.data.test.x.split(EVAL_BATCH)
    with torch.inference_mode():
        model.decode(model.encode(batches[0]))  # warm-up: lazy initialisation, kernel selection
        _sync(context.device)
        samples, start = 0, time.perf_counter()
        while samples == 0 or time.perf_counter() - start < MIN_TIMED_S:
            for batch in batches:
                model.decode(model.encode(batch))
            _sync(context.device)
            samples += len(context.data.test)
        elapsed = time.perf_counter() - start
    return {"infer_samples_per_s": samples / elapsed}


def n_params(context: MetricContext) -> dict[str, float]:
    """Number of parameters of the model (every model)."""
    return {"n_params": float(sum(p.numel() for p in context.model.parameters()))}
