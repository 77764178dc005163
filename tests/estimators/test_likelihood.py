"""The likelihood estimators of aebench.likelihood, against closed forms.

Probabilistic PCA is the reference: z ~ N(0, I), x | z ~ N(Wz + b, s^2 I), so that
log p(x) = log N(x; b, W W^T + s^2 I) and the exact posterior are known in closed form.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import (
    Distribution,
    Independent,
    MultivariateNormal,
    Normal,
    StudentT,
)

from aebench import LatentVariableModel, quadrature
from aebench import likelihood as estimators

DATA_DIM, LATENT_DIM, NOISE = 5, 2, 0.5


class PPCA(nn.Module):
    """Linear-Gaussian latent model; q is the exact posterior, or a deliberately wrong one."""

    def __init__(self, exact_posterior: bool = True, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(DATA_DIM, LATENT_DIM, generator=g, dtype=torch.float64)
        self.bias = torch.randn(DATA_DIM, generator=g, dtype=torch.float64)
        self.exact_posterior = exact_posterior

    def prior(self) -> Distribution:
        zeros = torch.zeros(LATENT_DIM, dtype=torch.float64)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def likelihood(self, z: Tensor) -> Distribution:
        return Independent(Normal(z @ self.weight.T + self.bias, NOISE), 1)

    def exact_posterior_params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (B, L) and covariance (L, L): s^2 M^-1 and M^-1 W^T (x - b), M = W^T W + s^2 I."""
        m = self.weight.T @ self.weight + NOISE**2 * torch.eye(LATENT_DIM, dtype=torch.float64)
        m_inv = torch.linalg.inv(m)
        return (x - self.bias) @ self.weight @ m_inv, NOISE**2 * m_inv

    def posterior(self, x: Tensor) -> Distribution:
        mean, cov = self.exact_posterior_params(x)
        if self.exact_posterior:
            return MultivariateNormal(mean, cov.expand(len(x), -1, -1))
        # Mean-field, shifted and too wide: a poor q, so that the bounds have a gap to close.
        scale = 1.5 * cov.diagonal().sqrt().expand_as(mean)
        return Independent(Normal(mean + 0.3, scale), 1)

    def exact_log_px(self, x: Tensor) -> Tensor:
        cov = self.weight @ self.weight.T + NOISE**2 * torch.eye(DATA_DIM, dtype=torch.float64)
        return MultivariateNormal(self.bias, cov).log_prob(x)

    def sample_data(self, n: int, seed: int = 1) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, LATENT_DIM, generator=g, dtype=torch.float64)
        noise = NOISE * torch.randn(n, DATA_DIM, generator=g, dtype=torch.float64)
        return z @ self.weight.T + self.bias + noise

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x).mean

    def decode(self, z: Tensor) -> Tensor:
        return self.likelihood(z).mean

    def loss(self, x: Tensor, out: object) -> Tensor:
        return -self.exact_log_px(x)


def test_ppca_satisfies_the_latent_variable_contract() -> None:
    assert isinstance(PPCA(), LatentVariableModel)


def test_iwae_with_exact_posterior_is_exact_for_every_sample_count() -> None:
    model = PPCA(exact_posterior=True)
    x = model.sample_data(50)
    # log p(x, z) - log q(z|x) = log p(x) for every z: the weights have no variance at all.
    weights = estimators.log_weights(model, x, model.posterior(x), model.posterior(x).sample((7,)))
    assert weights.std(0).max() < 1e-8
    for k in (1, 3):
        torch.testing.assert_close(
            estimators.iwae_bound(model, x, k), model.exact_log_px(x), atol=1e-8, rtol=0
        )


def test_elbo_with_exact_posterior_equals_log_px() -> None:
    model = PPCA(exact_posterior=True)
    x = model.sample_data(50)
    torch.manual_seed(0)
    terms = estimators.elbo_terms(model, x, n_samples=4000)
    # The KL is analytic; only E_q[log p(x|z)] is Monte Carlo, and 4000 draws pin it to ~0.02.
    torch.testing.assert_close(terms.bound, model.exact_log_px(x), atol=0.1, rtol=0)
    assert abs((terms.bound - model.exact_log_px(x)).mean()) < 0.02


def test_iwae_approaches_log_px_as_samples_grow() -> None:
    model = PPCA(exact_posterior=False)
    x = model.sample_data(200)
    exact = model.exact_log_px(x).mean().item()
    torch.manual_seed(0)
    gaps = [exact - estimators.iwae_bound(model, x, k).mean().item() for k in (1, 3, 10, 1000)]
    assert gaps[0] > 1.0  # q is poor: the ELBO is well below log p(x)
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))
    assert 0 <= gaps[-1] < 0.05


