"""The real MNIST files, loaded through the `mnist` plugin (never downloaded)."""

from __future__ import annotations

import pytest
import torch
from repo import SHARED

from aebench import Data
from aebench.plugins.manager import load_plugins

DATA_ROOT = SHARED / "data"  # ../shared/data of the repo

pytestmark = pytest.mark.skipif(
    not (DATA_ROOT / "MNIST" / "raw").is_dir(),
    reason=f"the MNIST files are not at {DATA_ROOT / 'MNIST' / 'raw'}",
)


def mnist(**params) -> Data:
    factory = load_plugins().datasets.get("mnist").factory
    return factory(root=str(DATA_ROOT), download=False, **params)


def pixels(image: torch.Tensor) -> bytes:
    """The 8-bit pixels of one image, as a dictionary key."""
    return (image * 255).round().to(torch.uint8).numpy().tobytes()


@pytest.fixture(scope="module")
def full() -> Data:
    return mnist()


def test_full_mnist_shapes_ranges_and_label_counts(full: Data):
    assert full.info.shape == (1, 28, 28) and full.info.kind == "unit" and full.info.n_classes == 10
    assert full.train.x.shape == (60_000, 1, 28, 28) and full.test.x.shape == (10_000, 1, 28, 28)
    assert full.train.x.dtype == torch.float32
    for split in (full.train, full.test):
        assert split.x.min().item() == 0.0 and split.x.max().item() == 1.0
        # 8-bit intensities divided by 255, nothing else
        assert torch.equal((split.x * 255).round() / 255, split.x)
    # MNIST's published class counts
    assert torch.bincount(full.train.y).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip
    assert torch.bincount(full.test.y).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip


def test_subsets_and_validation_split_are_seeded_pieces_of_the_full_set(full: Data):
    a = mnist(n_train=1000, n_test=200, val_fraction=0.1, seed=5)
    b = mnist(n_train=1000, n_test=200, val_fraction=0.1, seed=5)
    assert (len(a.train), len(a.val), len(a.test)) == (900, 100, 200)
    for split_a, split_b in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert torch.equal(split_a.x, split_b.x) and torch.equal(split_a.y, split_b.y)
    # every validation image is an MNIST training image, with its own label
    label_of = {pixels(x): int(y) for x, y in zip(full.train.x, full.train.y, strict=True)}
    assert [label_of[pixels(x)] for x in a.val.x] == a.val.y.tolist()
    assert not torch.equal(mnist(n_train=1000, seed=6).train.x[:100], a.val.x)


def test_binarised_mnist(full: Data):
    static = mnist(n_train=500, n_test=500, binarize="static")
    dynamic = mnist(n_train=500, n_test=500, binarize="dynamic")
    assert static.info.kind == dynamic.info.kind == "binary"
    assert set(static.train.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(static.test.x, dynamic.test.x)
    generator = torch.Generator().manual_seed(0)
    drawn = [dynamic.batch_transform(dynamic.train.x[:128], generator) for _ in range(2)]
    assert not torch.equal(*drawn)
    # about as many pixels on as the intensities say
    assert drawn[0].mean().item() == pytest.approx(dynamic.train.x[:128].mean().item(), abs=0.01)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (17,), (20, 784), (3, 1, 64, 64)])
def test_the_binarisation_draws_what_torch_bernoulli_draws(shape, dtype):
    """The dynamic binarisation's faster uniform-below-intensity draw is, on the CPU, the very
    draw of ``torch.bernoulli``, and leaves the generator where it does: results binarised
    before it stay as they were."""
    from aebench_plugins.datasets.images import bernoulli_draw

    x = torch.rand(shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    x[..., 0] = 1.0  # the ends: always on, never on
    x.view(-1)[-1] = 0.0
    ours, theirs = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    drawn = bernoulli_draw(x, ours)
    assert drawn.dtype == dtype
    assert torch.equal(drawn, torch.bernoulli(x, generator=theirs))
    assert torch.equal(ours.get_state(), theirs.get_state())
