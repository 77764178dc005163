"""The importance-weighted variants (MIWAE, CIWAE, PIWAE), the flow posteriors (planar, IAF) and
the VampPrior, each against an independent computation on small tensors: bounds by explicit loops
over fixed draws, log-determinants by autograd Jacobians, the prior by a written-out mixture sum,
and the Monte-Carlo KL against the closed form where both exist."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian
from torch.distributions import Independent, Normal, kl_divergence

from aebench import DataInfo
from aebench.estimators.likelihood import (
    elbo_terms,
    importance_sampling,
    posterior_means,
    prior_mc_estimate,
)
from aebench.plugins.manager import load_plugins
from aebench_plugins.models.flows import PlanarTransform, invertible_u
from aebench_plugins.models.gaussian import kl_to_standard_normal
from aebench_plugins.models.iaf import MADE, IAFTransform
from aebench_plugins.models.iw_variants import ciwae_bound, miwae_bound
from aebench_plugins.models.iwae import importance_weighted_bound

BINARY = DataInfo(shape=(6,), kind="binary")
MINE = [
    "miwae",
    "piwae",
    "ciwae",
    "planar-vae",
    "iaf-vae",
    "vampprior",
    "vae-2layer",
    "iwae-2layer",
]


def build(name: str, info: DataInfo = BINARY, **params):
    """A model from the registry, its parameters validated as a suite's would be."""
    entry = load_plugins().models.get(name)
    torch.manual_seed(0)
    return entry.factory(info, **entry.params.model_validate(params).model_dump())


def binary_batch(n: int = 4, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, *BINARY.shape), 0.5), generator=generator)


def normal_log_density(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std^2) per element, written out."""
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)


def explicit_log_weights(model, x: torch.Tensor, out) -> list[list[float]]:
    """log p(x|z) + log p(z) - log q(z|x) for every draw s and input b, one at a time: the
    Bernoulli log-likelihood of the decoder's logits, the N(0, I) prior, the Gaussian q."""
    z, mu, logvar = out.extras["z"], out.extras["mu"], out.extras["logvar"]
    weights = []
    for s in range(len(z)):
        row = []
        for b in range(len(x)):
            logits = model.decoder(z[s, b : b + 1])[0]
            log_lik = (x[b] * logits - torch.nn.functional.softplus(logits)).sum()
            zero, one = torch.zeros(()), torch.ones(())
            log_prior = normal_log_density(z[s, b], zero, one).sum()
            log_q = normal_log_density(z[s, b], mu[b], torch.exp(0.5 * logvar[b])).sum()
            row.append((log_lik + log_prior - log_q).item())
        weights.append(row)
    return weights


def log_mean_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


# -- the bounds on log-weights -----------------------------------------------------------------


def test_miwae_and_ciwae_bounds_against_loops_over_the_log_weights():
    torch.manual_seed(0)
    m, k, b = 3, 4, 5
    log_w = 3 * torch.randn(m * k, b, dtype=torch.float64)
    miwae = miwae_bound(log_w, m)
    for j in range(b):
        groups = [[log_w[g * k + i, j].item() for i in range(k)] for g in range(m)]
        expected = sum(log_mean_exp(group) for group in groups) / m
        assert miwae[j].item() == pytest.approx(expected, rel=1e-12)
    iwae = importance_weighted_bound(log_w, torch.zeros_like(log_w), torch.zeros_like(log_w))
    torch.testing.assert_close(miwae_bound(log_w, 1), iwae)  # MIWAE(1, K) = IWAE(K)
    torch.testing.assert_close(miwae_bound(log_w, m * k), log_w.mean(0))  # MIWAE(M, 1) = ELBO
    torch.testing.assert_close(ciwae_bound(log_w, 1.0), log_w.mean(0))  # beta = 1: the ELBO
    torch.testing.assert_close(ciwae_bound(log_w, 0.0), iwae)  # beta = 0: the IWAE bound
    mixed = ciwae_bound(log_w, 0.3)
    for j in range(b):
        column = log_w[:, j].tolist()
        expected = 0.3 * sum(column) / len(column) + 0.7 * log_mean_exp(column)
        assert mixed[j].item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="groups"):
        miwae_bound(log_w, 5)


