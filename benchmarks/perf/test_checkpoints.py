"""The cost of mid-trial checkpoints: training the MLP autoencoder with a checkpoint after every
epoch (the most often ``[train] checkpoint_every`` allows; by default it is once a minute) against
the same training without, the two alternating so that both see the same machine load."""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
from workloads import BATCH_SIZE, LR, SIZES, SUMMARY, build_model, mnist_like, timed

from aebench.run.checkpoint import Checkpoints
from aebench.run.sections import TrainSection
from aebench.run.train import train_model

EPOCHS = 3  # a checkpoint after the first two: none is written after the last epoch


def test_checkpoint_overhead(benchmark, plugins, tmp_path: Path) -> None:
    data = mnist_like(SIZES.n_train, 8)
    model = build_model(plugins, "ae", data.info)
    regularizer = plugins.regularizers.get("none").factory()
    path = tmp_path / "checkpoint.pt"

    def train(checkpoints: Checkpoints | None) -> None:
        generator = torch.Generator().manual_seed(0)
        train_model(
            model,
            regularizer,
            data,
            TrainSection(epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR),
            generator=generator,
            checkpoints=checkpoints,
        )

    def with_checkpoints() -> None:
        path.unlink(missing_ok=True)  # a fresh trial each time, not a resumed one
        train(Checkpoints(path, "benchmark", every=1))

    times: dict[str, list[float]] = {"with": [], "without": []}

    def without() -> None:  # pytest-benchmark's untimed setup: the reference, in turn
        times["without"].append(timed(lambda: train(None)))

    def timed_with() -> None:
        times["with"].append(timed(with_checkpoints))

    train(None)  # warm-up
    benchmark.pedantic(timed_with, setup=without, rounds=SIZES.rounds)
    ratio = statistics.median(a / b for a, b in zip(times["with"], times["without"], strict=True))
    size = path.stat().st_size if path.exists() else 0
    benchmark.extra_info.update({"checkpoint_ratio": ratio, "checkpoint_bytes": size})
    SUMMARY.append(
        f"checkpoints after every epoch (ae, {SIZES.n_train} samples/epoch, {size / 2**20:.1f} MB"
        f" each): training time ratio {ratio:.3f} (with / without)"
    )
