"""A third-party plugin package written from docs/plugins.md, with the mistakes users made: the
blame tests (tests/run/test_blame.py) and the contract checks' tests (tests/contract/) use it,
through ``load_plugins(extra=[aebench_offcontract])`` or installed as a fake distribution.

Models: ``encode-3d`` (encode returns ``(B, 1, latent)``), ``encode-mu-logvar`` (a VAE whose
encode returns mean and log-variance side by side), ``posterior-breaks`` (a VAE whose posterior
raises once it is measured, in eval mode) and the well-behaved ``tidy-vae``. Datasets:
``float64`` (digits-like data in float64) and ``grid-swapped`` (one lit cell of a grid from its
(row, column) factors, rendered from (column, row)), beside ``grid`` that renders them right.
Metric: ``breaks`` (raises from its own code).
"""

from __future__ import annotations

import math

import torch
from torch import distributions as D

from aebench import Column, Data, DataInfo, Metric, ModelOutput, Split, hookimpl

SIDE = 6  # the grid datasets' images are SIDE x SIDE, one cell lit


class TidyVAE(torch.nn.Module):
    """A linear Gaussian VAE that keeps the contract: the others break one piece of it."""

    def __init__(self, info: DataInfo, latent_dim: int = 2) -> None:
        super().__init__()
        self.shape, self.latent = info.shape, latent_dim
        self.encoder = torch.nn.Linear(math.prod(info.shape), 2 * latent_dim)
        self.decoder = torch.nn.Linear(latent_dim, math.prod(info.shape))
        self.register_buffer("zero", torch.zeros(latent_dim))

    def _mean_logvar(self, x):
        return self.encoder(x.flatten(1)).chunk(2, dim=1)

    def prior(self):
        return D.Independent(D.Normal(self.zero, torch.ones_like(self.zero)), 1)

    def posterior(self, x):
        mean, logvar = self._mean_logvar(x)
        return D.Independent(D.Normal(mean, (0.5 * logvar).exp()), 1)

    def likelihood(self, z):
        mean = self.decoder(z).view(*z.shape[:-1], *self.shape)
        return D.Independent(D.Normal(mean, torch.full_like(mean, 0.3)), len(self.shape))

    def encode(self, x):
        return self._mean_logvar(x)[0]

    def decode(self, z):
        return self.decoder(z).view(-1, *self.shape)

    def forward(self, x):
        z = self.posterior(x).rsample()
        return ModelOutput(code=z, recon=self.decode(z))

    def loss(self, x, out):
        q = self.posterior(x)
        return -self.likelihood(out.code).log_prob(x) + D.kl_divergence(q, self.prior())


class EncodeMuLogvar(TidyVAE):
    """encode returns the encoder's whole output: mean and log-variance, width 2 * latent."""

    def encode(self, x):
        return self.encoder(x.flatten(1))


class BreakingPosterior(D.Independent):
    """q(z|x) whose samples cannot be drawn: a bare torch error, raised from this package."""

    def rsample(self, sample_shape=()):
        return torch.cat([torch.zeros(2, 2), torch.zeros(3, 2)], dim=1)


class PosteriorBreaks(TidyVAE):
    """posterior works while training; once measured (in eval mode) its samples raise. Its mean,
    which the health checks read, is fine."""

    def posterior(self, x):
        q = super().posterior(x)
        return q if self.training else BreakingPosterior(q.base_dist, 1)


class Encode3d(torch.nn.Module):
    """A linear autoencoder whose encode returns ``(B, 1, latent)``; forward's code is right."""

    def __init__(self, info: DataInfo, latent_dim: int = 2) -> None:
        super().__init__()
        self.shape = info.shape
        self.encoder = torch.nn.Linear(math.prod(info.shape), latent_dim)
        self.decoder = torch.nn.Linear(latent_dim, math.prod(info.shape))

    def encode(self, x):
        return self.encoder(x.flatten(1)).unsqueeze(1)

    def decode(self, z):
        return self.decoder(z).view(-1, *self.shape)

    def forward(self, x):
        code = self.encoder(x.flatten(1))
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x, out):
        return (out.recon - x).pow(2).flatten(1).sum(1)


def float64(n: int = 64) -> Data:
    """Unit-interval vectors of 16 dimensions, in float64."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2 * n, 16, generator=generator, dtype=torch.float64)
    return Data(info=DataInfo(shape=(16,), kind="unit"), train=Split(x[:n]), test=Split(x[n:]))


def _render(factors: torch.Tensor) -> torch.Tensor:
    """One lit cell per image, at (row, column) = the factors."""
    images = torch.zeros(len(factors), SIDE, SIDE, device=factors.device)
    images[torch.arange(len(factors), device=factors.device), factors[:, 0], factors[:, 1]] = 1.0
    return images.view(len(factors), SIDE * SIDE)


def _render_swapped(factors: torch.Tensor) -> torch.Tensor:
    """The mistake: the factors read as (column, row)."""
    return _render(factors.flip(1))


def _grid(render) -> Data:
    cells = torch.cartesian_prod(torch.arange(SIDE), torch.arange(SIDE))
    order = torch.randperm(len(cells), generator=torch.Generator().manual_seed(0))
    cells = cells[order]
    train, test = cells[: len(cells) // 2], cells[len(cells) // 2 :]
    info = DataInfo(
        shape=(SIDE * SIDE,), kind="binary", factor_names=("row", "col"), factor_sizes=(SIDE, SIDE)
    )
    return Data(
        info=info,
        train=Split(_render(train), factors=train),
        test=Split(_render(test), factors=test),
        render=render,
    )


def grid() -> Data:
    """A lit cell of a grid, rendered from its (row, column)."""
    return _grid(_render)


def grid_swapped() -> Data:
    """A lit cell of a grid, rendered from (column, row): render disagrees with the splits."""
    return _grid(_render_swapped)


def breaks(context) -> dict[str, float]:
    """Raises from its own code."""
    raise ValueError("the metric's own bug")


@hookimpl
def aebench_register_models(register):
    register("tidy-vae", TidyVAE)
    register("encode-mu-logvar", EncodeMuLogvar)
    register("posterior-breaks", PosteriorBreaks)
    register("encode-3d", Encode3d)


@hookimpl
def aebench_register_datasets(register):
    register("float64", float64)
    register("grid", grid)
    register("grid-swapped", grid_swapped)


@hookimpl
def aebench_register_metrics(register):
    register("breaks", Metric(breaks, columns=[Column("broken_value")]))