# -- the models' losses against explicit loops over fixed draws --------------------------------


def test_miwae_loss_is_the_mean_of_m_iwae_bounds_of_its_draws():
    model = build("miwae", latent_dim=2, hidden=[8], likelihood="bernoulli", m=2, k=3)
    x = binary_batch()
    torch.manual_seed(3)
    out = model(x)
    assert out.extras["z"].shape == (6, 4, 2)
    weights = explicit_log_weights(model, x, out)
    loss = model.loss(x, out)
    for b in range(len(x)):
        groups = [[weights[g * 3 + i][b] for i in range(3)] for g in range(2)]
        expected = -sum(log_mean_exp(group) for group in groups) / 2
        assert loss[b].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_miwae_with_one_group_is_the_iwae_and_ciwae_at_zero_too():
    x = binary_batch()
    losses = {}
    for name, params in [("iwae", {"k": 4}), ("miwae", {"m": 1, "k": 4}), ("ciwae", {"k": 4})]:
        model = build(name, latent_dim=2, hidden=[8], likelihood="bernoulli", **params)
        if name == "ciwae":
            model.beta = 0.0
        torch.manual_seed(5)  # the same draws for each
        losses[name] = model.loss(x, model(x))
    torch.testing.assert_close(losses["miwae"], losses["iwae"])
    torch.testing.assert_close(losses["ciwae"], losses["iwae"])


@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_ciwae_loss_mixes_the_elbo_and_the_iwae_bound_of_the_same_draws(beta):
    model = build("ciwae", latent_dim=2, hidden=[8], likelihood="bernoulli", k=4, beta=beta)
    x = binary_batch()
    torch.manual_seed(7)
    out = model(x)
    weights = explicit_log_weights(model, x, out)
    loss = model.loss(x, out)
    for b in range(len(x)):
        column = [weights[s][b] for s in range(4)]
        expected = -(beta * sum(column) / 4 + (1 - beta) * log_mean_exp(column))
        assert loss[b].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_piwae_routes_miwae_to_the_encoder_and_iwae_to_the_decoder():
    model = build("piwae", latent_dim=2, hidden=[8], likelihood="bernoulli", m=2, k=3)
    x = binary_batch()
    torch.manual_seed(11)
    out = model(x)
    encoder, decoder = list(model.encoder.parameters()), list(model.decoder.parameters())
    routed = torch.autograd.grad(model.loss(x, out).sum(), encoder + decoder, retain_graph=True)
    log_w = model.log_weights(x, out)  # plain log-weights: gradients reach both networks
    miwae, iwae = miwae_bound(log_w, 2), miwae_bound(log_w, 1)
    encoder_alone = torch.autograd.grad(-miwae.sum(), encoder, retain_graph=True)
    decoder_alone = torch.autograd.grad(-iwae.sum(), decoder, retain_graph=True)
    for got, want in zip(routed, [*encoder_alone, *decoder_alone], strict=True):
        torch.testing.assert_close(got, want)
    # The two objectives differ, so routing mattered: the decoder's MIWAE gradient is another.
    decoder_miwae = torch.autograd.grad(-miwae.sum(), decoder, retain_graph=True)
    assert any(
        (a - b).abs().max() > 1e-6 for a, b in zip(decoder_miwae, decoder_alone, strict=True)
    )
    # The loss's value is -IWAE(M*K) on these draws.
    torch.testing.assert_close(model.loss(x, out), -iwae)


# -- flows -------------------------------------------------------------------------------------


def planar_step(dim: int = 3, seed: int = 0) -> PlanarTransform:
    generator = torch.Generator().manual_seed(seed)
    u, w = torch.randn(dim, generator=generator), torch.randn(dim, generator=generator)
    u = u + (-2.0 - (w * u).sum()) * w / w.pow(2).sum()  # w^T u = -2: not invertible as it is
    return PlanarTransform(invertible_u(u, w), w, torch.randn((), generator=generator))


def test_planar_constraint_makes_w_dot_u_exceed_minus_one():
    step = planar_step()
    assert (step.u * step.w).sum() > -1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planar_log_determinant_is_that_of_the_autograd_jacobian(seed):
    step = planar_step(seed=seed)
    step64 = PlanarTransform(step.u.double(), step.w.double(), step.b.double(), cache_size=0)
    for x in torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9)):
        jac = jacobian(step64, x)
        want = torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(step64.log_abs_det_jacobian(x, step64(x)), want)


