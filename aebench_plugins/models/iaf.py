"""A VAE whose posterior is refined by inverse autoregressive flow (Kingma et al. 2016, "Improved
variational inference with inverse autoregressive flow"): ``iaf-vae``.

z_0 ~ N(mu(x), diag sigma^2(x)); each step j gives, from an autoregressive network (MADE, Germain
et al. 2015) of z_{j-1} and a context h(x) from the encoder, a shift m and a gate s per dimension,
output i depending only on the dimensions before i in the step's order, and
z_j = g * z_{j-1} + (1 - g) * m with g = sigmoid(s) (the paper's numerically stable form). The
Jacobian is triangular: log |det| = sum_i log g_i. Steps alternate the natural and the reversed
order. The KL has no closed form and is estimated by Monte Carlo.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch.distributions import Transform, constraints

from aebench import DataInfo
from aebench_plugins.models.architectures import mlp_networks
from aebench_plugins.models.flows import FlowVAE
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import Beta, LatentDim, LikelihoodName, Samples, Sigma, Widths
from aebench_plugins.models.vae import vae_networks

# The gate's bias starts at +1.5 (sigmoid 0.82): each step starts close to the identity, as the
# paper recommends (its "forget gate bias").
_GATE_BIAS = 1.5


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out, in)."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.float())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """(z (..., D), h (..., C)) -> (shift, gate logits), each (..., D); output i sees only the
    inputs that come before it in ``order`` (a permutation of 0..D-1), and all of h."""

    def __init__(self, dim: int, context: int, hidden: list[int], order: Tensor) -> None:
        super().__init__()
        degrees_in = torch.empty(dim, dtype=torch.long)
        degrees_in[order] = torch.arange(1, dim + 1)  # position in the order, from 1
        self.register_buffer("degrees_in", degrees_in)
        layers: list[nn.Module] = []
        previous = degrees_in
        for width in hidden:
            # hidden degrees in 1..D-1 (1 where D = 1: no unit may then reach an output)
            degrees = torch.arange(width) % max(1, dim - 1) + 1
            layers.append(MaskedLinear(degrees[:, None] >= previous[None, :]))
            previous = degrees
        self.hidden = nn.ModuleList(layers)
        self.context = nn.Linear(context, hidden[0]) if hidden else None
        out_mask = degrees_in[:, None] > previous[None, :]
        self.shift = MaskedLinear(out_mask)
        self.gate = MaskedLinear(out_mask)
        nn.init.constant_(self.gate.bias, _GATE_BIAS)

    def forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        a = z
        for i, layer in enumerate(self.hidden):
            a = layer(a)
            if i == 0 and self.context is not None:
                a = a + self.context(h)
            a = F.elu(a)
        return self.shift(a), self.gate(a)


class IAFTransform(Transform):
    """One IAF step y = g * x + (1 - g) * m, (m, s) = made(x, h), g = sigmoid(s), on vectors.

    Samples drawn through it are inverted from its cache; other points by D passes that fix one
    more dimension each, in the step's order (exact after D passes).
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, made: MADE, context: Tensor, cache_size: int = 1) -> None:
        super().__init__(cache_size=cache_size)
        self.made, self.h = made, context

    def _call(self, x: Tensor) -> Tensor:
        shift, gate_logit = self.made(x, self.h)
        gate = torch.sigmoid(gate_logit)
        return gate * x + (1.0 - gate) * shift

    def _inverse(self, y: Tensor) -> Tensor:
        x = torch.zeros_like(y)
        for _ in range(y.shape[-1]):  # pass i fixes the i-th dimension in order, and all before
            shift, gate_logit = self.made(x, self.h)
            gate = torch.sigmoid(gate_logit)
            x = (y - (1.0 - gate) * shift) / gate
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        _, gate_logit = self.made(x, self.h)
        return F.logsigmoid(gate_logit).sum(-1)


@register_model("iaf-vae")
class IAFVAE(FlowVAE):
    """VAE with an inverse-autoregressive-flow posterior (Kingma et al. 2016); KL by Monte Carlo.

    q(z|x) is a diagonal Gaussian refined by ``flows`` IAF steps (MADE networks of widths
    ``flow_hidden``, conditioned on a ``context``-sized output of the encoder); p(z) = N(0, I).
    A latent-variable model: every likelihood metric applies (elbo and log_px_iwae through
    Monte-Carlo log q(z|x), log_px_prior_mc, active_units). ``encode`` is the flow applied to the
    Gaussian's mean (the posterior's mean has no closed form).
    """

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        flows: Annotated[int, Field(ge=0)] = 2,
        flow_hidden: Annotated[Widths, Field(min_length=1)] = (64,),
        context: Annotated[int, Field(ge=1)] = 16,
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        mc_samples: Samples = 1,
    ) -> None:
        networks = vae_networks(
            mlp_networks, self.model_name, info, latent_dim, hidden, likelihood, context
        )
        super().__init__(info, **networks, sigma=sigma, beta=beta, mc_samples=mc_samples)
        natural = torch.arange(latent_dim)
        self.steps = nn.ModuleList(
            MADE(latent_dim, context, list(flow_hidden), natural if j % 2 == 0 else natural.flip(0))
            for j in range(flows)
        )

    def _transforms(self, rest: Tensor) -> list[Transform]:
        return [IAFTransform(made, rest) for made in self.steps]
