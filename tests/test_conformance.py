"""The conformance kit, applied to every registered built-in plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from aebench import ModelOutput, Regularizer
from aebench.plugins import load_plugins
from aebench.testing import check_dataset, check_model, check_regularizer

PLUGINS = load_plugins()  # read once for parametrisation; each test still builds its own
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONV = {"conv-ae", "conv-vae"}  # convolutional models need (C, H, W) images

# Keep the datasets small; real image sets are read from the shared folder only, never downloaded.
DATASET_PARAMS = {
    "ppca": {"n_train": 300, "n_test": 100},
    "mixture2d": {"n_train": 300, "n_test": 100},
    "digits": {"val_fraction": 0.1, "binarize": "dynamic"},
}
IMAGE_SETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}


@pytest.mark.parametrize("name", PLUGINS.models.names())
def test_every_model_keeps_the_contract(name):
    factory = load_plugins().models.get(name).factory
    shapes = [(1, 8, 8), (1, 28, 28)] if name in CONV else [(64,), (1, 8, 8), (1, 28, 28)]
    check_model(factory, shapes=shapes, params={"latent_dim": 4})


@pytest.mark.parametrize("name", PLUGINS.regularizers.names())
def test_every_regularizer_keeps_the_contract(name):
    check_regularizer(load_plugins().regularizers.get(name).factory)


@pytest.mark.parametrize("name", PLUGINS.datasets.names())
def test_every_dataset_keeps_the_contract(name):
    params = dict(DATASET_PARAMS.get(name, {}))
    if name in IMAGE_SETS or name == "cifar10":
        folder = SHARED_DATA / ("cifar-10-batches-py" if name == "cifar10" else IMAGE_SETS[name])
        if not folder.exists():
            pytest.skip(f"{name}: no files under {folder} (nothing is downloaded in tests)")
        params |= {"root": str(SHARED_DATA), "download": False, "n_train": 500, "n_test": 200}
    check_dataset(load_plugins().datasets.get(name).factory, params=params)


# The kit must fail loudly on plugins that break the contract, or it checks nothing.


class WrongShape(nn.Module):
    """Reconstructs at the wrong shape."""

    def __init__(self, info, latent_dim: int = 2):
        super().__init__()
        self.layer = nn.Linear(64, 32)

    def encode(self, x):
        return self.layer(x.flatten(1))[:, :2]

    def decode(self, z):
        return torch.zeros(len(z), 32)

    def forward(self, x):
        return ModelOutput(code=self.encode(x), recon=self.layer(x.flatten(1)))

    def loss(self, x, out):
        return out.recon.pow(2).sum(1)


class Frozen(WrongShape):
    """Right shapes, but the loss ignores the parameters: nothing can learn."""

    def forward(self, x):
        return ModelOutput(code=self.encode(x), recon=x.clone())

    def loss(self, x, out):
        return (out.recon - x).pow(2).flatten(1).sum(1)

    def decode(self, z):
        return torch.zeros(len(z), 1, 8, 8)


class BatchPenalty(Regularizer):
    """A penalty of the wrong shape."""

    def penalty(self, x_in, out, model):
        return torch.ones(len(x_in), 3)


def test_the_kit_rejects_a_wrong_reconstruction_shape():
    with pytest.raises(Exception, match="reconstruction has shape"):
        check_model(WrongShape, shapes=[(1, 8, 8)])


def test_the_kit_rejects_a_model_whose_loss_has_no_gradient():
    with pytest.raises(AssertionError, match="gradient"):
        check_model(Frozen, shapes=[(1, 8, 8)])


def test_the_kit_rejects_a_penalty_of_the_wrong_shape():
    with pytest.raises(Exception, match="penalty has shape"):
        check_regularizer(BatchPenalty)