def test_planar_inverse_recovers_points_it_never_saw():
    step = planar_step(seed=4)
    x = 3 * torch.randn(50, 3)
    y = PlanarTransform(step.u, step.w, step.b, cache_size=0)(x)
    torch.testing.assert_close(step.inv(y.clone()), x, atol=1e-5, rtol=1e-5)


def iaf_step(dim: int = 4) -> tuple[IAFTransform, torch.Tensor]:
    torch.manual_seed(0)
    order = torch.tensor([2, 0, 3, 1])
    made = MADE(dim, 3, [16, 16], order).double()
    for p in made.parameters():  # away from the near-identity start, so the test has teeth
        torch.nn.init.normal_(p, std=0.5)
    return IAFTransform(made, torch.randn(3, dtype=torch.float64), cache_size=0), order


def test_iaf_log_determinant_is_that_of_the_autograd_jacobian_and_triangular():
    step, order = iaf_step()
    for x in torch.randn(3, 4, dtype=torch.float64):
        jac = jacobian(step, x)
        want = torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(step.log_abs_det_jacobian(x, step(x)), want)
        permuted = jac[order][:, order]  # rows and columns in the step's order
        assert torch.equal(permuted.triu(1), torch.zeros_like(permuted))  # autoregressive


def test_iaf_inverse_recovers_points_it_never_saw():
    step, _ = iaf_step()
    x = torch.randn(20, 4, dtype=torch.float64)
    torch.testing.assert_close(step.inv(step(x).clone()), x)


@pytest.mark.parametrize("name", ["planar-vae", "iaf-vae"])
def test_flow_posterior_scores_its_samples_and_other_points_alike(name):
    model = build(name, latent_dim=3, hidden=[8])
    x = binary_batch()
    q = model.posterior(x)
    z = q.rsample(torch.Size([5]))
    cached = q.log_prob(z)
    fresh = model.posterior(x).log_prob(z.clone())  # no cache: the numerical inverse
    torch.testing.assert_close(fresh, cached, atol=1e-4, rtol=1e-4)
    # change of variables: log q(z_F) = log N(z_0) - sum of the steps' log-determinants
    base = Independent(Normal(*_mu_std(model, x)), 1)
    z0 = base.sample(torch.Size([5]))
    zs, log_det = z0, torch.zeros(5, len(x))
    for step in q.transforms:
        after = step(zs)
        log_det = log_det + step.log_abs_det_jacobian(zs, after)
        zs = after
    torch.testing.assert_close(q.log_prob(zs), base.log_prob(z0) - log_det)


def _mu_std(model, x):
    mu, logvar = model._posterior_params(x)
    return mu, torch.exp(0.5 * logvar)


def zeroed_planar_vae():
    """A planar-flow VAE whose flow parameters are all zero: every step the identity."""
    model = build("planar-vae", latent_dim=3, hidden=[8], flows=2)
    head = model.encoder.net[-1]
    with torch.no_grad():
        head.weight[6:] = 0.0
        head.bias[6:] = 0.0
    return model


def test_a_zero_planar_flow_is_the_gaussian_posterior():
    model = zeroed_planar_vae()
    x = binary_batch()
    mu, std = _mu_std(model, x)
    gaussian = Independent(Normal(mu, std), 1)
    torch.manual_seed(2)
    z = model.posterior(x).rsample(torch.Size([7]))
    torch.manual_seed(2)
    torch.testing.assert_close(z, gaussian.rsample(torch.Size([7])))
    torch.testing.assert_close(model.posterior(x).log_prob(z.clone()), gaussian.log_prob(z))
    torch.testing.assert_close(model.encode(x), mu)


def assert_within_mc_error(estimate: torch.Tensor, exact: torch.Tensor, draws: torch.Tensor):
    """|estimate - exact| <= 5 standard errors of the mean of ``draws`` (S, B), per input."""
    se = draws.double().std(0) / math.sqrt(len(draws))
    gap = (estimate.double() - exact.double()).abs()
    assert (gap <= 5 * se + 1e-6).all(), f"gaps {gap.tolist()} vs standard errors {se.tolist()}"


