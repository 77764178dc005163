"""The conformance kit, applied to every registered built-in plugin."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from builders import build_suite, entry
from repo import SHARED
from torch import nn

from aebench import (
    Column,
    Data,
    DataInfo,
    Metric,
    MetricContext,
    ModelOutput,
    Regularizer,
    Split,
    load_plugins,
)
from aebench.contract.checks import ContractError
from aebench.observers.tracking_store import sqlite_uri
from aebench.run.suite import load_suite
from aebench.testing import (
    check_dataset,
    check_metric,
    check_model,
    check_observer,
    check_regularizer,
)

PLUGINS = load_plugins()  # read once for parametrisation; each test still builds its own
SHARED_DATA = SHARED / "data"

# Keep the datasets small; real image sets are read from the shared folder only, never downloaded.
DATASET_PARAMS = {
    "ppca": {"n_train": 300, "n_test": 100},
    "mixture2d": {"n_train": 300, "n_test": 100},
    "digits": {"val_fraction": 0.1, "binarize": "dynamic"},
}
IMAGE_SETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}


def image_only(factory) -> bool:
    """Whether a model declares that it needs (C, H, W) images (its ``image_only``)."""
    return bool(getattr(factory, "image_only", False))


@pytest.mark.parametrize("name", PLUGINS.models.names())
def test_every_model_keeps_the_contract(name, plugins):
    factory = plugins.models.get(name).factory
    shapes = [(1, 8, 8), (1, 28, 28)] if image_only(factory) else [(64,), (1, 8, 8), (1, 28, 28)]
    check_model(factory, shapes=shapes, params={"latent_dim": 4})


def test_the_convolutional_models_declare_that_they_need_images(plugins):
    # conv-<family> is the built-ins' name for a conv network, and each declares it; that they
    # refuse flat data with a clear error is tests/builtins/test_models.py's check of every conv-
    # model
    declared = {
        name for name in plugins.models.names() if image_only(plugins.models.get(name).factory)
    }
    assert declared == {name for name in plugins.models.names() if name.startswith("conv-")}


@pytest.mark.parametrize("name", PLUGINS.regularizers.names())
def test_every_regularizer_keeps_the_contract(name, plugins):
    check_regularizer(plugins.regularizers.get(name).factory)


@pytest.mark.parametrize("name", PLUGINS.datasets.names())
def test_every_dataset_keeps_the_contract(name, plugins):
    params = dict(DATASET_PARAMS.get(name, {}))
    if name in IMAGE_SETS or name == "cifar10":
        folder = SHARED_DATA / ("cifar-10-batches-py" if name == "cifar10" else IMAGE_SETS[name])
        if not folder.exists():
            pytest.skip(f"{name}: no files under {folder} (nothing is downloaded in tests)")
        params |= {"root": str(SHARED_DATA), "download": False, "n_train": 500, "n_test": 200}
    check_dataset(plugins.datasets.get(name).factory, params=params)


def hierarchy_contexts() -> list[MetricContext]:
    """A small untrained two-layer VAE (it declares its latent_layers) on binary 8x8 images."""
    plugins = load_plugins()
    info = DataInfo(shape=(1, 8, 8), kind="binary", n_classes=2)
    torch.manual_seed(0)
    factory = plugins.models.get("vae-2layer").factory
    model = factory(info, latent_dim=3, top_dim=1, hidden=[8], top_hidden=[4]).eval()
    x = torch.bernoulli(torch.full((64, 1, 8, 8), 0.5), generator=torch.Generator().manual_seed(0))
    split = Split(x, torch.arange(64) % 2)
    return [
        MetricContext(
            model=model,
            data=Data(info, split, split),
            settings={"metrics": None, "params": {}},
            device=torch.device("cpu"),
            generator=torch.Generator().manual_seed(0),
        )
    ]


# Metrics that apply to none of the kit's own models, and the contexts they are checked on.
CONTEXTS = {"active_units_by_layer": hierarchy_contexts}
# Sizes for the kit's 64-sample data: the published protocols' 10,000 points take minutes.
FEW_POINTS = {"train_points": 64, "eval_points": 32, "batch_size": 8}
PARAMS = {
    "beta_vae_score": FEW_POINTS,
    "factor_vae_score": FEW_POINTS | {"variance_points": 64},
    "sap": {"train_points": 64, "test_points": 32},
    "dci": {"train_points": 64, "test_points": 32},
    "explicitness": {"train_points": 64, "test_points": 32},
    "mig": {"points": 64},
    "modularity": {"points": 64},
}


@pytest.mark.parametrize("name", PLUGINS.metrics.names())
def test_every_metric_keeps_the_contract(name, plugins):
    contexts = CONTEXTS[name]() if name in CONTEXTS else None
    factory = plugins.metrics.get(name).factory
    check_metric(factory, params=PARAMS.get(name), contexts=contexts)


@pytest.mark.parametrize("name", PLUGINS.observers.names())
def test_every_observer_keeps_the_contract(name, write_suite, tmp_path, plugins):
    uri = sqlite_uri(tmp_path / "mlflow.db")  # the MLflow observer on a store of this test's
    built = build_suite(
        entry("ae", latent_dim=2, hidden=[8]),
        name="observed",
        epochs=None,
        batch_size=None,
        metrics=None,
        tracking={"uri": uri},
    )
    suite = write_suite(built)
    check_observer(plugins.observers.get(name).factory, load_suite(suite, plugins))


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


class NoLoss(Frozen):
    """Every method but the loss."""

    loss = None  # type: ignore[assignment]


def test_the_kit_names_a_missing_method_of_the_contract():
    # before: torch's "AttributeError: 'NoLoss' object has no attribute 'loss'", from inside
    # the check, naming no contract
    with pytest.raises(ContractError, match="^NoLoss has no loss method$"):
        check_model(NoLoss, shapes=[(1, 8, 8)])


def test_the_kit_rejects_a_model_whose_loss_has_no_gradient():
    with pytest.raises(AssertionError, match="gradient"):
        check_model(Frozen, shapes=[(1, 8, 8)])


def test_the_kit_rejects_a_penalty_of_the_wrong_shape():
    with pytest.raises(Exception, match="penalty has shape"):
        check_regularizer(BatchPenalty)


def test_the_kit_runs_a_model_on_the_data_kinds_it_declares():
    seen = []

    class RealOnly(WrongShape):
        """Takes real-valued data only."""

        data_kinds = ("real",)

        def __init__(self, info, latent_dim: int = 2):
            seen.append(info.kind)
            super().__init__(info, latent_dim)

    with pytest.raises(Exception, match="reconstruction has shape"):
        check_model(RealOnly, shapes=[(1, 8, 8)])
    assert seen == ["real"]


def undeclared(context):
    """Returns a column it does not declare."""
    return {"declared": 1.0, "surprise": 2.0}


def text_valued(context):
    """Returns text where a number belongs."""
    return {"declared": "high"}


@pytest.mark.parametrize(
    "compute, message",
    [(undeclared, "it declares the columns"), (text_valued, "a finite number .or NaN. expected")],
)
def test_the_kit_rejects_a_metric_off_its_declaration(compute, message):
    with pytest.raises(Exception, match=message):
        check_metric(Metric(compute, columns=[Column("declared")]))


def test_the_kit_rejects_an_observer_that_cannot_take_a_failed_trial(tmp_path):
    from aebench import SuiteObserver

    class NeedsAModel(SuiteObserver):
        def trial_finished(self, trial, row, outcome):
            outcome.model.eval()  # a failed trial has no model

    with pytest.raises(AssertionError, match="must accept a skipped row") as caught:
        check_observer(lambda suite: NeedsAModel())
    assert isinstance(caught.value.__cause__, AttributeError)


def built_ins_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if aebench were installed without its built-in plugins: their entry points are gone."""
    every = importlib.metadata.entry_points

    def third_parties_only(**selection) -> importlib.metadata.EntryPoints:
        found = every(**selection)
        return importlib.metadata.EntryPoints(
            ep for ep in found if ep.dist is None or ep.dist.name != "aebench"
        )

    monkeypatch.setattr(importlib.metadata, "entry_points", third_parties_only)
    assert not load_plugins().infos  # no plugin at all: the built-ins are not there


