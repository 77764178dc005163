"""A VAE whose posterior is a diagonal Gaussian pushed through planar flows (Rezende & Mohamed
2015, "Variational inference with normalizing flows"): ``planar-vae``.

z_0 ~ N(mu(x), diag sigma^2(x)), z_j = z_{j-1} + u_j tanh(w_j^T z_{j-1} + b_j), j = 1..F; the
flow parameters are amortised (the encoder gives them per input, as in the paper), and u_j is
constrained so that w_j^T u_j >= -1, which makes each step invertible (the paper's appendix A.1).
log q(z_F|x) = log N(z_0) - sum_j log |1 + tanh'(w_j^T z_{j-1} + b_j) u_j^T w_j|; the KL has no
closed form and is estimated by Monte Carlo, on the training draws and in the estimators.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torch.distributions import Distribution, Transform, TransformedDistribution, constraints

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.architectures import mlp_networks
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import Beta, LatentDim, LikelihoodName, Samples, Sigma, Widths
from aebench_plugins.models.vae import GaussianVAE, vae_networks

_BISECTION_STEPS = 60  # shrinks the interval (width 2|w^T u|) by 2^60: below float64 precision


def invertible_u(u: Tensor, w: Tensor) -> Tensor:
    """u moved along w so that w^T u_hat = -1 + softplus(w^T u) > -1 (Rezende & Mohamed, A.1)."""
    wu = (w * u).sum(-1, keepdim=True)
    shift = -1.0 + F.softplus(wu) - wu
    return u + shift * w / (w.pow(2).sum(-1, keepdim=True) + 1e-12)


class PlanarTransform(Transform):
    """y = x + u tanh(w^T x + b) on vectors (the last dimension), for parameters u, w of shape
    (*batch, D) and b of shape (*batch,), broadcast against x of shape (*sample, *batch, D).

    ``u`` must already satisfy w^T u > -1 (see ``invertible_u``). Samples drawn through the
    transform are inverted from its cache; any other point by bisection on the scalar w^T x, which
    the map moves monotonically, then one Newton step so that gradients follow the implicit
    function.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, u: Tensor, w: Tensor, b: Tensor, cache_size: int = 1) -> None:
        super().__init__(cache_size=cache_size)
        self.u, self.w, self.b = u, w, b

    def _pre_activation(self, x: Tensor) -> Tensor:
        return (x * self.w).sum(-1) + self.b

    def _call(self, x: Tensor) -> Tensor:
        return x + self.u * torch.tanh(self._pre_activation(x)).unsqueeze(-1)

    def _inverse(self, y: Tensor) -> Tensor:
        # w^T y = a + c tanh(a + b) with a = w^T x and c = w^T u > -1: increasing in a, and
        # |a - w^T y| <= |c|, so bisect on that interval, then invert the rest exactly.
        target = (y * self.w).sum(-1)
        c = (self.u * self.w).sum(-1).expand_as(target)
        b = self.b.expand_as(target)
        with torch.no_grad():
            t, cc, bb = target.double(), c.double(), b.double()
            low, high = t - cc.abs(), t + cc.abs()
            for _ in range(_BISECTION_STEPS):
                mid = 0.5 * (low + high)
                above = mid + cc * torch.tanh(mid + bb) > t
                high = torch.where(above, mid, high)
                low = torch.where(above, low, mid)
            a0 = (0.5 * (low + high)).to(target.dtype)
        # One Newton step from the root: the same value, and the implicit function's gradients.
        residual = a0 + c * torch.tanh(a0 + b) - target
        slope = 1.0 + c * (1.0 - torch.tanh(a0 + b).pow(2))
        a = a0 - residual / slope
        return y - self.u * torch.tanh(a + b).unsqueeze(-1)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        # det(I + u psi^T) = 1 + psi^T u, psi = tanh'(w^T x + b) w (matrix determinant lemma)
        slope = 1.0 - torch.tanh(self._pre_activation(x)).pow(2)
        return torch.log1p(slope * (self.u * self.w).sum(-1))


def flow_parameter_count(latent_dim: int) -> int:
    """Numbers per planar step: u and w (latent_dim each) and b."""
    return 2 * latent_dim + 1


