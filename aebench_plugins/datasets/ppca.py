"""Probabilistic PCA data, x = W z + b + sigma * eps, whose exact log-density is known."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor
from torch.distributions import MultivariateNormal

from aebench import Data, DataInfo, Split
from aebench_plugins.datasets.streams import split_streams


@dataclass(frozen=True)
class PPCADensity:
    """The marginal of the linear-Gaussian model: x ~ N(b, W W^T + sigma^2 I)."""

    weight: Tensor  # W, (dim, latent_dim)
    bias: Tensor  # b, (dim,)
    sigma: float

    def covariance(self) -> Tensor:
        eye = torch.eye(len(self.bias), dtype=self.weight.dtype, device=self.weight.device)
        return self.weight @ self.weight.T + self.sigma**2 * eye

    def __call__(self, x: Tensor) -> Tensor:
        """log p(x) of each row of x (N, dim), computed in float64, returned in x's dtype."""
        distribution = MultivariateNormal(
            self.bias.to(x.device, torch.float64),
            covariance_matrix=self.covariance().to(x.device, torch.float64),
        )
        return distribution.log_prob(x.to(torch.float64)).to(x.dtype)


# Spelled out: a dataset's signature is its schema (split sizes and seed, as in mixture2d).
def ppca(
    dim: Annotated[int, Field(ge=1)] = 10,
    latent_dim: Annotated[int, Field(ge=1)] = 2,
    sigma: Annotated[float, Field(gt=0)] = 0.1,
    n_train: Annotated[int, Field(ge=1)] = 10_000,
    n_test: Annotated[int, Field(ge=1)] = 2_000,
    seed: int = 0,
) -> Data:
    """Linear-Gaussian latent data x = W z + b + sigma eps (seeded W, b); exact log-density."""
    generator = torch.Generator().manual_seed(seed)
    # W and b in float64 so that the density is exact; the samples are float32 like all data
    weight = torch.randn(dim, latent_dim, generator=generator, dtype=torch.float64)
    bias = torch.randn(dim, generator=generator, dtype=torch.float64)

    streams = split_streams(generator)

    def draw(n: int, stream: torch.Generator) -> Split:
        z = torch.randn(n, latent_dim, generator=stream, dtype=torch.float64)
        eps = torch.randn(n, dim, generator=stream, dtype=torch.float64)
        return Split((z @ weight.T + bias + sigma * eps).float())

    train = draw(n_train, streams["train"])
    test = draw(n_test, streams["test"])
    return Data(
        info=DataInfo(shape=(dim,), kind="real"),
        train=train,
        test=test,
        log_density=PPCADensity(weight, bias, sigma),
    )
