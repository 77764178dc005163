"""Exact log p(x) by cubature (aebench.quadrature), against closed forms and scipy.

The reference model is linear-Gaussian: z ~ N(0, I), x | z ~ N(Wz + b, s^2 I), for which
log p(x) = log N(x; b, W W^T + s^2 I). With s = 0.1 the posterior is narrow (std about 0.05), so
the coarse level-0 grid (1.75 wide cells) alone would miss its shape.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Distribution,
    Independent,
    MultivariateNormal,
    Normal,
    TransformedDistribution,
)

from aebench import LatentVariableModel
from aebench.estimators.quadrature import exact_log_px

DATA_DIM, NOISE = 5, 0.1


class LinearGaussian(nn.Module):
    """Linear-Gaussian latent model with a posterior hint that is exact, wrong, or absent."""

    def __init__(
        self,
        latent: int = 2,
        hint: str = "exact",
        dtype: torch.dtype = torch.float64,
        noise: float = NOISE,
        seed: int = 0,
    ) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.latent, self.hint, self.dtype, self.noise = latent, hint, dtype, noise
        self.weight = torch.randn(DATA_DIM, latent, generator=g, dtype=torch.float64)
        self.bias = torch.randn(DATA_DIM, generator=g, dtype=torch.float64)

    def prior(self) -> Distribution:
        zeros = torch.zeros(self.latent, dtype=self.dtype)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def likelihood(self, z: Tensor) -> Distribution:
        mean = z @ self.weight.T.to(self.dtype) + self.bias.to(self.dtype)
        return Independent(Normal(mean, self.noise), 1)

    def posterior(self, x: Tensor) -> Distribution:
        m = self.weight.T @ self.weight + self.noise**2 * torch.eye(
            self.latent, dtype=torch.float64
        )
        cov = self.noise**2 * torch.linalg.inv(m)
        mean = (x.double() - self.bias) @ self.weight @ torch.linalg.inv(m)
        exact = MultivariateNormal(mean, cov.expand(len(x), -1, -1))
        if self.hint == "exact":
            return exact
        if self.hint == "wrong":  # shifted by 1.5 and 3 times too narrow
            return Independent(Normal(mean + 1.5, cov.diagonal().sqrt() / 3), 1)
        return TransformedDistribution(exact, [])  # the right density, but no mean or stddev

    def exact_log_px(self, x: Tensor) -> Tensor:
        cov = self.weight @ self.weight.T + self.noise**2 * torch.eye(DATA_DIM, dtype=torch.float64)
        return MultivariateNormal(self.bias, cov).log_prob(x.double())

    def sample_data(self, n: int, seed: int = 1) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent, generator=g, dtype=torch.float64)
        noise = self.noise * torch.randn(n, DATA_DIM, generator=g, dtype=torch.float64)
        return (z @ self.weight.T + self.bias + noise).to(self.dtype)

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x).mean

    def decode(self, z: Tensor) -> Tensor:
        return self.likelihood(z).mean

    def loss(self, x: Tensor, out: object) -> Tensor:
        return -self.exact_log_px(x)


def test_the_reference_model_is_a_latent_variable_model() -> None:
    assert isinstance(LinearGaussian(), LatentVariableModel)


@pytest.mark.parametrize("latent", [1, 2])
def test_matches_the_closed_form(latent: int) -> None:
    model = LinearGaussian(latent=latent)
    x = model.sample_data(40)
    result = exact_log_px(model, x)
    assert result.log_px.dtype == torch.float64 and result.log_px.shape == (40,)
    torch.testing.assert_close(result.log_px, model.exact_log_px(x), atol=1e-4, rtol=0)
    assert (result.error >= 0).all() and result.error.max() < 1e-4


@pytest.mark.parametrize("hint", ["wrong", "none"])
def test_a_wrong_or_missing_posterior_hint_costs_no_accuracy(hint: str) -> None:
    model = LinearGaussian(hint=hint)
    x = model.sample_data(20)
    result = exact_log_px(model, x)
    torch.testing.assert_close(result.log_px, model.exact_log_px(x), atol=1e-4, rtol=0)
    assert result.error.max() < 1e-4


def test_a_posterior_narrower_than_the_grid_is_found_through_the_hint() -> None:
    # s = 0.001: q's std is about 5e-4, and the shared grid's points are 0.1 apart, where the
    # integrand is exp(-0.5 (0.05 / 5e-4)^2) = 0 of its peak: only the hint can find it.
    model = LinearGaussian(noise=0.001)
    x = model.sample_data(10)
    result = exact_log_px(model, x)
    torch.testing.assert_close(result.log_px, model.exact_log_px(x), atol=1e-4, rtol=0)
    assert result.error.max() < 1e-4


def test_a_float32_model_converges_to_its_rounding_noise() -> None:
    # float32 log f is noisy at about 1e-6 nats (up to 1e-5): without the noise floor, cells at
    # the peak are split every round until max_rounds, their number growing fourfold each round.
    model = LinearGaussian(dtype=torch.float32)
    x = model.sample_data(20)
    calls = []
    likelihood = model.likelihood
    model.likelihood = lambda z: calls.append(len(z)) or likelihood(z)  # type: ignore[method-assign]
    result = exact_log_px(model, x)
    torch.testing.assert_close(result.log_px, model.exact_log_px(x), atol=1e-4, rtol=0)
    assert result.error.max() < 1e-4
    assert sum(calls) < 20 * 30_000  # points per input, the shared ones counted once


def test_remaining_cells_report_their_error_when_rounds_run_out() -> None:
    model = LinearGaussian()
    x = model.sample_data(10)
    result = exact_log_px(model, x, max_rounds=2)
    gap = (result.log_px - model.exact_log_px(x)).abs()
    assert result.error.min() > 1e-4  # two rounds cannot resolve a posterior of std 0.05 ...
    assert (gap <= 3 * result.error).all()  # ... and the error says by how much, roughly


class BernoulliDecoder(nn.Module):
    """A tiny nonlinear decoder: z (2) -> tanh MLP -> logits of 6 binary pixels."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(3)
            self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 6)).double()
        with torch.no_grad():
            self.net[2].weight.mul_(8.0)  # sharp enough that the posterior is not the prior

    def prior(self) -> Distribution:
        zeros = torch.zeros(2, dtype=torch.float64)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def likelihood(self, z: Tensor) -> Distribution:
        return Independent(Bernoulli(logits=self.net(z)), 1)

    def posterior(self, x: Tensor) -> Distribution:
        raise NotImplementedError  # no encoder: quadrature works without hints

    def numpy_log_likelihood(self, x: np.ndarray, z1: float, z2: float) -> float:
        w1, b1 = self.net[0].weight.detach().numpy(), self.net[0].bias.detach().numpy()
        w2, b2 = self.net[2].weight.detach().numpy(), self.net[2].bias.detach().numpy()
        logits = w2 @ np.tanh(w1 @ np.array([z1, z2]) + b1) + b2
        return float(np.sum(x * logits - np.logaddexp(0.0, logits)))


