"""Data on the device: loaded once per suite run, batched by shuffled index slicing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import TracebackType

import torch
from torch import Tensor

from aebench.contract.data import Data
from aebench.plugins.manager import Plugins
from aebench.run.suite import Component


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Index tensors of a fresh random permutation of range(n), ``batch_size`` at a time."""
    order = torch.randperm(n, generator=generator, device=generator.device)
    yield from order.split(batch_size)


class DataCache:
    """Materialised datasets by (plugin, params, device), so that a grid loads each once.

    A dataset that fails to load fails once: its error is kept and raised again for every later
    trial, so that, say, missing files are not searched for (or downloaded) once per trial.
    """

    def __init__(self, plugins: Plugins) -> None:
        self._plugins = plugins
        self._loaded: dict[str, Data] = {}
        self._failed: dict[str, tuple[Exception, TracebackType | None]] = {}

    def get(self, dataset: Component, device: torch.device) -> Data:
        key = json.dumps([dataset.plugin, dataset.params, str(device)], sort_keys=True, default=str)
        if key in self._failed:
            error, traceback = self._failed[key]
            raise error.with_traceback(traceback)  # the first failure's, not one grown per trial
        if key not in self._loaded:
            factory = self._plugins.datasets.get(dataset.plugin).factory
            try:
                self._loaded[key] = factory(**dataset.params).to(device)
            except Exception as exc:
                self._failed[key] = (exc, exc.__traceback__)
                raise
        return self._loaded[key]
