"""Data on the device: loaded once per suite run, batched by shuffled index slicing."""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType

import torch
from torch import Tensor

from aebench.contract.checks import ContractError
from aebench.contract.data import Data
from aebench.contract.data_checks import check_data
from aebench.plugins.manager import Plugins
from aebench.plugins.registry import Entry
from aebench.run.suite import Component

# By the test inputs' id, with a reference that says whether that tensor is the one still alive.
_TEST_DIGESTS: dict[int, tuple[weakref.ref[Tensor], str]] = {}


def digest_of_test_split(data: Data) -> str:
    """A 16-hex-digit digest of what the metrics measure: the test split's inputs, labels and
    factors, and how they are binarized. Two rows compare only where it agrees: a dataset's
    parameters (``n_test``, a seed, ``binarize``) or its code can change the test set. Worked out
    once per test split (a tensor lives as long as its dataset is cached)."""
    x = data.test.x
    known = _TEST_DIGESTS.get(id(x))
    if known is None or known[0]() is not x:
        digest = hashlib.blake2b(digest_size=8)
        digest.update(f"{data.info.binarize or ''};{tuple(x.shape)};{x.dtype};".encode())
        for tensor in (x, data.test.y, data.test.factors):
            if tensor is not None:
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            digest.update(b";")
        known = _TEST_DIGESTS[id(x)] = (weakref.ref(x), digest.hexdigest())
    return known[1]


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Index tensors of a fresh random permutation of range(n), ``batch_size`` at a time."""
    order = torch.randperm(n, generator=generator, device=generator.device)
    yield from order.split(batch_size)


class DataCache:
    """Materialised datasets by (plugin, params, device), so that a grid loads each once.

    Each dataset is checked against the contract as it is built (``check_data``); one that breaks
    it fails with a ``ContractError`` naming the dataset plugin. A dataset that fails to load fails
    once: its error is kept and raised again for every later trial, so that, say, missing files
    are not searched for (or downloaded) once per trial.
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
            entry = self._plugins.datasets.get(dataset.plugin)
            try:
                self._loaded[key] = _checked(entry, entry.factory(**dataset.params), device)
            except Exception as exc:
                self._failed[key] = (exc, exc.__traceback__)
                raise
        return self._loaded[key]

    @property
    def plugins(self) -> Plugins:
        return self._plugins

    def for_workers(self) -> Callable[[DataCache], DataCache] | None:
        """How a worker process, with a cache of its own, is to see the data as this cache shows
        it (a picklable function of the worker's cache); None: as its plugins build it."""
        return None


def _checked(entry: Entry, data: Data, device: torch.device) -> Data:
    """``data`` on ``device``, checked against the contract there (``check_data``: where
    ``log_density`` and ``render`` will run) before any model sees it: an off-contract split is
    the dataset's fault, named, not a model's that trips over it later."""
    if not isinstance(data, Data):
        raise ContractError(f"{entry.origin}: returned {type(data).__name__}, not aebench.Data")
    on_device = data.to(device)
    try:
        check_data(on_device)
    except ContractError as exc:
        raise ContractError(f"{entry.origin}: {exc}") from None
    return on_device
