"""A labelled 2-D Gaussian mixture with its exact density: quick latent pictures and clusters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from aebench import Data, DataInfo, Split
from aebench_plugins.datasets.streams import split_streams


def ring(n_components: int) -> Tensor:
    """Component means evenly spaced on the unit circle, (n_components, 2)."""
    angles = torch.arange(n_components, dtype=torch.float64) * (2 * math.pi / n_components)
    return torch.stack([angles.cos(), angles.sin()], dim=1)


@dataclass(frozen=True)
class MixtureDensity:
    """An equal-weight mixture of isotropic Gaussians N(mean_k, std^2 I)."""

    means: Tensor  # (K, 2)
    std: float

    def distribution(self, device: torch.device) -> MixtureSameFamily:
        means = self.means.to(device, torch.float64)
        weights = Categorical(logits=torch.zeros(len(means), dtype=torch.float64, device=device))
        return MixtureSameFamily(weights, Independent(Normal(means, self.std), 1))

    def __call__(self, x: Tensor) -> Tensor:
        """log p(x) of each row of x (N, 2), computed in float64, returned in x's dtype."""
        return self.distribution(x.device).log_prob(x.to(torch.float64)).to(x.dtype)


# Spelled out: a dataset's signature is its schema (split sizes and seed, as in ppca).
def mixture2d(
    n_components: Annotated[int, Field(ge=1)] = 8,
    n_train: Annotated[int, Field(ge=1)] = 10_000,
    n_test: Annotated[int, Field(ge=1)] = 2_000,
    std: Annotated[float, Field(gt=0)] = 0.1,
    seed: int = 0,
) -> Data:
    """Equal-weight 2-D Gaussian mixture, means on the unit circle; labels; exact log-density."""
    means = ring(n_components)
    streams = split_streams(torch.Generator().manual_seed(seed))

    def draw(n: int, stream: torch.Generator) -> Split:
        labels = torch.randint(n_components, (n,), generator=stream)
        noise = torch.randn(n, 2, generator=stream, dtype=torch.float64)
        return Split((means[labels] + std * noise).float(), labels)

    train = draw(n_train, streams["train"])
    test = draw(n_test, streams["test"])
    return Data(
        info=DataInfo(shape=(2,), kind="real", n_classes=n_components),
        train=train,
        test=test,
        log_density=MixtureDensity(means, std),
    )
