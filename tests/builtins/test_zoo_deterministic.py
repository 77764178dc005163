"""The deterministic and discrete models (rae, vq-vae): each objective against an explicit
computation, the RAE's ex-post density, and the contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import MixtureSameFamily

from aebench import Data, DataInfo, LatentVariableModel, Split
from aebench.run.sections import TrainSection
from aebench.run.train import train_model
from aebench.testing import check_model, sample_batch
from aebench_plugins.models.rae import RAE
from aebench_plugins.models.vqvae import VQVAE
from aebench_plugins.regularizers import NoRegularizer

INFO = DataInfo(shape=(1, 8, 8), kind="unit")


# -- VQ-VAE --------------------------------------------------------------------------------------


def vq_model() -> VQVAE:
    torch.manual_seed(0)
    model = VQVAE(INFO, latent_dim=6, embedding_dim=3, codebook_size=5, hidden=[16], beta=0.4)
    with torch.no_grad():  # codes spread out, so that several are in use
        model.codebook.normal_()
    return model


def test_vq_codes_are_the_nearest_codebook_entries() -> None:
    model = vq_model()
    x = sample_batch(INFO)
    z_e = model.encoder(x).view(len(x), 2, 3)
    out = model(x)
    for i in range(len(x)):
        for g in range(2):
            distances = [(z_e[i, g] - e).pow(2).sum().item() for e in model.codebook]
            best = model.codebook[min(range(5), key=distances.__getitem__)]
            assert torch.allclose(out.code[i, 3 * g : 3 * g + 3], best)
    assert torch.allclose(model.encode(x), out.code)  # straight-through: e up to rounding


def test_vq_straight_through_gradient_is_the_gradient_at_the_code() -> None:
    model = vq_model()
    x = sample_batch(INFO)
    z_e = model.encoder(x).view(len(x), 2, 3).detach().requires_grad_()
    out = model(x)
    # The reconstruction loss through the model's straight-through code, w.r.t. z_e ...
    e = out.extras["e"].detach()
    z_q = z_e + (e - z_e).detach()
    distortion = F.binary_cross_entropy_with_logits(
        model.decoder(z_q.flatten(1)), x, reduction="sum"
    )
    (through,) = torch.autograd.grad(distortion, z_e)
    # ... equals its gradient w.r.t. the quantised code itself, taken as an input.
    code = e.clone().requires_grad_()
    at_code = F.binary_cross_entropy_with_logits(model.decoder(code.flatten(1)), x, reduction="sum")
    (expected,) = torch.autograd.grad(at_code, code)
    assert torch.allclose(through, expected)
    assert through.abs().sum() > 0


def test_vq_codebook_and_commitment_losses() -> None:
    model = vq_model()
    x = sample_batch(INFO)
    out = model(x)
    terms = model.loss_terms(x, out)
    z_e, e = out.extras["z_e"], out.extras["e"]
    squared = ((z_e - e) ** 2).sum((1, 2))  # ||z_e - e||^2 per sample, both groups
    assert torch.allclose(terms["codebook"], squared) and torch.allclose(
        terms["commitment"], squared
    )
    distortion = F.binary_cross_entropy(out.recon, x, reduction="none").flatten(1).sum(1)
    expected = distortion + squared + 0.4 * squared
    assert torch.allclose(model.loss(x, out), expected, atol=1e-3)
    # The codebook loss moves only the codes; the commitment loss only the encoder.
    model.zero_grad(set_to_none=True)
    terms["codebook"].sum().backward(retain_graph=True)
    assert model.codebook.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())
    model.zero_grad(set_to_none=True)
    terms["commitment"].sum().backward()
    assert model.codebook.grad is None
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_vq_prior_is_uniform_over_the_codebook() -> None:
    model = vq_model()
    prior = model.prior()
    torch.manual_seed(0)
    z = prior.sample((2000,))
    assert z.shape == (2000, 6)
    groups = z.view(2000, 2, 3)
    for g in range(2):  # every entry is a codebook vector, each about equally often
        matches = (groups[:, g, None, :] == model.codebook[None]).all(-1)  # (2000, 5)
        assert matches.sum(1).eq(1).all()
        assert torch.allclose(matches.float().mean(0), torch.full((5,), 0.2), atol=0.04)
    log_k = torch.log(torch.tensor(5.0))
    assert torch.allclose(prior.log_prob(z[:3]), torch.full((3,), -2 * log_k))
    assert prior.log_prob(z[:1] + 0.1).item() == -float("inf")  # off the codebook's grid
    assert model.decode(z[:7]).shape == (7, *INFO.shape)
    assert torch.equal(model.codes(torch.tensor([[1, 4]])), model.codebook[[1, 4]].flatten()[None])
    assert not isinstance(model, LatentVariableModel)  # no ELBO: the metrics say so


def test_vq_vae_keeps_the_contract() -> None:
    check_model(VQVAE, params={"hidden": [16]}, shapes=((64,), (1, 8, 8)))


# -- RAE -----------------------------------------------------------------------------------------


def test_rae_gradient_penalty_against_the_jacobian() -> None:
    torch.manual_seed(0)
    model = RAE(INFO, latent_dim=3, hidden=[16], regularisation="gp")
    x = sample_batch(INFO)
    out = model(x)
    penalty = model.loss_terms(x, out)["decoder_penalty"]
    for i in range(len(x)):
        jacobian = torch.autograd.functional.jacobian(
            lambda z: model.decode(z[None])[0], out.code[i].detach()
        )  # (1, 8, 8, 3)
        expected = jacobian.flatten(0, -2).sum(0).pow(2).sum()  # ||d sum_d D(z)_d / dz||^2
        assert penalty[i].item() == pytest.approx(expected.item(), rel=1e-4)
    with torch.no_grad():  # evaluation (validation, loss terms): the same value, no graph
        assert torch.allclose(model.loss_terms(x, model(x))["decoder_penalty"], penalty.detach())
    assert penalty.requires_grad  # in training it is part of the loss's graph


def test_rae_l2_penalty_and_loss() -> None:
    torch.manual_seed(0)
    model = RAE(INFO, latent_dim=3, hidden=[16], regularisation="l2", embedding_weight=0.3)
    model.reg_weight = 0.01
    x = sample_batch(INFO)
    out = model(x)
    norm = sum((p**2).sum() for p in model.decoder.parameters())
    distortion = F.binary_cross_entropy(out.recon, x, reduction="none").flatten(1).sum(1)
    expected = distortion + 0.3 * 0.5 * (out.code**2).sum(1) + 0.01 * norm
    assert torch.allclose(model.loss(x, out), expected, atol=1e-3)


def test_rae_ex_post_density_is_the_mixture_fitted_on_its_codes() -> None:
    from sklearn.mixture import GaussianMixture

    torch.manual_seed(0)
    model = RAE(INFO, latent_dim=2, hidden=[16], components=3)
    x = sample_batch(INFO, batch=64)
    with pytest.raises(RuntimeError, match="fit_ex_post"):
        model.prior()
    with torch.no_grad():
        model.fit_ex_post(x)
        codes = model.encode(x)
    gmm = GaussianMixture(3, covariance_type="full", reg_covar=1e-6, random_state=0)
    gmm.fit(codes.double().numpy())
    prior = model.prior()
    assert isinstance(prior, MixtureSameFamily)
    expected = torch.as_tensor(gmm.score_samples(codes.double().numpy())).float()
    assert torch.allclose(prior.log_prob(codes), expected, atol=1e-3)
    assert prior.sample((5,)).shape == (5, 2)
    again = RAE(INFO, latent_dim=2, hidden=[16], components=3)
    again.load_state_dict(model.state_dict())  # the mixture is kept with the weights
    assert torch.allclose(again.prior().log_prob(codes), prior.log_prob(codes))


def test_training_fits_the_ex_post_density() -> None:
    torch.manual_seed(0)
    model = RAE(INFO, latent_dim=2, hidden=[16], components=2)
    x = sample_batch(INFO, batch=48)
    data = Data(info=INFO, train=Split(x), test=Split(x[:8]))
    train_model(
        model,
        NoRegularizer(),
        data,
        TrainSection(epochs=1, batch_size=16, lr=1e-2),
        generator=torch.Generator().manual_seed(0),
    )
    assert bool(model.ex_post_fitted)
    assert model.training  # left as training left it
    assert torch.isfinite(model.prior().log_prob(model.encode(x))).all()


@pytest.mark.parametrize("regularisation", ["l2", "gp"])
def test_rae_keeps_the_contract(regularisation: str) -> None:
    params = {"hidden": [16], "regularisation": regularisation, "components": 2}
    check_model(RAE, params=params, shapes=((64,), (1, 8, 8)))
