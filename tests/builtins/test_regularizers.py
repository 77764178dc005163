"""The built-in regularizers: each penalty and corruption against an independent computation,
their declines, their parameter validation, and that they fit (or decline) every model."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, kl_divergence

from aebench import DataInfo, ModelOutput
from aebench.plugins.manager import load_plugins
from aebench_plugins.regularizers.contractive import (
    EXACT_MAX_CODE,
    jacobian_norm_estimate,
    jacobian_norm_exact,
)

DIGITS = DataInfo(shape=(1, 8, 8), kind="unit", n_classes=10)
REGULARIZER_NAMES = load_plugins().regularizers.names()
MODEL_NAMES = load_plugins().models.names()


def regularizer(name: str, **params):
    entry = load_plugins().regularizers.get(name)
    return entry.factory(**entry.params.model_validate(params).model_dump())


def model(name: str, info: DataInfo = DIGITS, **params):
    entry = load_plugins().models.get(name)
    return entry.factory(info, **entry.params.model_validate(params).model_dump())


def output_with(activations: torch.Tensor) -> ModelOutput:
    return ModelOutput(code=activations, recon=torch.zeros(len(activations), 1))


# -- sparsity ----------------------------------------------------------------------------------


def test_l1_penalty_is_the_weighted_sum_of_absolute_activations_per_sample():
    a = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, -3.0]])
    l1 = regularizer("l1", weight=0.1)
    penalty = l1.penalty(torch.zeros(2, 4), output_with(a), nn.Identity())
    torch.testing.assert_close(penalty, torch.tensor([0.35, 0.3]))


def test_l1_acts_on_the_hidden_activations_when_a_model_gives_them():
    out = ModelOutput(code=torch.ones(1, 2), recon=torch.zeros(1, 1), hidden=torch.full((1, 3), -2))
    assert regularizer("l1", weight=1.0).penalty(torch.zeros(1, 1), out, nn.Identity()).item() == 6


def test_kl_sparsity_penalty_by_hand():
    a = torch.tensor([[0.2, 0.9], [0.4, 0.5]])  # rho_hat = (0.3, 0.7)
    rho = 0.1
    by_hand = sum(
        rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r)) for r in (0.3, 0.7)
    )
    penalty = regularizer("kl-sparsity", rho=rho, weight=2.0).penalty(
        torch.zeros(2, 4), output_with(a), nn.Identity()
    )
    assert penalty.shape == ()
    assert math.isclose(penalty.item(), 2.0 * by_hand, rel_tol=1e-6)
    as_distributions = kl_divergence(Bernoulli(torch.tensor(rho)), Bernoulli(a.mean(0))).sum()
    assert math.isclose(penalty.item(), 2.0 * as_distributions.item(), rel_tol=1e-5)


def test_kl_sparsity_is_zero_at_the_target_rate_and_finite_when_units_saturate():
    reg = regularizer("kl-sparsity", rho=0.25)
    at_target = reg.penalty(torch.zeros(4, 1), output_with(torch.full((4, 3), 0.25)), None)
    assert at_target.abs().item() < 1e-6
    saturated = reg.penalty(torch.zeros(2, 1), output_with(torch.tensor([[0.0], [0.0]])), None)
    assert torch.isfinite(saturated)


@pytest.mark.parametrize(
    ("name", "params", "declined"),
    [
        ("ae", {"code_activation": "sigmoid"}, False),
        ("conv-ae", {"code_activation": "sigmoid"}, False),
        ("ae", {"code_activation": "linear"}, True),
        ("ae", {"code_activation": "relu"}, True),
        ("vae", {}, True),
    ],
)
def test_kl_sparsity_declines_a_code_outside_zero_one(name, params, declined):
    reason = regularizer("kl-sparsity").decline(model(name, **params), DIGITS)
    assert (reason is not None) == declined
    if declined:
        assert "kl-sparsity needs code activations in (0, 1)" in reason


def test_kl_sparsity_declines_a_model_that_does_not_state_its_range():
    assert regularizer("kl-sparsity").decline(nn.Sigmoid(), DIGITS) is not None


# -- denoising ---------------------------------------------------------------------------------


def corrupt(x: torch.Tensor, **params) -> torch.Tensor:
    return regularizer("denoising", **params).corrupt(x, torch.Generator().manual_seed(0))


def test_gaussian_corruption_adds_noise_of_the_given_std():
    x = torch.rand(200, 1, 32, 32)
    noise = corrupt(x, kind="gaussian", std=0.4) - x
    assert abs(noise.mean().item()) < 0.005
    assert abs(noise.std().item() - 0.4) < 0.005


def test_masking_sets_a_fraction_p_of_inputs_to_zero_and_keeps_the_rest():
    x = torch.rand(200, 1, 32, 32) + 0.5  # no zeros of its own
    y = corrupt(x, kind="masking", p=0.3)
    masked = y == 0
    assert abs(masked.float().mean().item() - 0.3) < 0.005
    torch.testing.assert_close(y[~masked], x[~masked])


def test_salt_and_pepper_sets_a_fraction_p_to_zero_or_one_with_equal_odds():
    x = torch.full((200, 1, 32, 32), 0.5)
    y = corrupt(x, kind="salt-pepper", p=0.2)
    salt, pepper = (y == 1).float().mean().item(), (y == 0).float().mean().item()
    assert abs(salt - 0.1) < 0.005 and abs(pepper - 0.1) < 0.005
    assert ((y == 0.5) | (y == 0) | (y == 1)).all()


def test_corruption_is_reproducible_from_the_generator_and_p_zero_is_the_identity():
    x = torch.rand(10, 64)
    torch.testing.assert_close(corrupt(x, kind="masking"), corrupt(x, kind="masking"))
    torch.testing.assert_close(corrupt(x, kind="salt-pepper", p=0.0), x)
    assert not torch.equal(corrupt(x, kind="gaussian"), x)


def test_salt_and_pepper_declines_real_valued_data():
    real = DataInfo(shape=(5,), kind="real")
    ae = model("ae", real)
    assert "needs data in [0, 1]" in regularizer("denoising", kind="salt-pepper").decline(ae, real)
    assert regularizer("denoising", kind="masking").decline(ae, real) is None


# -- contractive -------------------------------------------------------------------------------


def test_exact_jacobian_norm_of_a_linear_encoder_is_its_frobenius_norm():
    linear = nn.Linear(6, 3)
    x = torch.randn(4, 6)
    expected = linear.weight.pow(2).sum().expand(4)
    torch.testing.assert_close(jacobian_norm_exact(linear, x), expected)


def test_exact_jacobian_norm_matches_torch_autograd_jacobians():
    torch.manual_seed(0)
    encoder = model("ae", latent_dim=5, code_activation="sigmoid")
    x = torch.rand(3, *DIGITS.shape)
    expected = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda s: encoder.encode(s), xi.unsqueeze(0))
            .pow(2)
            .sum()
            for xi in x
        ]
    )
    torch.testing.assert_close(jacobian_norm_exact(encoder.encode, x), expected)


def test_estimated_jacobian_norm_is_unbiased():
    torch.manual_seed(0)
    encoder = model("ae", latent_dim=40, code_activation="sigmoid")
    x = torch.rand(2, *DIGITS.shape)
    exact = jacobian_norm_exact(encoder.encode, x).detach()
    repeated = x.repeat(4000, 1, 1, 1)  # each row draws its own projection
    draws = jacobian_norm_estimate(encoder.encode, repeated).detach().view(4000, 2)
    stderr = draws.std(0) / math.sqrt(len(draws))
    assert ((draws.mean(0) - exact).abs() < 4 * stderr).all()
    assert (draws.std(0) > 0).all()  # it is an estimate, not the exact value again


def test_contractive_penalty_is_exact_for_small_codes_and_estimated_above_the_threshold():
    torch.manual_seed(0)
    x = torch.rand(3, *DIGITS.shape)
    reg = regularizer("contractive", weight=0.5)
    small = model("ae", latent_dim=EXACT_MAX_CODE)
    exact = 0.5 * jacobian_norm_exact(small.encode, x)
    torch.testing.assert_close(reg.penalty(x, small(x), small), exact)
    large = model("ae", latent_dim=EXACT_MAX_CODE + 1)
    first, second = reg.penalty(x, large(x), large), reg.penalty(x, large(x), large)
    assert not torch.equal(first, second)  # random projections


@pytest.mark.parametrize("method", ["exact", "estimate"])
def test_contractive_penalty_carries_gradients_to_the_encoder(method):
    torch.manual_seed(0)
    ae = model("ae", latent_dim=4)
    x = torch.rand(3, *DIGITS.shape)
    regularizer("contractive", method=method).penalty(x, ae(x), ae).sum().backward()
    assert ae.encoder.net[0].weight.grad.abs().sum() > 0
    assert ae.decoder.net[0].weight.grad is None  # the decoder is not in J_f


# -- every regularizer with every model --------------------------------------------------------


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("name", REGULARIZER_NAMES)
def test_every_regularizer_fits_or_declines_every_model(name, model_name):
    torch.manual_seed(0)
    m = model(model_name, latent_dim=4)
    reg = regularizer(name)
    reason = reg.decline(m, DIGITS)
    if reason is not None:
        assert isinstance(reason, str) and reason
        return
    x = torch.rand(5, *DIGITS.shape)
    x_in = reg.corrupt(x, torch.Generator().manual_seed(0))
    assert x_in.shape == x.shape
    penalty = reg.penalty(x_in, m(x_in), m)
    assert penalty.shape in ((), (5,)) and torch.isfinite(penalty).all()


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("kl-sparsity", {"rho": 0.0}),
        ("kl-sparsity", {"rho": 1.0}),
        ("kl-sparsity", {"rho": 1.5}),
        ("kl-sparsity", {"weight": -1.0}),
        ("l1", {"weight": -0.1}),
        ("contractive", {"weight": -1.0}),
        ("contractive", {"projections": 0}),
        ("denoising", {"p": 1.5}),
        ("denoising", {"p": -0.1}),
        ("denoising", {"std": -1.0}),
        ("denoising", {"kind": "blur"}),
    ],
)
def test_out_of_range_parameters_are_validation_errors(name, params, plugins):
    with pytest.raises(pydantic.ValidationError):
        plugins.regularizers.get(name).params.model_validate(params)