def test_a_nonlinear_decoder_matches_scipy_dblquad() -> None:
    model = BernoulliDecoder()
    x = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], [1, 1, 0, 1, 0, 1]]).double()
    result = exact_log_px(model, x)
    for i, xi in enumerate(x.numpy()):

        def f(z2: float, z1: float, xi: np.ndarray = xi) -> float:
            log_prior = -0.5 * (z1 * z1 + z2 * z2) - math.log(2 * math.pi)
            return math.exp(model.numpy_log_likelihood(xi, z1, z2) + log_prior)

        value, _ = integrate.dblquad(f, -7, 7, -7, 7, epsabs=1e-13, epsrel=1e-10)
        assert abs(result.log_px[i].item() - math.log(value)) < 1e-4
        assert result.error[i].item() < 1e-4


def test_more_than_two_latent_dimensions_are_refused() -> None:
    model = LinearGaussian(latent=3)
    with pytest.raises(ValueError, match="the latent has 3 dimensions"):
        exact_log_px(model, model.sample_data(2))


def test_a_prior_without_mean_is_refused() -> None:
    model = LinearGaussian()
    model.prior = lambda: TransformedDistribution(  # type: ignore[method-assign]
        Independent(Normal(torch.zeros(2), torch.ones(2)), 1), []
    )
    with pytest.raises(ValueError, match="no mean and standard deviation"):
        exact_log_px(model, model.sample_data(2))


def test_inputs_are_independent_of_each_other() -> None:
    model = LinearGaussian(hint="wrong")
    x = model.sample_data(12)
    x[7] *= 30  # an outlier, 1e4 nats less likely, beside them
    whole, first = exact_log_px(model, x), exact_log_px(model, x[:3])
    # Its posterior lies beyond the box: the error flags the cut-off integral.
    assert whole.error[7] > 0.1 and (whole.error[:7] < 1e-4).all()
    torch.testing.assert_close(first.log_px, whole.log_px[:3], atol=1e-9, rtol=0)
    torch.testing.assert_close(first.error, whole.error[:3], atol=1e-9, rtol=0)


def test_small_chunks_give_the_same_result() -> None:
    model = LinearGaussian()
    x = model.sample_data(6)
    torch.testing.assert_close(
        exact_log_px(model, x, max_elements=37).log_px,
        exact_log_px(model, x).log_px,
        atol=1e-9,
        rtol=0,
    )
