"""The plugin's own tests: aebench's conformance kit, and the penalty against a hand computation."""

import torch
from aebench_plugin_example.models import TiedAutoencoder
from aebench_plugin_example.regularizers import CodeL2

from aebench import ModelOutput, load_plugins
from aebench.testing import check_model, check_regularizer


def test_the_model_keeps_the_contract():
    check_model(TiedAutoencoder, params={"latent_dim": 8})


def test_the_regularizer_keeps_the_contract():
    check_regularizer(CodeL2)


def test_the_penalty_is_weight_times_the_squared_norm():
    code = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    out = ModelOutput(code=code, recon=torch.zeros(2, 3))
    penalty = CodeL2(weight=0.5).penalty(torch.zeros(2, 3), out, None)
    assert penalty.tolist() == [0.5 * 5.0, 0.5 * 0.25]


def test_aebench_finds_the_plugin_through_its_entry_point():
    plugins = load_plugins()
    entry = plugins.models.get("tied-ae")
    assert entry.distribution == "aebench-plugin-example"
    assert plugins.regularizers.get("code-l2").factory is CodeL2