def test_the_estimators_monte_carlo_kl_of_a_zero_flow_matches_the_closed_form():
    model = zeroed_planar_vae()
    x = binary_batch()
    torch.manual_seed(4)
    with torch.no_grad():
        terms = elbo_terms(model, x, n_samples=2000)
        mu, logvar = model._posterior_params(x)
        q = model.posterior(x)
        z = q.sample(torch.Size([2000]))
        draws = q.log_prob(z) - model.prior().log_prob(z)
    assert_within_mc_error(terms.rate, kl_to_standard_normal(mu, logvar), draws)
    # and the training loss's Monte-Carlo rate too
    model.mc_samples = 2000
    with torch.no_grad():
        rate = model.loss_terms(x, model(x))["rate"]
    assert_within_mc_error(rate, kl_to_standard_normal(mu, logvar), draws)


# -- VampPrior ---------------------------------------------------------------------------------


def test_vampprior_density_is_the_mixture_of_the_pseudo_inputs_posteriors():
    model = build("vampprior", latent_dim=3, hidden=[8], components=4)
    pseudo = model.pseudo_inputs()
    assert pseudo.shape == (4, *BINARY.shape) and ((pseudo > 0) & (pseudo < 1)).all()
    mu, logvar = model.encoder(pseudo).chunk(2, dim=-1)
    z = torch.randn(5, 2, 3)
    prior = model.prior()
    assert prior.batch_shape == () and prior.event_shape == (3,)
    got = prior.log_prob(z)
    for s in range(5):
        for b in range(2):
            parts = [
                normal_log_density(z[s, b], mu[c], torch.exp(0.5 * logvar[c])).sum() - math.log(4)
                for c in range(4)
            ]
            assert got[s, b].item() == pytest.approx(torch.stack(parts).logsumexp(0).item())


def test_vampprior_pseudo_inputs_learn_through_the_rate():
    model = build("vampprior", latent_dim=3, hidden=[8], components=4)
    x = binary_batch()
    model.loss(x, model(x)).mean().backward()
    assert model.raw_pseudo_inputs.grad is not None
    assert model.raw_pseudo_inputs.grad.abs().sum() > 0


def test_vampprior_monte_carlo_kl_matches_the_closed_form_with_one_component():
    model = build("vampprior", latent_dim=3, hidden=[8], components=1)
    x = binary_batch()
    torch.manual_seed(6)
    with torch.no_grad():
        terms = elbo_terms(model, x, n_samples=2000)
        q = model.posterior(x)
        mu, logvar = model.encoder(model.pseudo_inputs()).chunk(2, dim=-1)
        single = Independent(Normal(mu[0], torch.exp(0.5 * logvar[0])), 1)
        z = q.sample(torch.Size([2000]))
        draws = q.log_prob(z) - model.prior().log_prob(z)
        torch.testing.assert_close(model.prior().log_prob(z), single.log_prob(z))
    assert_within_mc_error(terms.rate, kl_divergence(q, single), draws)


# -- two stochastic layers ---------------------------------------------------------------------


def two_layer_terms(model, x, z):
    """log p(x|z1), log p(z2) + log p(z1|z2) and log q(z1|x) + log q(z2|z1), written out."""
    d1 = model.bottom_dim
    z1, z2 = z[..., :d1], z[..., d1:]
    logits = model.decoder(z1.reshape(-1, d1)).view(*z1.shape[:-1], *BINARY.shape)
    log_lik = (x * logits - torch.nn.functional.softplus(logits)).sum(-1)
    zero, one = torch.zeros(()), torch.ones(())
    p_mean, p_logvar = model.p_bottom.net(z2).chunk(2, dim=-1)
    log_prior = normal_log_density(z2, zero, one).sum(-1) + normal_log_density(
        z1, p_mean, torch.exp(0.5 * p_logvar)
    ).sum(-1)
    mu, logvar = model.encoder(x).chunk(2, dim=-1)
    q_mean, q_logvar = model.q_top.net(z1).chunk(2, dim=-1)
    log_q = normal_log_density(z1, mu, torch.exp(0.5 * logvar)).sum(-1) + normal_log_density(
        z2, q_mean, torch.exp(0.5 * q_logvar)
    ).sum(-1)
    return log_lik, log_prior, log_q