def test_elbo_below_iwae_below_exact() -> None:
    model = PPCA(exact_posterior=False)
    x = model.sample_data(200)
    torch.manual_seed(0)
    elbo = estimators.elbo_terms(model, x, n_samples=200).bound
    iwae = estimators.iwae_bound(model, x, 200)
    exact = model.exact_log_px(x)
    mc_error = 0.02
    assert elbo.mean() < iwae.mean() - 0.1
    assert iwae.mean() <= exact.mean() + mc_error


def test_rate_and_distortion_match_closed_forms() -> None:
    model = PPCA(exact_posterior=False)
    x = model.sample_data(20)
    q = model.posterior(x)
    mean, var = q.mean, q.variance
    # KL(N(m, diag v) || N(0, I)) = 1/2 sum(v + m^2 - 1 - log v)
    rate = 0.5 * (var + mean**2 - 1 - var.log()).sum(1)
    # -E_q log N(x; Wz + b, s^2 I) = D/2 log(2 pi s^2) + (|x - Wm - b|^2 + tr(W diag(v) W^T)) / 2s^2
    residual = (x - mean @ model.weight.T - model.bias).pow(2).sum(1)
    trace = (model.weight.pow(2) * var.unsqueeze(1)).sum((1, 2))
    distortion = 0.5 * DATA_DIM * math.log(2 * math.pi * NOISE**2) + (residual + trace) / (
        2 * NOISE**2
    )
    torch.manual_seed(0)
    terms = estimators.elbo_terms(model, x, n_samples=20000)
    torch.testing.assert_close(terms.rate, rate, atol=1e-9, rtol=0)
    torch.testing.assert_close(terms.distortion, distortion, atol=0.1, rtol=0.01)
    torch.testing.assert_close(terms.bound, -(terms.rate + terms.distortion))


class StudentPrior(nn.Module):
    """1-D latent with a Student-t prior: KL(Normal || StudentT) has no closed form in torch."""

    def prior(self) -> Distribution:
        return Independent(StudentT(3.0, torch.zeros(1), torch.ones(1)), 1)

    def posterior(self, x: Tensor) -> Distribution:
        return Independent(Normal(x[:, :1], 0.5 * torch.ones(len(x), 1)), 1)

    def likelihood(self, z: Tensor) -> Distribution:
        return Independent(Normal(z.expand(*z.shape[:-1], 2), 1.0), 1)

    def encode(self, x: Tensor) -> Tensor:
        return x[:, :1]

    def decode(self, z: Tensor) -> Tensor:
        return z.expand(*z.shape[:-1], 2)


def test_rate_falls_back_to_monte_carlo_without_a_closed_form() -> None:
    model = StudentPrior()
    x = torch.tensor([[0.0, 0.0], [2.0, 1.0]])
    q, p = model.posterior(x), model.prior()
    assert estimators.analytic_kl(q, p) is None
    # KL by quadrature on a fine grid: sum q(z) (log q(z) - log p(z)) dz
    grid = torch.linspace(-8, 10, 200_001).view(-1, 1, 1)
    log_q, log_p = q.log_prob(grid), p.log_prob(grid)
    quadrature = torch.trapezoid(log_q.exp() * (log_q - log_p), grid.view(-1), dim=0)
    torch.manual_seed(0)
    rate = estimators.elbo_terms(model, x, n_samples=40_000).rate.float()
    torch.testing.assert_close(rate, quadrature, atol=0.02, rtol=0)


def test_log_mean_exp_over_chunks_equals_one_logsumexp() -> None:
    log_w = 50 * torch.randn(
        300, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    expected = log_w.logsumexp(0) - math.log(300)
    for size in (1, 7, 300):
        torch.testing.assert_close(estimators.log_mean_exp(log_w.split(size), 300), expected)


class CountingPPCA(PPCA):
    """Records how many (input, sample) pairs each likelihood call scores."""

    def __init__(self) -> None:
        super().__init__(exact_posterior=False)
        self.scored: list[int] = []

    def likelihood(self, z: Tensor) -> Distribution:
        outer = super().likelihood(z)
        model = self

        class Counted(Independent):
            def log_prob(self, value: Tensor) -> Tensor:
                out = super().log_prob(value)
                model.scored.append(out.numel())
                return out

        return Counted(outer.base_dist, 1)


@pytest.mark.parametrize(
    "estimate", [estimators.iwae_bound, estimators.prior_mc_estimate, estimators.elbo_terms]
)
@pytest.mark.parametrize(("n_inputs", "n_samples", "budget"), [(20, 500, 1000), (120, 50, 4000)])
def test_work_is_chunked_within_the_element_budget(estimate, n_inputs, n_samples, budget) -> None:
    model = CountingPPCA()
    x = model.sample_data(n_inputs)
    estimate(model, x, n_samples, max_elements=budget)
    per_pair = DATA_DIM + LATENT_DIM
    assert max(model.scored) * per_pair <= budget
    assert sum(model.scored) == n_inputs * n_samples  # every pair scored exactly once


def test_seeded_sampling_is_reproducible_and_leaves_the_global_stream_alone() -> None:
    model = PPCA(exact_posterior=False)
    x = model.sample_data(20)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    generator = torch.Generator().manual_seed(7)
    with estimators.seeded(generator):
        first = estimators.iwae_bound(model, x, 10)
    with estimators.seeded(generator):
        second = estimators.iwae_bound(model, x, 10)
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), before)


