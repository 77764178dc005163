"""The regularised autoencoder ``rae`` (Ghosh et al. 2020), with its ex-post density.

A deterministic autoencoder whose loss per sample is

    reconstruction(x, D(z)) + embedding_weight * ||z||^2 / 2 + reg_weight * R,   z = E(x)

with R the decoder's regulariser: ``"l2"``, the squared norm of the decoder's weights (RAE-L2;
one number for the batch), or ``"gp"``, the squared norm of the gradient of the decoder's output
with respect to the code, ||d sum_d D(z)_d / dz||^2 (RAE-GP; the gradient of the summed output,
a vector-Jacobian product with ones, not the whole Jacobian's norm: one backward pass).

Having no prior, an RAE is given one ex post: a Gaussian mixture (scikit-learn's
``GaussianMixture``, full covariances) fitted on the codes of the training split once training
ends. The core calls ``fit_ex_post(x_train)`` then; the mixture lives in buffers, so it is kept
with the weights.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor
from torch.distributions import (
    Categorical,
    Distribution,
    MixtureSameFamily,
    MultivariateNormal,
)

from aebench import DataInfo, ModelOutput
from aebench_plugins.models.ae import CodeAutoencoder, reconstruction_loss
from aebench_plugins.models.registry import register_model
from aebench_plugins.models.schema import LatentDim, Widths

ENCODE_BATCH = 1024  # codes for the ex-post fit: encoded in chunks of this many inputs


def gradient_penalty(recon: Tensor, z: Tensor, create_graph: bool) -> Tensor:
    """||d sum(recon) / dz||^2 per sample, for ``recon`` computed from ``z`` (B, latent)."""
    (grad,) = torch.autograd.grad(
        recon, z, grad_outputs=torch.ones_like(recon), create_graph=create_graph
    )
    return grad.pow(2).sum(-1)


@register_model("rae")
class RAE(CodeAutoencoder):
    """RAE (Ghosh et al. 2020), L2 or gradient penalty; no ELBO, a density only ex post (GMM).

    Deterministic: no posterior, so not a latent-variable model and no ELBO or log p(x) metric
    (they are NaN); reconstruction and code metrics apply. Its only density is the ex-post one:
    ``prior()``, a ``MixtureSameFamily`` of ``components`` full-covariance Gaussians fitted by
    scikit-learn's ``GaussianMixture`` (seed 0) on the codes of the training split after training
    (``fit_ex_post``, which the core calls). Sample with ``decode(prior().sample((n,)))``; score
    codes with ``prior().log_prob(encode(x))``. Before the fit, ``prior()`` raises.
    """

    def __init__(
        self,
        info: DataInfo,
        latent_dim: LatentDim = 16,
        hidden: Widths = (256, 128),
        regularisation: Literal["l2", "gp"] = "gp",
        embedding_weight: Annotated[float, Field(ge=0)] = 1.0,
        reg_weight: Annotated[float, Field(ge=0)] = 1e-2,
        components: Annotated[int, Field(ge=1)] = 10,
    ) -> None:
        encoder, decoder = self.networks(
            self.model_name, info.shape, hidden, latent_dim, latent_dim, info.shape
        )
        super().__init__(info, encoder, decoder, "linear")
        self.regularisation = regularisation
        self.embedding_weight, self.reg_weight = embedding_weight, reg_weight
        # The ex-post mixture, in buffers so that state_dict keeps it; unfitted until the fit.
        self.register_buffer("ex_post_weights", torch.full((components,), 1 / components))
        self.register_buffer("ex_post_means", torch.zeros(components, latent_dim))
        self.register_buffer(
            "ex_post_scale_tril", torch.eye(latent_dim).expand(components, -1, -1).clone()
        )
        self.register_buffer("ex_post_fitted", torch.tensor(False))

    def decoder_penalty(self, out: ModelOutput) -> Tensor:
        """R per sample: the gradient penalty, or the decoder's squared weight norm."""
        z = out.code
        if self.regularisation == "l2":
            norm = sum(p.pow(2).sum() for p in self.decoder.parameters())
            return torch.as_tensor(norm).expand(len(z))
        if z.requires_grad and torch.is_grad_enabled():  # training: through the forward's graph
            return gradient_penalty(out.recon, z, create_graph=True)
        with torch.enable_grad():  # evaluation without gradients: its value, decoded again
            z = z.detach().requires_grad_()
            return gradient_penalty(self.decode(z), z, create_graph=False).detach()

    def loss_terms(self, x: Tensor, out: ModelOutput) -> dict[str, Tensor]:
        """Per sample: ``distortion``, ``embedding`` (||z||^2 / 2) and ``decoder_penalty``."""
        return {
            "distortion": reconstruction_loss(x, out.extras["logits"], self.info.kind),
            "embedding": 0.5 * out.code.pow(2).sum(-1),
            "decoder_penalty": self.decoder_penalty(out),
        }

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        terms = self.loss_terms(x, out)
        return (
            terms["distortion"]
            + self.embedding_weight * terms["embedding"]
            + self.reg_weight * terms["decoder_penalty"]
        )

    @torch.no_grad()
    def fit_ex_post(self, x: Tensor) -> None:
        """Fit the ex-post mixture on the codes of ``x`` (the training split, after training)."""
        from sklearn.mixture import GaussianMixture  # imported when fitting: it is slow to load

        codes = torch.cat([self.encode(chunk) for chunk in x.split(ENCODE_BATCH)])
        k = min(len(self.ex_post_weights), len(codes))  # a tiny split: fewer components
        gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-6, random_state=0)
        gmm.fit(codes.double().cpu().numpy())
        weights = torch.zeros_like(self.ex_post_weights)
        means = torch.zeros_like(self.ex_post_means)
        scale_tril = self.ex_post_scale_tril.clone()
        covariances = torch.as_tensor(gmm.covariances_)
        weights[:k] = torch.as_tensor(gmm.weights_).to(weights)  # unused components: weight 0
        means[:k] = torch.as_tensor(gmm.means_).to(means)
        scale_tril[:k] = torch.linalg.cholesky(covariances).to(scale_tril)
        self.ex_post_weights.copy_(weights)
        self.ex_post_means.copy_(means)
        self.ex_post_scale_tril.copy_(scale_tril)
        self.ex_post_fitted.fill_(True)

    def prior(self) -> Distribution:
        """The ex-post density of the codes: a Gaussian mixture, batch shape (), event (latent,)."""
        if not bool(self.ex_post_fitted):
            raise RuntimeError(
                "rae: the ex-post density is fitted after training (fit_ex_post); not yet"
            )
        return MixtureSameFamily(
            Categorical(probs=self.ex_post_weights),
            MultivariateNormal(self.ex_post_means, scale_tril=self.ex_post_scale_tril),
        )