def test_two_layer_iwae_loss_is_the_bound_of_its_draws_written_out():
    model = build("iwae-2layer", latent_dim=5, top_dim=2, hidden=[8], top_hidden=[4], k=4)
    x = binary_batch()
    torch.manual_seed(8)
    out = model(x)
    z = out.extras["z"]
    assert z.shape == (4, len(x), 5) and model.bottom_dim == 3 and model.top_dim == 2
    log_lik, log_prior, log_q = two_layer_terms(model, x, z)
    torch.testing.assert_close(model.posterior(x).log_prob(z), log_q)
    torch.testing.assert_close(model.prior().log_prob(z), log_prior)
    loss = model.loss(x, out)
    for b in range(len(x)):
        column = (log_lik + log_prior - log_q)[:, b].tolist()
        assert loss[b].item() == pytest.approx(-log_mean_exp(column), rel=1e-5, abs=1e-5)
    vae = build("vae-2layer", latent_dim=5, top_dim=2, hidden=[8], top_hidden=[4], mc_samples=4)
    torch.manual_seed(8)
    out = vae(x)
    log_lik, log_prior, log_q = two_layer_terms(vae, x, out.extras["z"])
    torch.testing.assert_close(vae.loss(x, out), -(log_lik + log_prior - log_q).mean(0))


def test_two_layer_prior_and_posterior_agree_on_log_px_by_brute_force():
    """log p(x) by prior sampling (z2 ~ p(z2), z1 ~ p(z1|z2)) and by importance sampling from
    q(z1, z2|x) with the written-out densities: two routes to one number."""
    model = build("vae-2layer", latent_dim=2, top_dim=1, hidden=[4], top_hidden=[4])
    x = binary_batch(3)
    torch.manual_seed(12)
    with torch.no_grad():
        by_prior = prior_mc_estimate(model, x, 20000)
        sampling = importance_sampling(model, x, 20000)
    se = sampling.mc_variance.sqrt() + 0.02  # the prior route's own error is of that order here
    assert ((by_prior - sampling.bound).abs() <= 5 * se).all(), (by_prior, sampling.bound)


def test_two_layer_prior_samples_follow_its_density():
    model = build("vae-2layer", latent_dim=3, top_dim=1, hidden=[4], top_hidden=[4])
    torch.manual_seed(13)
    with torch.no_grad():
        z = model.prior().sample(torch.Size([20000]))
    assert z.shape == (20000, 3)
    top = z[:, 2]  # z2 ~ N(0, 1) whatever the network
    assert abs(top.mean().item()) < 0.05 and abs(top.var().item() - 1) < 0.05
    mean, logvar = model.p_bottom.net(z[:, 2:]).chunk(2, dim=-1)
    standardised = (z[:, :2] - mean) / torch.exp(0.5 * logvar)  # z1 | z2 ~ N(mean, std^2)
    assert standardised.mean(0).abs().max() < 0.05
    assert (standardised.var(0) - 1).abs().max() < 0.05


# -- every model of this family under the estimators ------------------------------------------


@pytest.mark.parametrize("name", MINE)
def test_the_estimators_run_on_each_model(name):
    model = build(name, DataInfo(shape=(1, 8, 8), kind="unit", levels=17), latent_dim=3)
    x = torch.randint(0, 17, (10, 1, 8, 8)).float() / 16
    torch.manual_seed(0)
    with torch.no_grad():
        iwae = importance_sampling(model, x, 50).bound
        elbo = elbo_terms(model, x, 20).bound
        means = posterior_means(model, x)
    assert torch.isfinite(iwae).all() and torch.isfinite(elbo).all()
    assert means.shape == (10, 3) and torch.isfinite(means).all()
    assert iwae.mean() >= elbo.mean() - 1.0  # the K-sample bound is tighter, up to MC noise


@pytest.mark.parametrize("name", MINE)
def test_the_list_shows_paper_and_year(name, plugins):
    doc = plugins.models.get(name).factory.__doc__
    first = doc.strip().splitlines()[0]
    assert "20" in first and "(" in first, first