def test_active_units_counts_dimensions_with_varying_means() -> None:
    g = torch.Generator().manual_seed(0)
    stds = torch.tensor([1.0, 0.2, 0.05, 0.0])  # variances 1, 0.04, 0.0025, 0
    means = torch.randn(5000, 4, generator=g) * stds + 3.0
    expected = int((means.double().var(0, unbiased=False) > 0.01).sum())
    assert expected == 2
    assert estimators.count_active_units(means) == expected
    assert estimators.count_active_units(means, threshold=0.001) == 3


def test_posterior_means_are_the_posteriors_means() -> None:
    model = PPCA(exact_posterior=True)
    x = model.sample_data(30)
    mean, _ = model.exact_posterior_params(x)
    torch.testing.assert_close(estimators.posterior_means(model, x, batch_size=7), mean)


def test_prior_sampling_is_far_worse_than_importance_sampling_on_a_trained_vae(plugins) -> None:
    data = plugins.datasets.get("digits").factory()
    torch.manual_seed(0)
    # A narrow Gaussian likelihood makes the code informative (a rate of ~15 nats), so that few
    # prior draws land where the posterior is.
    model = plugins.models.get("vae").factory(
        data.info, latent_dim=8, hidden=[64], likelihood="gaussian", sigma=0.1
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        for batch in data.train.x[torch.randperm(len(data.train))].split(64):
            loss = model.loss(batch, model(batch)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    test_x = data.test.x[:100]
    with torch.no_grad():
        torch.manual_seed(1)
        elbo = estimators.elbo_terms(model, test_x, 10).bound.mean().item()
        iwae = estimators.iwae_bound(model, test_x, 100).mean().item()
        prior_mc = estimators.prior_mc_estimate(model, test_x, 100).mean().item()
    assert elbo < iwae
    assert prior_mc < iwae - 10.0, (prior_mc, iwae)


class ScaledPosterior(PPCA):
    """The exact posterior's mean with its standard deviations times ``factor``: far narrower
    than the true posterior (a factor of 0.1, built to fail) or a little wider (built to pass)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def posterior(self, x: Tensor) -> Distribution:
        mean, cov = self.exact_posterior_params(x)
        return Independent(Normal(mean, self.factor * cov.diagonal().sqrt().expand_as(mean)), 1)


# Element budgets giving one input per batch and 20 draws per chunk (groups span chunks; every
# chunk but the last holds whole rounds of the groups), and all 57 draws in one chunk.
@pytest.mark.parametrize("budget", [140, 100_000])
def test_importance_sampling_summaries_match_a_direct_computation(monkeypatch, budget) -> None:
    model = PPCA(exact_posterior=False)
    x = model.sample_data(30)
    k, groups = 57, 10  # groups of 6 and 5 draws
    # Draw k is q's mean plus offsets[k], whatever the batch and chunk it falls in.
    offsets = torch.randn(k, LATENT_DIM, generator=torch.Generator().manual_seed(3)).double()
    position = 0

    def draw(q: Distribution, n: int) -> Tensor:
        nonlocal position
        chunk = offsets[position : position + n]
        position = (position + n) % k
        return q.mean + chunk.unsqueeze(1)

    monkeypatch.setattr(estimators, "_sample", draw)
    q = model.posterior(x)
    log_w = estimators.log_weights(model, x, q, q.mean + offsets.unsqueeze(1)).double()  # (K, N)
    sampled = estimators.importance_sampling(model, x, k, groups=groups, max_elements=budget)
    w = log_w.exp()
    torch.testing.assert_close(sampled.bound, w.mean(0).log())
    torch.testing.assert_close(sampled.effective_sample_size, w.sum(0) ** 2 / (w**2).sum(0))
    at_k_over_g = torch.stack([w[g::groups].mean(0).log() for g in range(groups)]).mean(0)
    torch.testing.assert_close(sampled.convergence, w.mean(0).log() - at_k_over_g)
    # The delta method on log of the mean weight, written out: Var(w) / (K mean(w)^2).
    delta = w.var(0, unbiased=True) / (k * w.mean(0) ** 2)
    torch.testing.assert_close(sampled.mc_variance, delta)


def test_below_10_draws_convergence_is_the_estimate_at_k_minus_at_one_draw(monkeypatch) -> None:
    # NaN below K = 10 left the least converged estimates unflagged. Now: at K minus the mean of
    # the K one-draw estimates (the mean log weight), by hand; NaN with one draw only.
    model = PPCA(exact_posterior=False)
    x = model.sample_data(30)
    k = 9
    offsets = torch.randn(k, LATENT_DIM, generator=torch.Generator().manual_seed(4)).double()
    monkeypatch.setattr(estimators, "_sample", lambda q, n: q.mean + offsets[:n].unsqueeze(1))
    q = model.posterior(x)
    log_w = estimators.log_weights(model, x, q, q.mean + offsets.unsqueeze(1)).double()  # (K, N)
    sampled = estimators.importance_sampling(model, x, k)
    at_k = log_w.logsumexp(0) - math.log(k)
    torch.testing.assert_close(sampled.convergence, at_k - log_w.mean(0))
    assert (sampled.convergence >= 0).all()  # Jensen: the mean of logs is below the log of means
    assert torch.isnan(estimators.importance_sampling(model, x, 1).convergence).all()


def test_with_the_exact_posterior_every_weight_is_equal() -> None:
    model = PPCA(exact_posterior=True)
    x = model.sample_data(40)
    sampled = estimators.importance_sampling(model, x, 200)
    torch.testing.assert_close(sampled.effective_sample_size, torch.full((40,), 200.0).double())
    assert sampled.convergence.abs().max() < 1e-9
    assert estimators.monte_carlo_error(sampled.mc_variance) < 1e-9


def test_diagnostics_fail_a_posterior_far_narrower_than_the_true_one() -> None:
    x = PPCA().sample_data(100)
    torch.manual_seed(0)
    narrow = estimators.importance_sampling(ScaledPosterior(0.1), x, 1000)
    torch.manual_seed(0)
    wide = estimators.importance_sampling(ScaledPosterior(1.3), x, 1000)
    # Built to fail: few draws carry the weight, and the estimate still climbs from K/10 to K.
    assert narrow.effective_sample_size.mean() < 0.05 * 1000
    assert narrow.convergence.mean() > 0.1  # the metric's flag threshold
    # Built to pass: most draws count, and the estimate has settled.
    assert wide.effective_sample_size.min() > 0.5 * 1000
    assert 0 <= wide.convergence.mean() < 0.01
    exact = PPCA().exact_log_px(x)
    assert (exact - wide.bound).mean().abs() < 0.01
    assert (exact - narrow.bound).mean() > 0.5


def test_monte_carlo_error_matches_the_spread_over_repeated_sampling() -> None:
    model = PPCA(exact_posterior=False)
    x = model.sample_data(50)
    means, errors = [], []
    for seed in range(40):
        torch.manual_seed(seed)
        sampled = estimators.importance_sampling(model, x, 100)
        means.append(sampled.bound.mean().item())
        errors.append(estimators.monte_carlo_error(sampled.mc_variance))
    spread = torch.tensor(means).std().item()
    # One run's jackknife error against the standard deviation of 40 repeated runs' means.
    assert 0.6 < torch.tensor(errors).median().item() / spread < 1.6, (errors[:3], spread)
    # The test-set standard error is another quantity: here several times the Monte-Carlo error.
    assert estimators.standard_error(sampled.bound) > 3 * spread


def test_the_per_input_monte_carlo_error_covers_the_exact_log_px_at_its_nominal_rate() -> None:
    """Over 1000 inputs, log p(x) by quadrature (``log_px_exact``'s method) lies outside the
    IWAE-1000 estimate +- 2 SE about as often as a normal error would: 4.55%, 45.5 inputs.

    q is twice as wide as the true posterior, so that the weights' variance is finite (where it
    is not, no error estimated from the draws holds). Which counts pass: a two-sided binomial
    test of the count against 4.55% at the 1% level (here 45: p = 1.0; the jackknife over 10
    groups that it replaces gave 79: p < 1e-4)."""
    from scipy import stats

    model = ScaledPosterior(2.0)
    x = model.sample_data(1000, seed=5)
    exact = quadrature.exact_log_px(model, x, tolerance=1e-4).log_px
    torch.testing.assert_close(exact, model.exact_log_px(x), atol=1e-4, rtol=0)  # the reference
    torch.manual_seed(0)
    sampled = estimators.importance_sampling(model, x, 1000)
    outside = int(((exact - sampled.bound).abs() > 2 * sampled.mc_variance.sqrt()).sum())
    nominal = 2 * stats.norm.sf(2)
    assert stats.binomtest(outside, len(x), nominal).pvalue > 0.01, outside
