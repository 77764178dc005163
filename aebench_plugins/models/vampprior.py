"""A VAE with the VampPrior (Tomczak & Welling 2018, "VAE with a VampPrior"): ``vampprior``.

p(z) = (1/K) sum_k q(z|u_k): the mixture of the encoder's posteriors at K learned pseudo-inputs
u_k, trained with everything else. The KL from q(z|x) to this prior has no closed form and is
estimated by Monte Carlo, on the training draws and in the estimators.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, MixtureSameFamily

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.architectures import mlp_networks
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import Beta, LatentDim, LikelihoodName, Samples, Sigma, Widths
from aebench_plugins.models.vae import GaussianVAE, vae_networks

# Pseudo-inputs start near the middle of the data's range with a little noise to break symmetry
# (Tomczak & Welling start theirs from small random values too).
_INIT_SCALE = 0.1


@register_model("vampprior")
class VampPriorVAE(GaussianVAE):
    """VAE with a VampPrior (Tomczak & Welling 2018): p(z) a mixture of pseudo-inputs' posteriors.

    ``components`` pseudo-inputs, shaped like the data, are parameters: for binary and unit data
    the sigmoid of a free tensor (so they stay in [0, 1]), for real data the tensor itself.
    q(z|x) is the VAE's diagonal Gaussian; ``prior()`` is a ``MixtureSameFamily`` of the
    components' diagonal Gaussians, equally weighted. A latent-variable model: every likelihood
    metric applies (elbo through a Monte-Carlo KL, log_px_iwae, log_px_prior_mc, active_units).
    """

    # Spelled out, as a model's signature is its schema (schema.py)
    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        components: Annotated[int, Field(ge=1)] = 50,
        likelihood: LikelihoodName = "auto",
        sigma: Sigma = 1.0,
        beta: Beta = 1.0,
        mc_samples: Samples = 1,
    ) -> None:
        networks = vae_networks(mlp_networks, self.model_name, info, latent_dim, hidden, likelihood)
        super().__init__(info, **networks, sigma=sigma, beta=beta, mc_samples=mc_samples)
        self.components = components
        self.raw_pseudo_inputs = nn.Parameter(_INIT_SCALE * torch.randn(components, *info.shape))

    def pseudo_inputs(self) -> Tensor:
        """The K pseudo-inputs (K, *data), in the data's range."""
        if self.info.kind == "real":
            return self.raw_pseudo_inputs
        return torch.sigmoid(self.raw_pseudo_inputs)

    def prior(self) -> Distribution:
        mu, logvar = self._posterior_params(self.pseudo_inputs())  # (K, latent) each
        weights = Categorical(logits=torch.zeros(self.components, device=mu.device))
        return MixtureSameFamily(weights, self._posterior_of(mu, logvar))

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        """Per sample: ``rate`` = KL(q(z|x) || p(z)) by Monte Carlo on the forward pass's draws,
        ``distortion`` = -E_q log p(x|z)."""
        z = out.extras["z"]
        log_likelihood = self._likelihood_of(out.extras["decoded"]).log_prob(x).mean(0)
        q = self._posterior_of(out.extras["mu"], out.extras["logvar"])
        rate = (q.log_prob(z) - self.prior().log_prob(z)).mean(0)
        return {"rate": rate, "distortion": -log_likelihood}