def planar_transforms(params: Tensor, latent_dim: int) -> list[PlanarTransform]:
    """The steps of a planar flow from raw parameters (*batch, F, 2 * latent_dim + 1)."""
    steps = []
    for raw in params.unbind(-2):
        u, w, b = raw[..., :latent_dim], raw[..., latent_dim : 2 * latent_dim], raw[..., -1]
        steps.append(PlanarTransform(invertible_u(u, w), w, b))
    return steps


class FlowVAE(GaussianVAE):
    """A GaussianVAE whose q(z|x) is its Gaussian pushed through transforms that depend on x.

    The encoder gives 2 * latent_dim numbers (mu, log sigma^2) and then the transforms'
    per-input parameters; subclasses turn those into ``torch.distributions.Transform`` steps.
    The rate is a Monte-Carlo KL on the forward pass's draws.
    """

    def _encoded(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """mu, logvar (B, latent) and the rest of the encoder's output (B, ...)."""
        out = self.encoder(x)
        d = self.latent_dim
        return out[:, :d], out[:, d : 2 * d], out[:, 2 * d :]

    def _transforms(self, rest: Tensor) -> list[Transform]:
        raise NotImplementedError

    def _posterior_params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar, _ = self._encoded(x)
        return mu, logvar

    def _flow_posterior(self, mu: Tensor, logvar: Tensor, rest: Tensor) -> Distribution:
        return TransformedDistribution(self._posterior_of(mu, logvar), self._transforms(rest))

    def posterior(self, x: Tensor) -> Distribution:
        return self._flow_posterior(*self._encoded(x))

    def encode(self, x: Tensor) -> Tensor:
        """The flow applied to the Gaussian's mean (the posterior's mean has no closed form)."""
        mu, _, rest = self._encoded(x)
        z = mu
        for step in self._transforms(rest):
            z = step(z)
        return z

    def forward(self, x: Tensor) -> ModelOutput:
        mu, logvar, rest = self._encoded(x)
        q = self._flow_posterior(mu, logvar, rest)
        z = q.rsample(torch.Size([self.mc_samples]))  # (S, B, latent)
        log_q = q.log_prob(z)  # through each step's cache: no inversion
        decoded = self._decoded(z)
        return ModelOutput(
            code=z[0],
            recon=lambda: self._likelihood_of(decoded[0]).mean,
            hidden=mu,  # sparsity penalties act on the deterministic code, not on the noise
            extras={"mu": mu, "logvar": logvar, "z": z, "log_q": log_q, "decoded": decoded},
        )

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        """Per sample: ``rate`` = KL(q(z|x) || p(z)) by Monte Carlo on the forward pass's draws,
        ``distortion`` = -E_q log p(x|z)."""
        z = out.extras["z"]
        log_likelihood = self._likelihood_of(out.extras["decoded"]).log_prob(x).mean(0)
        rate = (out.extras["log_q"] - self.prior().log_prob(z)).mean(0)
        return {"rate": rate, "distortion": -log_likelihood}


@register_model("planar-vae")
class PlanarVAE(FlowVAE):
    """VAE with a planar-flow posterior (Rezende & Mohamed 2015); KL by Monte Carlo.

    q(z|x) is a diagonal Gaussian pushed through ``flows`` planar steps whose parameters the
    encoder gives per input; p(z) = N(0, I). A latent-variable model: every likelihood metric
    applies (elbo and log_px_iwae through Monte-Carlo log q(z|x), log_px_prior_mc, active_units).
    ``encode`` is the flow applied to the Gaussian's mean (the posterior's mean has no closed
    form); ``posterior(x).log_prob`` is exact for any z (samples from the cache, other points by a
    numerical inverse).
    """

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        flows: Annotated[int, Field(ge=0)] = 4,
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        mc_samples: Samples = 1,
    ) -> None:
        networks = vae_networks(
            mlp_networks,
            self.model_name,
            info,
            latent_dim,
            hidden,
            likelihood,
            extra_outputs=flows * flow_parameter_count(latent_dim),
        )
        super().__init__(info, **networks, sigma=sigma, beta=beta, mc_samples=mc_samples)
        self.flows = flows

    def _transforms(self, rest: Tensor) -> list[Transform]:
        params = rest.reshape(len(rest), self.flows, flow_parameter_count(self.latent_dim))
        return list(planar_transforms(params, self.latent_dim))
