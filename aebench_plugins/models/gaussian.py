"""The diagonal-Gaussian pieces of a VAE: the reparameterised sample and the closed-form KL."""

from __future__ import annotations

import torch
from torch import Tensor


def reparameterise(mu: Tensor, logvar: Tensor, n: int) -> Tensor:
    """``n`` draws z = mu + sigma * eps, eps ~ N(0, I), shaped (n, *mu.shape); differentiable."""
    eps = torch.randn((n, *mu.shape), dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) per sample, summed over the last dimension.

    Closed form: 1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
