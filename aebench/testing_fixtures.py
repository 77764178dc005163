"""The tiny models and data the conformance kit runs plugins on (``aebench.testing``).

Apart from the checks so that ``check_observer`` (``aebench.testing_observer``) and the other
checks share them without importing each other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from aebench.contract.data import Data, DataInfo, Split
from aebench.contract.model import ModelOutput
from aebench.model_conformance import sample_batch


class _LinearAutoencoder(nn.Module):
    """A tiny autoencoder with a sigmoid code, for checking regularizers, metrics and observers."""

    code_range = (0.0, 1.0)

    def __init__(self, info: DataInfo, latent_dim: int = 4) -> None:
        super().__init__()
        self.info = info
        size = math.prod(info.shape)
        self.encoder = nn.Linear(size, latent_dim)
        self.decoder = nn.Linear(latent_dim, size)

    def encode(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.encoder(x.flatten(1)))

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z)).view(-1, *self.info.shape)

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return (out.recon - x).pow(2).flatten(1).sum(1)


class _TinyGaussianVAE(_LinearAutoencoder):
    """A linear VAE: q(z|x) = N(Wx + b, 0.5^2 I), p(z) = N(0, I), p(x|z) Bernoulli(sigmoid(Vz + c)).

    Enough of a latent-variable model to run a metric that needs one; a 2-D latent, so that
    metrics limited to small latents (exact quadrature) apply too."""

    likelihood_name = "bernoulli"

    def __init__(self, info: DataInfo, latent_dim: int = 2) -> None:
        super().__init__(info, latent_dim)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def prior(self) -> Distribution:
        zeros = torch.zeros(self.encoder.out_features)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def posterior(self, x: Tensor) -> Distribution:
        mean = self.encode(x)
        return Independent(Normal(mean, torch.full_like(mean, 0.5)), 1)

    def likelihood(self, z: Tensor) -> Distribution:
        logits = self.decoder(z).view(*z.shape[:-1], *self.info.shape)
        return Independent(Bernoulli(logits=logits), len(self.info.shape))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return -self.likelihood(out.code).log_prob(x)


def _metric_data(labelled: bool, n: int = 64) -> Data:
    """Binary 8x8 images, every pixel an independent fair coin (a Bernoulli of a uniform
    probability): their exact log-density is 64 log(1/2), so metrics that need one apply."""
    info = DataInfo(shape=(1, 8, 8), kind="binary", n_classes=3 if labelled else None)

    def split(seed: int) -> Split:
        x = sample_batch(info, batch=n, seed=seed)
        y = torch.arange(n) % 3 if labelled else None
        return Split(x, y)

    def log_density(x: Tensor) -> Tensor:
        return torch.full((len(x),), math.prod(info.shape) * math.log(0.5), device=x.device)

    return Data(info=info, train=split(0), test=split(1), log_density=log_density)


def _factor_data(n: int = 64) -> Data:
    """Binary 8x8 images of a 2x2 square whose row and column (4 values each) are the data's two
    ground-truth factors, which it can render: for metrics that need factors."""
    info = DataInfo(
        shape=(1, 8, 8), kind="binary", factor_names=("row", "column"), factor_sizes=(4, 4)
    )

    def render(factors: Tensor) -> Tensor:
        rows = F.one_hot(factors[:, 0], 4).repeat_interleave(2, dim=1).float()  # (N, 8)
        columns = F.one_hot(factors[:, 1], 4).repeat_interleave(2, dim=1).float()
        return (rows[:, :, None] * columns[:, None, :]).unsqueeze(1)

    def split(seed: int) -> Split:
        factors = torch.randint(0, 4, (n, 2), generator=torch.Generator().manual_seed(seed))
        return Split(render(factors), factors=factors)

    return Data(info=info, train=split(0), test=split(1), render=render)
