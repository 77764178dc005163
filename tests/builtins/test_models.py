"""The built-in models: shapes and the LatentVariableModel contract for every registered model,
and each loss term against an independent computation (torch.distributions, Monte Carlo, by
hand)."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from aebench import DataInfo, LatentVariableModel
from aebench.plugins.manager import load_plugins
from aebench_plugins.models.gaussian import kl_to_standard_normal, reparameterise
from aebench_plugins.models.iwae import importance_weighted_bound

DIGITS = DataInfo(shape=(1, 8, 8), kind="unit", n_classes=10)
MODEL_NAMES = load_plugins().models.names()
IMAGE_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def build(name: str, info: DataInfo = DIGITS, **params):
    """A model from the registry, its parameters validated as a suite's would be."""
    entry = load_plugins().models.get(name)
    return entry.factory(info, **entry.params.model_validate(params).model_dump())


def normal_log_density(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std^2) per element, written out."""
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)


# -- every registered model --------------------------------------------------------------------


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_gives_codes_reconstructions_and_a_per_sample_loss(name, shape):
    torch.manual_seed(0)
    model = build(name, DataInfo(shape=shape, kind="unit"), latent_dim=3)
    x = torch.rand(5, *shape)
    out = model(x)
    assert out.code.shape == (5, 3) and out.recon.shape == x.shape
    assert model.encode(x).shape == (5, 3) and model.decode(out.code).shape == x.shape
    loss = model.loss(x, out)
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_latent_variable_models_expose_their_three_distributions(name):
    torch.manual_seed(0)
    model = build(name, latent_dim=4)
    if not isinstance(model, LatentVariableModel):
        pytest.skip(f"{name} is not a latent-variable model")
    x = torch.rand(6, *DIGITS.shape)  # intensities in [0, 1], not only {0, 1}
    prior, posterior = model.prior(), model.posterior(x)
    assert prior.event_shape == (4,) and prior.batch_shape == ()
    assert posterior.batch_shape == (6,) and posterior.event_shape == (4,)
    z = posterior.rsample()
    likelihood = model.likelihood(z)
    assert likelihood.batch_shape == (6,) and likelihood.event_shape == DIGITS.shape
    assert torch.isfinite(likelihood.log_prob(x)).all()
    assert likelihood.log_prob(x).shape == (6,)
    try:
        mean = posterior.mean
    except NotImplementedError:  # a flow's q(z|x): no closed-form mean, encode says what it gives
        mean = None
    if mean is not None:
        torch.testing.assert_close(model.encode(x), mean)
    torch.testing.assert_close(model.decode(z), likelihood.mean)
    # codes of any leading shape: (samples, batch, latent)
    assert model.likelihood(z.expand(3, 6, 4)).batch_shape == (3, 6)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_builds_from_its_defaults_alone(name, plugins):
    entry = plugins.models.get(name)
    model = entry.factory(DIGITS, **entry.params.model_validate({}).model_dump())
    assert model(torch.rand(2, *DIGITS.shape)).recon.shape == (2, *DIGITS.shape)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n.startswith("conv-")])
def test_conv_models_refuse_flat_data_with_a_clear_error(name):
    with pytest.raises(ValueError, match=r"needs image data shaped \(C, H, W\).*\(64,\)"):
        build(name, DataInfo(shape=(64,), kind="unit"))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ae", {"latent_dim": 0}),
        ("ae", {"hidden": [0]}),
        ("ae", {"code_activation": "tanh"}),
        ("conv-ae", {"channels": []}),
        ("vae", {"beta": -1.0}),
        ("vae", {"mc_samples": 0}),
        ("vae", {"sigma": 0.0}),
        ("vae", {"likelihood": "poisson"}),
        ("iwae", {"k": 0}),
        ("conv-vae", {"latent_dim": "16"}),
    ],
)
def test_out_of_range_parameters_are_validation_errors(name, params, plugins):
    with pytest.raises(pydantic.ValidationError):
        plugins.models.get(name).params.model_validate(params)


# -- the deterministic autoencoders ------------------------------------------------------------


@pytest.mark.parametrize("name", ["ae", "conv-ae"])
def test_code_activations_bound_the_code_and_say_so(name):
    x = torch.rand(32, *DIGITS.shape)
    sigmoid = build(name, code_activation="sigmoid")
    relu = build(name, code_activation="relu")
    linear = build(name, code_activation="linear")
    assert ((sigmoid.encode(x) > 0) & (sigmoid.encode(x) < 1)).all()
    assert (relu.encode(x) >= 0).all()
    assert (linear.encode(x) < 0).any()
    assert sigmoid.code_range == (0.0, 1.0)
    assert relu.code_range == (0.0, math.inf)
    assert linear.code_range is None


def test_an_overcomplete_code_is_possible():
    model = build("ae", latent_dim=128, code_activation="relu")  # 128 > 64 inputs
    out = model(torch.rand(4, *DIGITS.shape))
    assert out.code.shape == (4, 128)


def test_ae_loss_is_bernoulli_cross_entropy_for_unit_data_and_squared_error_for_real():
    torch.manual_seed(0)
    x = torch.rand(3, *DIGITS.shape)
    model = build("ae")
    out = model(x)
    p = out.recon
    bce = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(model.loss(x, out), bce, rtol=1e-4, atol=1e-4)
    real = build("ae", DataInfo(shape=(5,), kind="real"))
    xr = torch.randn(3, 5)
    out = real(xr)
    torch.testing.assert_close(real.loss(xr, out), 0.5 * ((out.recon - xr) ** 2).sum(1))


# -- the Gaussian pieces -----------------------------------------------------------------------


def test_closed_form_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(7, 5), torch.randn(7, 5)
    q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    p = Independent(Normal(torch.zeros(5), torch.ones(5)), 1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), kl_divergence(q, p))


def test_closed_form_kl_matches_a_monte_carlo_estimate():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[0.3, -0.7, 0.0]])
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(400_000, 3)
    log_ratio = (
        normal_log_density(z, mu, std) - normal_log_density(z, torch.zeros(3), torch.ones(3))
    ).sum(1)
    stderr = log_ratio.std() / math.sqrt(len(z))
    assert abs(log_ratio.mean() - kl_to_standard_normal(mu, logvar)[0]) < 4 * stderr


def test_reparameterised_samples_have_the_posterior_mean_and_variance():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([1.5, -2.0]), torch.tensor([0.4, -1.2])
    z = reparameterise(mu, logvar, 200_000)
    assert z.shape == (200_000, 2)
    torch.testing.assert_close(z.mean(0), mu, atol=0.01, rtol=0)
    torch.testing.assert_close(z.var(0), logvar.exp(), atol=0.01, rtol=0.01)


def test_reparameterised_samples_carry_gradients_to_mu_and_sigma():
    mu = torch.tensor([0.5, -1.0], requires_grad=True)
    logvar = torch.tensor([0.2, -0.4], requires_grad=True)
    torch.manual_seed(3)
    z = reparameterise(mu, logvar, 10)
    z.sum().backward()
    eps = (z - mu) / torch.exp(0.5 * logvar)  # the noise that was drawn
    # dz/dmu = 1 and dz/dlogvar = eps * sigma / 2, summed over the 10 draws
    torch.testing.assert_close(mu.grad, torch.full((2,), 10.0))
    expected = (eps * 0.5 * torch.exp(0.5 * logvar)).sum(0).detach()
    torch.testing.assert_close(logvar.grad, expected)
    assert (logvar.grad != 0).all()


# -- the VAE loss ------------------------------------------------------------------------------


def test_vae_loss_with_a_bernoulli_likelihood_by_hand():
    torch.manual_seed(0)
    model = build("vae", latent_dim=3, beta=0.5, mc_samples=4, likelihood="bernoulli")
    x = torch.rand(5, *DIGITS.shape)
    out = model(x)
    mu, logvar, logits = out.extras["mu"], out.extras["logvar"], out.extras["decoded"]
    assert logits.shape == (4, 5, *DIGITS.shape)
    p = torch.sigmoid(logits)
    log_lik = (x * p.log() + (1 - x) * (1 - p).log()).flatten(2).sum(2).mean(0)
    kl = kl_divergence(
        Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros(()), torch.ones(()))
    ).sum(1)
    torch.testing.assert_close(model.loss(x, out), -(log_lik - 0.5 * kl), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("likelihood", ["gaussian", "gaussian-learned"])
def test_vae_loss_with_a_gaussian_likelihood_by_hand(likelihood):
    torch.manual_seed(0)
    info = DataInfo(shape=(6,), kind="real")
    model = build("vae", info, latent_dim=2, likelihood=likelihood, sigma=0.5, beta=2.0)
    x = torch.randn(4, 6)
    out = model(x)
    mu, logvar = out.extras["mu"], out.extras["logvar"]
    decoded = out.extras["decoded"][0]
    if likelihood == "gaussian":  # sigma fixed at 0.5
        mean, std = decoded, torch.tensor(0.5)
    else:  # the decoder's second half of outputs: log sigma relative to 0.5, per element
        mean, log_scale = decoded.chunk(2, dim=-1)
        std = 0.5 * log_scale.exp()
    log_lik = normal_log_density(x, mean, std).sum(1)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    loss = model.loss(x, out)
    torch.testing.assert_close(loss, -(log_lik - 2.0 * kl), rtol=1e-4, atol=1e-4)
    loss.mean().backward()
    last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    scale_rows = last.weight.grad[6:] if likelihood == "gaussian-learned" else None
    assert scale_rows is None or scale_rows.abs().sum() > 0  # the scale is learned


@pytest.mark.parametrize("name", ["vae", "iwae", "conv-vae"])
def test_the_default_likelihood_follows_the_data(name):
    def resolved(info: DataInfo, **params) -> str:
        return build(name, info, **params).likelihood_name

    assert resolved(DataInfo((1, 4, 4), "binary")) == "bernoulli"
    assert resolved(DataInfo((1, 4, 4), "unit", levels=256)) == "discretized-logistic-256"
    assert resolved(DataInfo((1, 4, 4), "unit", levels=17)) == "discretized-logistic-17"
    assert resolved(DataInfo((1, 4, 4), "unit")) == "continuous-bernoulli"
    assert resolved(DataInfo((1, 4, 4), "real")) == "gaussian-learned"
    # explicit choices: a Bernoulli may still be put on grey levels, but not on real data
    assert resolved(DataInfo((1, 4, 4), "unit"), likelihood="bernoulli") == "bernoulli"
    binary = DataInfo((1, 4, 4), "binary")
    assert resolved(binary, likelihood="discretized-logistic") == "discretized-logistic-2"
    for likelihood in ("bernoulli", "continuous-bernoulli", "discretized-logistic"):
        with pytest.raises(ValueError, match="needs data in \\[0, 1\\]"):
            build(name, DataInfo((1, 4, 4), "real"), likelihood=likelihood)
    with pytest.raises(ValueError, match="levels are unknown"):
        build(name, DataInfo((1, 4, 4), "unit"), likelihood="discretized-logistic")


@pytest.mark.parametrize("name", ["iwae", "miwae", "piwae", "ciwae"])
def test_a_model_built_on_the_vaes_constructor_names_itself_in_its_errors(name):
    # they once said "vae:", the name written in VAE's constructor
    with pytest.raises(ValueError, match=f"^{name}: likelihood 'bernoulli' needs data in"):
        build(name, DataInfo((1, 4, 4), "real"), likelihood="bernoulli")


def test_beta_zero_is_reconstruction_only():
    torch.manual_seed(0)
    model = build("vae", beta=0.0)
    x = torch.rand(3, *DIGITS.shape)
    out = model(x)
    log_lik = model._likelihood_of(out.extras["decoded"]).log_prob(x).mean(0)
    torch.testing.assert_close(model.loss(x, out), -log_lik)


# -- the IWAE bound ----------------------------------------------------------------------------


def test_importance_weighted_bound_by_hand():
    log_lik = torch.tensor([[-3.0, -1.0], [-2.0, -4.0], [-5.0, -0.5]])
    log_prior = torch.tensor([[-1.0, -1.5], [-0.5, -2.0], [-1.0, -1.0]])
    log_post = torch.tensor([[-0.2, -0.1], [-0.3, -0.4], [-0.6, -0.9]])
    weights = torch.exp(log_lik + log_prior - log_post).double()
    expected = torch.log(weights.mean(0)).float()
    torch.testing.assert_close(importance_weighted_bound(log_lik, log_prior, log_post), expected)


def test_iwae_with_one_sample_equals_the_elbo_on_the_same_draw():
    torch.manual_seed(0)
    model = build("iwae", latent_dim=3, k=1, likelihood="bernoulli")
    x = torch.rand(5, *DIGITS.shape)
    out = model(x)
    z, mu, logvar = out.extras["z"][0], out.extras["mu"], out.extras["logvar"]
    std = torch.exp(0.5 * logvar)
    p = torch.sigmoid(out.extras["decoded"][0])
    log_lik = (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    log_q = normal_log_density(z, mu, std).sum(1)
    log_prior = normal_log_density(z, torch.zeros(()), torch.ones(())).sum(1)
    elbo_one_draw = log_lik + log_prior - log_q
    torch.testing.assert_close(-model.loss(x, out), elbo_one_draw, rtol=1e-4, atol=1e-3)


def test_iwae_with_one_sample_matches_the_vae_elbo_in_expectation():
    torch.manual_seed(0)
    iwae = build("iwae", latent_dim=2, k=1, hidden=[16])
    vae = build("vae", latent_dim=2, hidden=[16], mc_samples=20_000)
    vae.load_state_dict(iwae.state_dict())  # the same networks
    x = torch.rand(1, *DIGITS.shape)
    with torch.no_grad():
        elbo = -vae.loss(x, vae(x))  # closed-form KL, 20,000 draws for E_q log p(x|z)
        many = x.expand(20_000, *DIGITS.shape)  # one draw each: 20,000 one-sample bounds
        draws = -iwae.loss(many, iwae(many))
    stderr = draws.std() / math.sqrt(len(draws))
    assert abs(draws.mean() - elbo[0]) < 4 * stderr + 0.01


def test_the_iwae_bound_is_tighter_than_the_elbo_on_average():
    torch.manual_seed(0)
    iwae = build("iwae", latent_dim=2, k=50, hidden=[16])
    one = build("iwae", latent_dim=2, k=1, hidden=[16])
    one.load_state_dict(iwae.state_dict())
    x = torch.rand(64, *DIGITS.shape)
    with torch.no_grad():
        assert -iwae.loss(x, iwae(x)).mean() > -one.loss(x, one(x)).mean()
