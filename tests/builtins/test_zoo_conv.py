"""The conv variants: each is its MLP family's class (its objective, the same code) on conv
networks, generated from it with the family's parameters (``channels`` for ``hidden``), and states
its paper, year and which likelihood metrics apply."""

from __future__ import annotations

import pickle

import pytest
import torch

from aebench import DataInfo, LatentVariableModel, load_plugins
from aebench_plugins.models.adversarial import AAE, FactorVAE
from aebench_plugins.models.disentangling import (
    DIPVAEI,
    DIPVAEII,
    AnnealedVAE,
    BetaTCVAE,
)
from aebench_plugins.models.mmd import DeterministicWAE, GaussianWAE, InfoVAE
from aebench_plugins.models.networks import ConvEncoder
from aebench_plugins.models.rae import RAE
from aebench_plugins.models.vqvae import VQVAE

# each conv variant and the class of its MLP family
FAMILIES = {
    "conv-beta-tcvae": BetaTCVAE,
    "conv-dip-vae-i": DIPVAEI,
    "conv-dip-vae-ii": DIPVAEII,
    "conv-annealed-vae": AnnealedVAE,
    "conv-factor-vae": FactorVAE,
    "conv-infovae": InfoVAE,
    "conv-wae-mmd": DeterministicWAE,
    "conv-rae": RAE,
    "conv-vq-vae": VQVAE,
    "conv-aae": AAE,
}
IMAGES = DataInfo(shape=(1, 8, 8), kind="unit", levels=17)
PLUGINS = load_plugins()  # loaded once: every test here only builds models


def build(name: str, **params):
    torch.manual_seed(0)
    return PLUGINS.models.get(name).factory(IMAGES, latent_dim=4, channels=[4, 8], **params)


def test_every_family_used_on_images_has_a_conv_variant_and_no_other() -> None:
    conv = {n for n in PLUGINS.models.names() if n.startswith("conv-")}
    assert conv == set(FAMILIES) | {"conv-ae", "conv-vae"}


@pytest.mark.parametrize("name", FAMILIES)
def test_a_conv_variant_is_its_familys_class_on_conv_networks(name) -> None:
    model = build(name)
    assert isinstance(model, FAMILIES[name])
    assert isinstance(model.encoder, ConvEncoder)


@pytest.mark.parametrize("name", [*FAMILIES, "conv-ae"])
def test_a_conv_variant_takes_its_familys_parameters_with_channels_for_hidden(name) -> None:
    family = PLUGINS.models.get(name.removeprefix("conv-")).params.model_fields
    variant = PLUGINS.models.get(name).params.model_fields
    assert list(variant) == ["channels" if n == "hidden" else n for n in family]
    for field, info in variant.items():
        if field == "channels":  # at least one layer, two by default
            assert info.default == [32, 64] and info.metadata[0].min_length == 1
        else:  # the same type, constraints and default: the same trial ids
            assert repr(info) == repr(family[field]), field


@pytest.mark.parametrize("name", [*FAMILIES, "conv-ae"])
def test_a_generated_variant_is_found_under_its_own_name(name) -> None:
    factory = PLUGINS.models.get(name).factory
    assert factory.model_name == name and factory.image_only
    assert pickle.loads(pickle.dumps(factory)) is factory  # a module-level name, like any class


def test_the_gaussian_conv_wae_is_the_gaussian_wae() -> None:
    model = build("conv-wae-mmd", encoder="gaussian")
    assert isinstance(model, GaussianWAE) and isinstance(model.encoder, ConvEncoder)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_list_states_paper_year_and_which_likelihood_metrics_apply(name) -> None:
    first = PLUGINS.models.get(name).factory.__doc__.strip().splitlines()[0]
    assert "et al. 20" in first or "& Mnih 20" in first, first
    # "no ELBO" exactly where the model has no posterior to bound log p(x) with
    latent = isinstance(build(name), LatentVariableModel)
    assert ("no ELBO" in first) == (not latent), first
    assert "ELBO" in first
