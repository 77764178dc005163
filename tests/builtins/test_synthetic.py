"""Synthetic sets: their samples follow the stated model and their exact densities normalise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from aebench import Data
from aebench.plugins.manager import load_plugins


def load(name: str, **params) -> Data:
    return load_plugins().datasets.get(name).factory(**params)


def test_ppca_shapes_kind_and_seeding():
    data = load("ppca", dim=5, latent_dim=2, n_train=300, n_test=100, seed=7)
    assert data.info.shape == (5,) and data.info.kind == "real" and data.info.n_classes is None
    assert data.train.x.shape == (300, 5) and data.test.x.shape == (100, 5)
    assert data.train.x.dtype == torch.float32 and data.train.y is None
    again = load("ppca", dim=5, latent_dim=2, n_train=300, n_test=100, seed=7)
    assert torch.equal(data.train.x, again.train.x) and torch.equal(data.test.x, again.test.x)
    other = load("ppca", dim=5, latent_dim=2, n_train=300, n_test=100, seed=8)
    assert not torch.equal(data.train.x, other.train.x)


def test_ppca_log_density_matches_scipy():
    data = load("ppca", dim=6, latent_dim=3, sigma=0.3, n_train=50, n_test=50, seed=1)
    density = data.log_density
    w, b = density.weight.numpy(), density.bias.numpy()
    covariance = w @ w.T + 0.3**2 * np.eye(6)  # computed here, independently of the plugin
    x = data.test.x
    expected = multivariate_normal(mean=b, cov=covariance).logpdf(x.double().numpy())
    got = density(x)
    assert got.shape == (50,) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_ppca_samples_have_the_model_covariance():
    sigma = 0.5
    data = load("ppca", dim=4, latent_dim=2, sigma=sigma, n_train=200_000, n_test=10, seed=2)
    w, b = data.log_density.weight, data.log_density.bias
    x = data.train.x.double()
    assert torch.allclose(x.mean(0), b, atol=0.03)
    sample_cov = torch.cov(x.T)
    model_cov = w @ w.T + sigma**2 * torch.eye(4, dtype=torch.float64)
    assert torch.allclose(sample_cov, model_cov, rtol=0.03, atol=0.03)


def test_ppca_log_density_normalises_in_one_dimension():
    data = load("ppca", dim=1, latent_dim=1, sigma=0.2, n_train=10, n_test=10, seed=0)
    b = data.log_density.bias.item()
    grid = torch.linspace(b - 15, b + 15, 30_001).unsqueeze(1)
    mass = torch.trapezoid(data.log_density(grid).double().exp(), grid.squeeze(1).double())
    assert mass.item() == pytest.approx(1.0, abs=1e-4)


def test_mixture2d_labels_shapes_and_seeding():
    data = load("mixture2d", n_components=5, n_train=5000, n_test=500, std=0.05, seed=3)
    assert data.info.shape == (2,) and data.info.kind == "real" and data.info.n_classes == 5
    assert data.train.x.shape == (5000, 2) and data.test.y.shape == (500,)
    counts = torch.bincount(data.train.y, minlength=5)
    assert counts.min() > 850 and counts.max() < 1150  # equal weights: 1000 each, sd ~28
    # each sample lies near the mean of its label, on the unit circle
    angle = data.train.y.double() * 2 * math.pi / 5
    means = torch.stack([angle.cos(), angle.sin()], dim=1)
    assert (data.train.x.double() - means).norm(dim=1).max() < 0.05 * 6
    again = load("mixture2d", n_components=5, n_train=5000, n_test=500, std=0.05, seed=3)
    assert torch.equal(data.train.x, again.train.x) and torch.equal(data.train.y, again.train.y)


def test_mixture2d_log_density_is_the_logsumexp_of_its_components():
    k, std = 3, 0.4
    data = load("mixture2d", n_components=k, n_train=10, n_test=20, std=std, seed=0)
    x = data.test.x.double()
    angles = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = torch.stack([angles.cos(), angles.sin()], dim=1)
    squared = (x[:, None, :] - means[None]).pow(2).sum(-1)
    per_component = -squared / (2 * std**2) - math.log(2 * math.pi * std**2)
    expected = torch.logsumexp(per_component, dim=1) - math.log(k)
    assert torch.allclose(data.log_density(data.test.x).double(), expected, atol=1e-5)


def test_mixture2d_density_integrates_to_one():
    data = load("mixture2d", n_components=8, n_train=10, n_test=10, std=0.2, seed=0)
    axis = torch.linspace(-3, 3, 601)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    density = data.log_density(grid).double().exp().view(601, 601)
    step = (axis[1] - axis[0]).item()
    assert density.sum().item() * step**2 == pytest.approx(1.0, abs=1e-3)
