"""Training while another process keeps a core busy: aebench, with the threads it chooses
("auto", as `aebench run` does), against a bare loop under the same competition.

A bare loop runs at torch's default threads (every core: what a hand-written loop gets); torch's
OpenMP threads spin waiting for the descheduled one, so on a shared machine that default is
what collapses. The bare loop at one thread is timed in the same rounds, for reference.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time

import torch
from workloads import BATCH_SIZE, LR, SIZES, SUMMARY, bare_epoch, build_model, mnist_like, timed

from aebench.run.sections import TrainSection
from aebench.run.threads import follow
from aebench.run.train import train_model


def spin() -> None:  # the competing process: CPU-bound, forever
    while True:
        pass


def test_train_epoch_with_a_competing_process(benchmark, plugins, monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # "auto" decides, as for a user
    default_threads = torch.get_num_threads()
    data = mnist_like(SIZES.n_train, 8, binary=True)
    model = build_model(plugins, "vae", data.info)
    regularizer = plugins.regularizers.get("none").factory()
    generator = torch.Generator().manual_seed(0)
    competitor = multiprocessing.get_context("spawn").Process(target=spin, daemon=True)
    competitor.start()
    try:
        time.sleep(1.0)  # running, so that /proc/loadavg counts it
        threads = follow("auto")  # as `aebench run` does; its epochs adjust it (run.threads)

        def at(setting: int | str, loop) -> float:
            follow(setting)
            return timed(loop)

        def aebench_epoch() -> None:
            train_model(
                model,
                regularizer,
                data,
                TrainSection(epochs=1, batch_size=BATCH_SIZE, lr=LR),
                generator=generator,
            )

        def bare() -> None:
            bare_epoch(model, data.train.x, batch_size=BATCH_SIZE, lr=LR, generator=generator)

        times: dict[str, list[float]] = {"aebench": [], "bare": [], "bare, 1 thread": []}

        def references() -> None:  # untimed setup of each round: the bare loops, in turn
            times["bare"].append(at(default_threads, bare))
            times["bare, 1 thread"].append(at(1, bare))

        def timed_aebench() -> None:
            times["aebench"].append(at("auto", aebench_epoch))

        at("auto", aebench_epoch), at(default_threads, bare)  # warm-up
        benchmark.pedantic(timed_aebench, setup=references, rounds=SIZES.rounds)
    finally:
        competitor.terminate()
        follow(default_threads)

    def speed_ratio(name: str) -> float:  # aebench's speed over the reference's, per round
        return statistics.median(r / a for a, r in zip(times["aebench"], times[name], strict=True))

    samples_per_s = {name: SIZES.n_train / statistics.median(t) for name, t in times.items()}
    info = {
        "threads": threads,
        "default_threads": default_threads,
        "samples_per_s": samples_per_s,
        "speed_ratio_to_bare": speed_ratio("bare"),
        "speed_ratio_to_bare_1_thread": speed_ratio("bare, 1 thread"),
    }
    benchmark.extra_info.update(info)
    SUMMARY.append(
        f"vae with a competing process: aebench ({threads} threads, auto)"
        f" {samples_per_s['aebench']:.0f} samples/s, bare loop ({default_threads} threads)"
        f" {samples_per_s['bare']:.0f} (aebench at {info['speed_ratio_to_bare']:.2f}x),"
        f" bare at 1 thread {samples_per_s['bare, 1 thread']:.0f}"
        f" ({info['speed_ratio_to_bare_1_thread']:.2f}x)"
    )