def test_the_kit_checks_an_observer_without_the_built_in_plugins(monkeypatch):
    from aebench import SuiteObserver

    built_ins_not_installed(monkeypatch)
    heard = []

    class Recording(SuiteObserver):
        def suite_started(self, suite, output, trials):
            heard.append(f"started {len(trials)}")

        def trial_finished(self, trial, row, outcome):
            heard.append(f"{row['status']} {outcome.model is not None}")

        def suite_finished(self, run):
            heard.append(f"finished interrupted={run.interrupted}")

    check_observer(lambda suite: Recording())
    assert heard[:2] == ["started 4", "ok True"]
    assert heard[-1] == "finished interrupted=False"  # the re-measure's run

    class Breaking(SuiteObserver):
        def trial_finished(self, trial, row, outcome):
            raise OSError("disk full")

    with pytest.raises(AssertionError, match="must accept an ok row.*OSError: disk full"):
        check_observer(lambda suite: Breaking())


def test_the_kit_rejects_unit_data_off_its_declared_levels():
    from aebench import Data, DataInfo, Split

    def grey() -> Data:
        x = torch.full((4, 3), 0.3)  # not k / 16 for any k
        return Data(DataInfo(shape=(3,), kind="unit", levels=17), Split(x), Split(x))

    with pytest.raises(AssertionError, match="not on the grid of 17 levels"):
        check_dataset(grey)
