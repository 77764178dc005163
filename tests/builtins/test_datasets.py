"""Image-set options (subsets, validation split, binarisation), missing files, the DataCache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from builders import build_suite, entry

from aebench import Data, DataInfo, Split, hookimpl
from aebench.plugins.manager import load_plugins
from aebench.run.data import DataCache, digest_of_test_split, shuffled_batches
from aebench.run.loop import run_trials
from aebench.run.suite import Component, load_suite

TORCHVISION_SETS = ["mnist", "fashion-mnist", "kmnist", "cifar10"]


def load(name: str, **params) -> Data:
    return load_plugins().datasets.get(name).factory(**params)


def test_every_dataset_is_registered_with_its_parameters(plugins):
    registry = plugins.datasets
    for name in [*TORCHVISION_SETS, "digits", "ppca", "mixture2d"]:
        assert name in registry
    for name in TORCHVISION_SETS:
        params = set(registry.get(name).params.model_fields)
        assert {"root", "download", "n_train", "n_test", "val_fraction", "binarize"} <= params


def test_digits_shapes_ranges_and_labels():
    data = load("digits")
    assert data.info == DataInfo(
        shape=(1, 8, 8), kind="unit", n_classes=10, levels=17, binarize="none"
    )
    assert len(data.train) + len(data.test) == 1797
    for split in (data.train, data.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (1, 8, 8)
        assert split.x.min() >= 0 and split.x.max() <= 1
        assert set(split.y.unique().tolist()) == set(range(10))
    assert data.val is None and data.batch_transform is None


def test_validation_split_is_seeded_and_carved_from_train():
    whole = load("digits")
    a, b = load("digits", val_fraction=0.25), load("digits", val_fraction=0.25)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.x, b.train.x)
    assert len(a.val) == round(0.25 * len(whole.train))
    assert len(a.train) + len(a.val) == len(whole.train)
    assert torch.equal(a.test.x, whole.test.x)
    # the validation images are training images, and none of them is still in train
    rows = {tuple(r.tolist()) for r in whole.train.x.flatten(1)}
    assert all(tuple(r.tolist()) in rows for r in a.val.x.flatten(1))
    val_rows = {tuple(r.tolist()) for r in a.val.x.flatten(1)}
    assert not any(tuple(r.tolist()) in val_rows for r in a.train.x.flatten(1))


def test_a_val_fraction_that_leaves_no_training_images_is_refused():
    from aebench_plugins.datasets.images import image_data

    train = Split(torch.rand(3, 1, 2, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="toy: val_fraction = 0.9 leaves no training images"):
        image_data("toy", train, train, n_classes=1, val_fraction=0.9)
    # before: no validation split, silently; a suite needing one then said to set val_fraction
    with pytest.raises(ValueError, match="toy: val_fraction = 0.1 holds out no image of 3"):
        image_data("toy", train, train, n_classes=1, val_fraction=0.1)


def test_static_binarisation_is_drawn_once_and_seeded():
    a, b = load("digits", binarize="static"), load("digits", binarize="static")
    other = load("digits", binarize="static", split_seed=1)
    assert a.info.kind == "binary" and a.batch_transform is None
    for split in (a.train, a.test):
        assert set(split.x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)
    assert not torch.equal(a.test.x, other.test.x)


def test_data_info_states_grey_levels_and_binarisation():
    from aebench_plugins.datasets.images import image_data

    raw = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8)
    split = Split(raw, torch.zeros(10, dtype=torch.long))
    eight_bit = image_data("raw", split, split, n_classes=1)
    assert (eight_bit.info.levels, eight_bit.info.binarize) == (256, "none")
    scaled = eight_bit.train.x * 255
    assert torch.equal(scaled, scaled.round())  # the stored values lie on the 256-level grid
    for binarize in ("static", "dynamic"):
        info = image_data("raw", split, split, n_classes=1, binarize=binarize).info
        assert (info.kind, info.levels, info.binarize) == ("binary", None, binarize)
        assert load("digits", binarize=binarize).info.binarize == binarize
    floats = Split(raw.float() / 255, split.y)  # floats: quantised only where the caller says
    assert image_data("raw", floats, floats, n_classes=1).info.levels is None
    assert image_data("raw", floats, floats, n_classes=1, levels=256).info.levels == 256
    with pytest.raises(ValueError, match="off the grid k / 16"):
        image_data("raw", floats, floats, n_classes=1, levels=17)
    for name in ("ppca", "mixture2d"):
        info = load(name).info
        assert (info.levels, info.binarize) == (None, None)


def test_static_binarisation_draws_each_pixel_with_its_intensity():
    from aebench_plugins.datasets.images import image_data

    grey = torch.full((20_000, 1, 2, 2), 0.3)
    split = Split(grey, torch.zeros(len(grey), dtype=torch.long))
    data = image_data("grey", split, split, n_classes=1, binarize="static")
    assert data.train.x.mean().item() == pytest.approx(0.3, abs=0.01)  # 80,000 draws: sd 0.0016
    assert not torch.equal(data.train.x[:5000], data.train.x[5000:10000])  # no repeated pattern


def test_dynamic_binarisation_redraws_every_batch_and_fixes_the_test_split():
    data = load("digits", binarize="dynamic")
    static = load("digits", binarize="static")
    assert data.info.kind == "binary" and data.batch_transform is not None
    # the stored training images keep their intensities; each batch drawn is a fresh binarisation
    assert torch.equal(data.train.x, load("digits").train.x)
    generator = torch.Generator().manual_seed(0)
    batch = data.train.x[:256]
    first = data.batch_transform(batch, generator)
    second = data.batch_transform(batch, generator)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
    assert torch.equal(first[batch == 0], batch[batch == 0])  # p = 0 and p = 1 never flip
    assert torch.equal(first[batch == 1], batch[batch == 1])
    # evaluation is deterministic: the test split is binarised once, as "static" does it
    assert torch.equal(data.test.x, load("digits", binarize="dynamic").test.x)
    assert torch.equal(data.test.x, static.test.x)


def test_dynamic_draws_average_to_the_intensity():
    data = load("digits", binarize="dynamic")
    generator = torch.Generator().manual_seed(1)
    x = data.train.x[:200]
    mean = torch.stack([data.batch_transform(x, generator) for _ in range(400)]).mean(0)
    assert (mean - x).abs().max() < 0.1  # 400 draws: sd <= 0.025 per pixel


def test_subsets_are_seeded_reproducible_and_nested():
    from aebench_plugins.datasets.images import image_data

    x = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)
    full = Split(x, torch.arange(100) % 10)

    def subset(**kw) -> Data:
        return image_data("toy", full, full, n_classes=10, **kw)

    a, b = subset(n_train=30, n_test=20, seed=3), subset(n_train=30, n_test=20, seed=3)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)
    assert (len(a.train), len(a.test)) == (30, 20)
    assert a.train.x.dtype == torch.float32 and a.train.x.max() <= 99 / 255
    assert torch.equal(a.train.y, (a.train.x.flatten() * 255).round().long() % 10)  # labels follow
    bigger = subset(n_train=60, seed=3)
    assert torch.equal(bigger.train.x[:30], a.train.x)
    assert not torch.equal(subset(n_train=30, seed=4).train.x, a.train.x)
    with pytest.raises(ValueError, match="toy: n_train = 101, but the split has only 100"):
        subset(n_train=101)


def generated_with_split_sizes() -> list[str]:
    """The registered datasets that make their data (no files) with ``n_train`` and ``n_test``."""
    fields = {e.name: e.params.model_fields for e in load_plugins().datasets}
    return sorted(
        n for n, f in fields.items() if {"n_train", "n_test"} <= set(f) and "root" not in f
    )


@pytest.mark.parametrize("name", generated_with_split_sizes())
def test_the_test_split_is_the_same_whatever_n_train(name):
    # before: ppca, mixture2d, dsprites and shapes-small drew the test split after the training
    # split, from one stream: two n_train were measured on two test sets (a learning curve
    # over n_train compared numbers of different data).
    small, large = load(name, n_train=40, n_test=16), load(name, n_train=80, n_test=16)
    assert torch.equal(small.test.x, large.test.x)
    assert len(small.train) == 40 and len(large.train) == 80
    seeded = load(name, n_train=40, n_test=16, seed=1)
    assert not torch.equal(seeded.test.x, small.test.x)  # the seed draws the test set too


def test_the_test_digest_tells_test_splits_apart_and_nothing_else():
    digest = {
        "as built": digest_of_test_split(load("digits")),
        "built again": digest_of_test_split(load("digits")),
        "binarized": digest_of_test_split(load("digits", binarize="static")),
        "another split": digest_of_test_split(load("digits", split_seed=1)),
        "ppca": digest_of_test_split(load("ppca", n_train=40, n_test=16)),
        "ppca, more to train": digest_of_test_split(load("ppca", n_train=80, n_test=16)),
        "ppca, more to test": digest_of_test_split(load("ppca", n_train=40, n_test=17)),
    }
    assert digest["as built"] == digest["built again"]
    assert digest["ppca"] == digest["ppca, more to train"]
    assert len({digest[k] for k in digest} - {digest["as built"], digest["ppca"]}) == 3
    assert all(len(d) == 16 and int(d, 16) >= 0 for d in digest.values())


@pytest.mark.parametrize("name", TORCHVISION_SETS)
def test_missing_files_give_one_clear_line(name, tmp_path):
    from aebench_plugins.datasets.torchvision_sets import MissingDataError

    with pytest.raises(MissingDataError) as caught:
        load(name, root=str(tmp_path), download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("dataset files not found: ")
    assert str(tmp_path) in message and "download = true" in message  # it was off
    assert len(message) < 500, message  # it was 800
    expected = "t10k-images-idx3-ubyte" if name != "cifar10" else "data_batch_1"
    assert expected in message
    assert list(tmp_path.iterdir()) == []  # nothing was written, nothing downloaded


def test_root_defaults_to_aebench_data(tmp_path, monkeypatch):
    from aebench_plugins.datasets.torchvision_sets import MissingDataError

    monkeypatch.setenv("AEBENCH_DATA", str(tmp_path / "here"))
    with pytest.raises(MissingDataError, match=str(tmp_path / "here" / "MNIST" / "raw")):
        load("mnist", download=False)
    monkeypatch.delenv("AEBENCH_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(MissingDataError, match=str(tmp_path / "home" / ".cache/aebench/data")):
        load("mnist", download=False)


def test_shuffled_batches_cover_every_index_once():
    batches = list(shuffled_batches(10, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = list(shuffled_batches(10, 4, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))


class CountingDatasets:
    """A dataset plugin that counts how often it is materialised (and one that always fails)."""

    def __init__(self) -> None:
        self.loads = 0

    def counted(self, n: int = 64) -> Data:
        self.loads += 1
        x = torch.rand(n, 4, generator=torch.Generator().manual_seed(0))
        return Data(DataInfo(shape=(4,), kind="unit"), Split(x), Split(x[:16]))

    def broken(self) -> Data:
        self.loads += 1
        raise FileNotFoundError("broken: no files")

    @hookimpl
    def aebench_register_datasets(self, register):
        register("counted", self.counted)
        register("broken", self.broken)


def test_data_cache_loads_once_per_plugin_params_and_device():
    counter = CountingDatasets()
    cache = DataCache(load_plugins(extra=[counter]))
    cpu = torch.device("cpu")
    first = cache.get(Component("counted", {"n": 64}), cpu)
    assert cache.get(Component("counted", {"n": 64}), cpu) is first
    assert counter.loads == 1
    cache.get(Component("counted", {"n": 32}), cpu)
    assert counter.loads == 2


def test_data_cache_keeps_a_failure_instead_of_retrying_it():
    counter = CountingDatasets()
    cache = DataCache(load_plugins(extra=[counter]))
    for _ in range(2):
        with pytest.raises(FileNotFoundError, match="broken: no files"):
            cache.get(Component("broken", {}), torch.device("cpu"))
    assert counter.loads == 1


def test_a_suite_loads_its_dataset_once_for_all_its_trials(write_suite, tmp_path: Path):
    counter = CountingDatasets()
    plugins = load_plugins(extra=[counter])
    path = write_suite(
        build_suite(
            entry("ae", hidden=[8], latent_dim=2),
            name="cached",
            seeds=[0, 1],
            datasets=[entry("counted")],
            epochs=1,
            batch_size=32,
            tracking={"enabled": True},
        )
    )
    run = run_trials(load_suite(path, plugins), plugins, output=tmp_path / "out")
    assert [row["status"] for row in run.rows] == ["ok", "ok"]
    assert counter.loads == 1


def test_a_missing_dataset_fails_its_trials_with_the_one_line(write_suite, tmp_path: Path, plugins):
    empty = tmp_path / "empty"
    path = write_suite(
        build_suite(
            entry("ae"),
            name="missing",
            seeds=[0, 1],
            datasets=[entry("mnist", root=str(empty), download=False)],
            epochs=None,
            batch_size=None,
            metrics=None,
            tracking={"enabled": True},
        )
    )
    run = run_trials(load_suite(path, plugins), plugins, output=tmp_path / "out")
    assert [row["status"] for row in run.rows] == ["failed", "failed"]
    for row in run.rows:
        assert row["reason"].startswith(
            "MissingDataError in dataset 'mnist' (aebench 0.1.0): dataset files not found"
        )
        assert str(empty / "MNIST" / "raw") in row["reason"]


def test_a_failed_download_says_why_in_a_few_words_and_not_to_turn_download_on(
    tmp_path, monkeypatch
):
    import urllib.error

    from aebench_plugins.datasets import torchvision_sets
    from aebench_plugins.datasets.torchvision_sets import MissingDataError, Source

    real = Source.torchvision_class(Source("mnist", "MNIST", ""))

    class Offline(real):  # the files are missing, and every mirror is unreachable
        def __init__(self, root, train, download):
            if download:
                url = "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz"
                raise RuntimeError(
                    f"Error downloading train-images-idx3-ubyte.gz: Tried {url}, got: "
                    f"{urllib.error.URLError('[Errno -2] Name or service not known')}"
                )
            raise RuntimeError("Dataset not found.")

    monkeypatch.setattr(torchvision_sets.Source, "torchvision_class", lambda self: Offline)
    with pytest.raises(MissingDataError) as caught:
        load("mnist", root=str(tmp_path), download=True)
    message = str(caught.value)
    assert "the download failed (no network)" in message
    assert "download = true" not in message  # it is on already
    assert "Tried http" not in message and len(message) < 500
