"""The disentanglement metrics' speed-ups keep their numbers: DCI's per-factor fits side by side,
the intervening scores' renders encoded on the trial's threads, the train split's codes encoded
only as far as the points read."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.ensemble import GradientBoostingClassifier
from threadpoolctl import threadpool_info
from timing import scaled
from torch import Tensor, nn

from aebench import Data, MetricContext
from aebench_plugins.datasets.dsprites import shapes_small
from aebench_plugins.metrics import disentanglement as plugin
from aebench_plugins.metrics import disentanglement_scores as scores
from aebench_plugins.metrics.disentanglement import DISENTANGLEMENT_METRICS

SIZES = (3, 2, 4)  # factors of unequal sizes: the fits are handed out largest first


def _arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and test codes (the factors, noisy, and two noise units) and their factors."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        factors = scores.sample_factors(SIZES, n, rng)
        codes = np.hstack(
            [factors + rng.normal(scale=0.6, size=factors.shape), rng.normal(size=(n, 2))]
        )
        return codes, factors

    return *split(150), *split(80)


@pytest.fixture
def concurrent_fits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Records, at each gradient-boosted fit's start, how many fits are running; the test's first
    two fits wait (a bounded while) for each other, so that fits that can overlap do."""
    running, calls, seen, lock = [0], [0], [], threading.Lock()
    meeting = threading.Barrier(2)
    original = GradientBoostingClassifier.fit

    def fit(self: GradientBoostingClassifier, *args: object, **kwargs: object) -> object:
        with lock:
            running[0] += 1
            seen.append(running[0])
            calls[0] += 1
            first_two = calls[0] <= 2
        if first_two:
            try:
                meeting.wait(timeout=scaled(2.0))
            except threading.BrokenBarrierError:  # fits one at a time: nobody comes
                pass
        try:
            return original(self, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(GradientBoostingClassifier, "fit", fit)
    yield seen


def test_dci_fits_factors_side_by_side_with_the_numbers_of_one_at_a_time(
    concurrent_fits: list[int],
) -> None:
    arrays = _arrays(0)
    together, together_accuracy = scores.gbt_importance(*arrays, seed=3, workers=2)
    assert max(concurrent_fits) == 2
    concurrent_fits.clear()
    alone, alone_accuracy = scores.gbt_importance(*arrays, seed=3, workers=1)
    assert max(concurrent_fits) == 1
    assert np.array_equal(alone, together)  # bit for bit: each factor's fit keeps its seed
    assert alone_accuracy == together_accuracy
    assert alone.shape == (5, len(SIZES))
    assert (alone[:3].argmax(axis=0) == np.arange(len(SIZES))).all()  # each factor's own unit


class FactorCode(nn.Module):
    """The code of a shapes-small image: its factors, read off a lookup of every render; counts
    the images it encodes and notes torch's threads and each batch's size."""

    def __init__(self, data: Data) -> None:
        super().__init__()
        sizes = data.info.factor_sizes
        assert sizes is not None and data.render is not None
        every = torch.stack(torch.unravel_index(torch.arange(int(np.prod(sizes))), sizes), dim=1)
        self.register_buffer("images", data.render(every).flatten(1))
        self.register_buffer("factors", every.float())
        self.encoded, self.threads, self.batches = 0, set(), set()

    def encode(self, x: Tensor) -> Tensor:
        self.encoded += len(x)
        self.threads.add(torch.get_num_threads())
        self.batches.add(len(x))
        distance = torch.cdist(x.flatten(1), self.images)
        place = (torch.arange(len(x)) % 7)[:, None]  # codes that depend on the batching
        return self.factors[distance.argmin(dim=1)] + 0.01 * place


def _context(model: nn.Module, data: Data) -> MetricContext:
    return MetricContext(model, data, {}, torch.device("cpu"), torch.Generator().manual_seed(1))


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_the_dci_metric_fits_on_as_many_threads_as_the_trial_has(
    concurrent_fits: list[int], two_threads: None
) -> None:
    data = shapes_small()
    params = {"train_points": 200, "test_points": 100}
    two = DISENTANGLEMENT_METRICS["dci"].measure(_context(FactorCode(data), data), **params)
    assert max(concurrent_fits) == 2
    concurrent_fits.clear()
    torch.set_num_threads(1)
    one = DISENTANGLEMENT_METRICS["dci"].measure(_context(FactorCode(data), data), **params)
    assert max(concurrent_fits) == 1
    assert one.values == two.values and one.reason == ""


@pytest.mark.skipif(
    not any(lib["internal_api"] == "openmp" for lib in threadpool_info()),
    reason="torch's threads are not OpenMP's here",
)
@pytest.mark.parametrize("name", ["beta_vae_score", "factor_vae_score"])
def test_renders_are_encoded_on_the_trials_threads_a_batch_at_a_time(
    name: str, two_threads: None
) -> None:
    """The scores' fits hold OpenMP to one thread; the renders they ask for are not."""
    data = shapes_small()
    model = FactorCode(data)
    measured = DISENTANGLEMENT_METRICS[name].measure(
        _context(model, data), batch_size=16, train_points=20, eval_points=10
    )
    assert measured.reason == ""
    assert model.threads == {2}
    assert max(model.batches) == plugin.ENCODE_BATCH


def test_the_train_codes_read_are_those_of_the_whole_splits_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the batches holding the points read are encoded, batched as the whole split's are:
    the same codes as encoding it all."""
    monkeypatch.setattr(plugin, "EVAL_BATCH", 64)
    data = shapes_small()
    model = FactorCode(data)
    codes, factors = plugin._codes_and_factors(_context(model, data), data.train, 100)
    assert model.encoded == 128  # two batches of 64, of the 448 images
    whole = torch.cat([model.encode(b) for b in data.train.x.split(64)])
    assert np.array_equal(codes, whole[:100].double().numpy())
    assert np.array_equal(factors, data.train.factors[:100].numpy())
