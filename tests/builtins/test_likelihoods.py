"""The likelihoods p(x|z) of the built-in VAEs (aebench_plugins/models/likelihoods.py): each a
normalised density or mass function, the data of each kind in the support of the one ``auto``
picks for it, the discretized logistic's mean and log-probabilities against brute force and by
hand."""

from __future__ import annotations

import math
import typing

import pytest
import torch
from torch.distributions import Independent

from aebench import DataInfo
from aebench.plugins.manager import load_plugins
from aebench_plugins.models import likelihoods
from aebench_plugins.models.likelihoods import (
    ContinuousBernoulli,
    DiscretizedLogistic,
    min_log_scale,
)
from aebench_plugins.models.schema import LikelihoodName

IMAGE = (1, 4, 4)
CHOICES = [name for name in typing.get_args(LikelihoodName) if name != "auto"]
# the data each explicit choice is meant for
CHOICE_INFO = {
    "bernoulli": DataInfo(IMAGE, "binary"),
    "continuous-bernoulli": DataInfo(IMAGE, "unit"),
    "discretized-logistic": DataInfo(IMAGE, "unit", levels=256),
    "gaussian": DataInfo(IMAGE, "real"),
    "gaussian-learned": DataInfo(IMAGE, "real"),
}
VAES = ["vae", "iwae", "conv-vae"]


def build(name: str, info: DataInfo, **params):
    entry = load_plugins().models.get(name)
    return entry.factory(info, **entry.params.model_validate(params).model_dump())


def on_grid(x: torch.Tensor, levels: int) -> torch.Tensor:
    return (x * (levels - 1)).round() / (levels - 1)


def data_of(info: DataInfo, n: int = 8, seed: int = 0) -> torch.Tensor:
    """Samples of ``info``'s kind: {0, 1}, a grid of ``levels`` values, [0, 1], or reals."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *info.shape, generator=g)
    if info.kind == "binary":
        return x.round()
    if info.kind == "unit":
        return x if info.levels is None else on_grid(x, info.levels)
    return 3 * torch.randn(n, *info.shape, generator=g)


def base_of(model, n: int = 3, seed: int = 0):
    """The per-element distribution p(x|z) of ``model`` at n random codes."""
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    z = torch.randn(n, model.latent_dim, generator=g, dtype=torch.float64).to(dtype)
    likelihood = model.likelihood(z)
    assert isinstance(likelihood, Independent)
    return likelihood.base_dist


# -- every likelihood sums or integrates to one ------------------------------------------------


@pytest.mark.parametrize("choice", CHOICES)
@pytest.mark.parametrize("name", VAES)
def test_every_likelihood_of_every_vae_sums_or_integrates_to_one(name, choice):
    torch.manual_seed(0)
    info = CHOICE_INFO[choice]
    model = build(name, info, likelihood=choice, latent_dim=3, sigma=0.7).double()
    base = base_of(model)
    with torch.no_grad():
        if choice in ("bernoulli", "discretized-logistic"):
            levels = 2 if choice == "bernoulli" else info.levels
            grid = torch.arange(levels, dtype=torch.float64) / (levels - 1)
            points = grid.view(-1, 1, *[1] * len(info.shape))  # (levels, 1, 1, 1, 1)
            total = base.log_prob(points).exp().sum(0)  # one total per element of each sample
        else:
            lo, hi, n = (
                (0.0, 1.0, 20_001) if choice == "continuous-bernoulli" else (-40, 40, 80_001)
            )
            grid = torch.linspace(lo, hi, n, dtype=torch.float64)
            density = base.log_prob(grid.view(-1, 1, *[1] * len(info.shape))).exp()
            total = torch.trapezoid(density, grid, dim=0)
    assert total.shape == (3, *info.shape)
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-4, rtol=0)


LOGITS = [-60.0, -20.0, -5.0, -1.0, -1e-3, -1e-5, 0.0, 1e-5, 1e-3, 0.05, 1.0, 5.0, 15.0, 60.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_continuous_bernoulli_integrates_to_one_at_every_logit(dtype):
    # torch's own ContinuousBernoulli integrates to 0.99 at logit 15 and 0.27 at 60 in float32
    logits = torch.tensor(LOGITS, dtype=dtype)
    dist = likelihoods.continuous_bernoulli(logits)
    assert isinstance(dist, torch.distributions.ContinuousBernoulli)
    grid = torch.linspace(0, 1, 400_001, dtype=torch.float64)
    density = dist.log_prob(grid.to(dtype).unsqueeze(1)).double().exp()
    torch.testing.assert_close(
        torch.trapezoid(density, grid, dim=0),
        torch.ones(len(LOGITS), dtype=torch.float64),
        atol=1e-4,
        rtol=0,
    )


def test_the_continuous_bernoulli_mean_variance_and_cdf_agree_with_its_density():
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    dist = ContinuousBernoulli(logits=logits.float())
    grid = torch.linspace(0, 1, 400_001, dtype=torch.float64)
    density = ContinuousBernoulli(logits=logits).log_prob(grid.unsqueeze(1)).exp()
    mean = torch.trapezoid(density * grid.unsqueeze(1), grid, dim=0)
    variance = torch.trapezoid(density * (grid.unsqueeze(1) - mean) ** 2, grid, dim=0)
    torch.testing.assert_close(dist.mean.double(), mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(dist.variance.double(), variance, atol=1e-5, rtol=0)
    cdf = torch.cumulative_trapezoid(density, grid, dim=0)
    at = torch.tensor([0.1, 0.5, 0.9])
    expected = cdf[(at * 400_000).long() - 1]
    torch.testing.assert_close(dist.cdf(at.unsqueeze(1)).double(), expected, atol=1e-5, rtol=0)
    # samples are drawn through the inverse CDF: the mean of many matches
    torch.manual_seed(0)
    draws = dist.rsample(torch.Size([20_000]))
    assert ((draws >= 0) & (draws <= 1)).all()
    stderr = dist.variance.sqrt() / math.sqrt(len(draws))
    assert ((draws.mean(0) - dist.mean).abs() < 5 * stderr + 1e-6).all()


# -- the discretized logistic ------------------------------------------------------------------

LOCS = torch.tensor([-0.7, 0.0, 0.003, 0.31, 0.5, 0.998, 1.0, 1.6])
LOG_SCALES = torch.tensor([-20.0, -8.0, -4.0, -1.5, 0.0, 2.5])


def grid_params() -> tuple[torch.Tensor, torch.Tensor]:
    loc, log_scale = torch.meshgrid(LOCS, LOG_SCALES, indexing="ij")
    return loc.reshape(-1), log_scale.reshape(-1)


@pytest.mark.parametrize("levels", [2, 3, 17, 33, 256])
def test_the_discretized_logistic_masses_sum_to_one_and_its_mean_is_exact(levels):
    loc, log_scale = grid_params()
    dist = DiscretizedLogistic(loc, log_scale, levels)
    values = dist.enumerate_support()  # (levels, batch)
    assert values.shape == (levels, len(loc))
    probs = dist.log_prob(values).exp()
    torch.testing.assert_close(probs.sum(0), torch.ones(len(loc)), atol=1e-4, rtol=0)
    brute_mean = (values * probs).sum(0)
    torch.testing.assert_close(dist.mean, brute_mean, atol=1e-5, rtol=0)
    brute_variance = ((values - brute_mean) ** 2 * probs).sum(0)
    torch.testing.assert_close(dist.variance, brute_variance, atol=1e-5, rtol=1e-3)


def test_the_discretized_logistic_by_hand():
    loc, log_scale, levels = torch.tensor(0.4), torch.tensor(-2.0), 5
    dist = DiscretizedLogistic(loc, log_scale, levels)
    s, d = math.exp(-2.0), 1 / 8

    def cdf(t: float) -> float:
        return 1 / (1 + math.exp(-(t - 0.4) / s))

    expected = [cdf(d)] + [cdf(k / 4 + d) - cdf(k / 4 - d) for k in (1, 2, 3)] + [1 - cdf(1 - d)]
    got = [dist.log_prob(torch.tensor(k / 4)).exp().item() for k in range(5)]
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-7)
    # two levels: one logistic split at 1/2
    two = DiscretizedLogistic(loc, log_scale, 2)
    assert two.log_prob(torch.tensor(1.0)).exp().item() == pytest.approx(1 - cdf(0.5), rel=1e-5)


def test_the_discretized_logistic_log_prob_is_finite_and_differentiable():
    loc, log_scale = grid_params()
    loc = loc.clone().requires_grad_()
    log_scale = log_scale.clamp(min=-8.0).clone().requires_grad_()  # above the floor
    dist = DiscretizedLogistic(loc, log_scale, 256)
    x = torch.tensor([0.0, 1 / 255, 128 / 255, 254 / 255, 1.0]).unsqueeze(1)  # edges and interior
    log_p = dist.log_prob(x)
    assert log_p.shape == (5, len(loc)) and torch.isfinite(log_p).all()
    assert (log_p <= 0).all()  # a mass function
    log_p.sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(log_scale.grad).all()
    assert (loc.grad != 0).any() and (log_scale.grad != 0).all()
    # the log scale is floored: below it the distribution no longer changes
    floor = min_log_scale(256)
    a = DiscretizedLogistic(torch.tensor(0.5), torch.tensor(floor - 10), 256)
    b = DiscretizedLogistic(torch.tensor(0.5), torch.tensor(floor), 256)
    assert a.log_scale.item() == pytest.approx(floor)
    assert torch.equal(a.log_prob(x), b.log_prob(x))


def test_discretized_logistic_samples_lie_on_the_grid_with_its_masses():
    torch.manual_seed(0)
    dist = DiscretizedLogistic(torch.tensor(0.45), torch.tensor(-1.5), 5)
    draws = dist.sample(torch.Size([200_000]))
    assert dist.support.check(draws).all()
    freq = torch.stack([(draws == k / 4).float().mean() for k in range(5)])
    probs = dist.log_prob(dist.enumerate_support()).exp()
    torch.testing.assert_close(freq, probs, atol=0.005, rtol=0)


def test_the_discretized_logistic_support_is_the_grid():
    dist = DiscretizedLogistic(torch.zeros(3), torch.zeros(3), 256, validate_args=True)
    assert dist.support.is_discrete
    on = torch.tensor([0.0, 17 / 255, 1.0])
    assert dist.support.check(on).all()
    for off in ([0.5 / 255, 0.3, 1 / 3], [-1 / 255, 0.0, 0.0], [1.0, 1.0, 256 / 255]):
        assert not dist.support.check(torch.tensor(off)).all()
        with pytest.raises(ValueError, match="support"):
            dist.log_prob(torch.tensor(off))


# -- the model wires them up -------------------------------------------------------------------


@pytest.mark.parametrize("choice", CHOICES)
@pytest.mark.parametrize("name", VAES)
def test_every_choice_gives_a_finite_loss_and_gradients_everywhere(name, choice):
    torch.manual_seed(0)
    info = CHOICE_INFO[choice]
    model = build(name, info, likelihood=choice, latent_dim=3)
    x = data_of(info, n=5)
    out = model(x)
    assert out.recon.shape == x.shape
    # the reconstruction and decode(z) are the likelihood's mean
    torch.testing.assert_close(out.recon, model.likelihood(out.code).mean)
    torch.testing.assert_close(model.decode(out.code), model.likelihood(out.code).mean)
    if choice != "gaussian" and choice != "gaussian-learned":
        assert ((out.recon >= 0) & (out.recon <= 1)).all()
    loss = model.loss(x, out)
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    loss.mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    if choice == "discretized-logistic":
        assert model.likelihood_name == "discretized-logistic-256"
        last = [p for p in model.decoder.parameters()][-1]  # the output bias: loc and log scale
        half = len(last) // 2
        assert (last.grad[:half] != 0).any() and (last.grad[half:] != 0).any()


def test_the_discretized_logistic_decoder_starts_near_mid_grey():
    torch.manual_seed(0)
    model = build("vae", DataInfo((1, 8, 8), "unit", levels=17), latent_dim=3)
    assert model.likelihood_name == "discretized-logistic-17"
    base = base_of(model, n=16)
    assert (base.loc - 0.5).abs().mean() < 0.2 and base.batch_shape == (16, 1, 8, 8)


def test_a_likelihood_scores_samples_against_many_codes_by_broadcasting():
    # the core scores inputs (B, 1, *shape) against codes (S, latent) in one call -> (B, S)
    torch.manual_seed(0)
    info = DataInfo(IMAGE, "unit", levels=256)
    model = build("vae", info, latent_dim=3)
    z, x = torch.randn(4, 3), data_of(info, n=2)
    together = model.likelihood(z).log_prob(x.unsqueeze(1))
    one_by_one = torch.stack([model.likelihood(z).log_prob(xi.expand(4, *IMAGE)) for xi in x])
    assert together.shape == (2, 4)
    torch.testing.assert_close(together, one_by_one)


# -- what auto picks, and why: the data must lie in the likelihood's support -------------------

KINDS = {
    "binary": DataInfo(IMAGE, "binary"),
    "unit, 256 levels": DataInfo(IMAGE, "unit", levels=256),
    "unit, 17 levels (digits)": DataInfo(IMAGE, "unit", levels=17),
    "unit, continuous": DataInfo(IMAGE, "unit"),
    "real": DataInfo(IMAGE, "real"),
}
AUTO = {
    "binary": "bernoulli",
    "unit, 256 levels": "discretized-logistic-256",
    "unit, 17 levels (digits)": "discretized-logistic-17",
    "unit, continuous": "continuous-bernoulli",
    "real": "gaussian-learned",
}


@pytest.mark.parametrize("name", VAES)
@pytest.mark.parametrize("kind", KINDS)
def test_the_auto_likelihood_has_the_data_of_its_kind_in_its_support(kind, name):
    torch.manual_seed(0)
    info = KINDS[kind]
    model = build(name, info, latent_dim=3)
    assert model.likelihood_name == AUTO[kind]
    x = data_of(info, n=6)
    likelihood = model.likelihood(torch.randn(6, 3))
    assert likelihood.support.check(x).all()
    assert torch.isfinite(likelihood.log_prob(x)).all()  # validated: would raise off support


@pytest.mark.parametrize("binarize", ["none", "static"])
def test_digits_lie_in_the_support_of_their_auto_likelihood(binarize, plugins):
    data = plugins.datasets.get("digits").factory(binarize=binarize)
    model = build("conv-vae", data.info, latent_dim=3)
    expected = "discretized-logistic-17" if binarize == "none" else "bernoulli"
    assert model.likelihood_name == expected
    x = data.test.x
    assert model.likelihood(torch.randn(len(x), 3)).support.check(x).all()


def test_a_bernoulli_rejects_grey_levels_which_is_why_auto_does_not_pick_it():
    info = DataInfo(IMAGE, "unit", levels=256)
    model = build("vae", info, likelihood="bernoulli", latent_dim=3)  # allowed, explicitly
    likelihood = model.likelihood(torch.randn(6, 3))
    grey = data_of(info, n=6)
    assert not likelihood.support.check(grey).any()
    assert likelihood.support.check(grey.round()).all()
    assert torch.isfinite(likelihood.log_prob(grey)).all()  # scored, but not a log-likelihood


def test_the_continuous_bernoulli_and_gaussian_supports():
    unit = build("vae", DataInfo(IMAGE, "unit"), latent_dim=3).likelihood(torch.randn(2, 3))
    assert unit.support.check(torch.rand(2, *IMAGE)).all()
    assert not unit.support.check(torch.full((2, *IMAGE), 1.5)).any()
    real = build("vae", DataInfo(IMAGE, "real"), latent_dim=3).likelihood(torch.randn(2, 3))
    assert real.support.check(torch.full((2, *IMAGE), -7.0)).all()


def test_the_discretized_logistic_of_a_model_rejects_off_grid_values():
    info = DataInfo(IMAGE, "unit", levels=17)
    likelihood = build("vae", info, latent_dim=3).likelihood(torch.randn(2, 3))
    x = data_of(info, n=2)
    assert likelihood.support.check(x).all()
    assert not likelihood.support.check(x + 0.01).any()
    assert not likelihood.support.check(torch.full_like(x, 1 / 255)).any()  # on 256, not 17
    with pytest.raises(ValueError):
        likelihood.log_prob(x + 0.01)


# -- the fused log-probabilities are torch's ------------------------------------------------------


def _bernoulli_cases(dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits of 5 codes x 3 images (saturated ones included), and binary and grey images."""
    g = torch.Generator().manual_seed(0)
    logits = (30 * torch.randn(5, 3, 1, 4, 4, generator=g, dtype=torch.float64)).to(dtype)
    logits[0, 0, 0, 0, :2] = torch.tensor([120.0, -120.0], dtype=dtype)
    binary = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64).round().to(dtype)
    grey = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64).to(dtype)
    return logits, [binary, grey]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_fused_bernoulli_log_prob_and_its_gradient_are_torchs(dtype) -> None:
    logits, values = _bernoulli_cases(dtype)
    for value in values:  # broadcast over the codes, as the estimators and the losses use it
        fused_logits = logits.clone().requires_grad_()
        fused = likelihoods.bernoulli(fused_logits, 3).log_prob(value)
        torch_logits = logits.clone().requires_grad_()
        base = torch.distributions.Bernoulli(logits=torch_logits, validate_args=False)
        reference = Independent(base, 3).log_prob(value.expand_as(logits))
        torch.testing.assert_close(fused, reference, rtol=1e-6, atol=0)
        fused.sum().backward()
        reference.sum().backward()
        torch.testing.assert_close(fused_logits.grad, torch_logits.grad)


def test_the_fused_bernoulli_broadcasts_values_with_more_dimensions_than_its_logits() -> None:
    logits, (binary, grey) = _bernoulli_cases(torch.float64)
    one_code = logits[0]  # (3, 1, 4, 4): scored against 2 x 3 images
    values = torch.stack([binary, grey])
    fused = likelihoods.bernoulli(one_code, 3).log_prob(values)
    base = torch.distributions.Bernoulli(logits=one_code, validate_args=False)
    torch.testing.assert_close(fused, Independent(base, 3).log_prob(values), rtol=1e-6, atol=0)


def test_the_fused_bernoulli_sums_bfloat16_logits_in_float32() -> None:
    logits, (binary, _) = _bernoulli_cases(torch.float32)
    fused = likelihoods.bernoulli(logits.bfloat16(), 3).log_prob(binary)
    reference = likelihoods.bernoulli(logits.bfloat16().float(), 3).log_prob(binary)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, reference, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_fused_gaussian_log_prob_is_torchs(dtype) -> None:
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(5, 3, 2, 4, generator=g, dtype=dtype)
    log_sigma = torch.randn(5, 3, 2, 4, generator=g, dtype=dtype)
    log_sigma[0, 0, 0, 0] = -20.0  # clamped at MIN_LOG_SIGMA, as the base distribution is
    value = 3 * torch.randn(3, 2, 4, generator=g, dtype=dtype)
    fused = likelihoods.gaussian(mean, log_sigma, 2).log_prob(value)
    sigma = log_sigma.clamp(min=likelihoods.MIN_LOG_SIGMA).exp()
    reference = Independent(torch.distributions.Normal(mean, sigma), 2).log_prob(value)
    torch.testing.assert_close(fused, reference, rtol=1e-6, atol=1e-6)
    # a fixed sigma broadcasts
    fixed = likelihoods.gaussian(mean, torch.tensor(0.5, dtype=dtype).log(), 2).log_prob(value)
    expected = Independent(torch.distributions.Normal(mean, 0.5), 2).log_prob(value)
    torch.testing.assert_close(fixed, expected, rtol=1e-6, atol=1e-6)


def test_the_autoencoders_cross_entropy_and_its_gradient_are_torchs() -> None:
    from aebench_plugins.models.ae import reconstruction_loss

    logits, (binary, grey) = _bernoulli_cases(torch.float32)
    logits = logits[0]  # (3, 1, 4, 4): a batch of 3 images
    for x in (binary, grey):
        ours_logits = logits.clone().requires_grad_()
        ours = reconstruction_loss(x, ours_logits, "unit")
        torch_logits = logits.clone().requires_grad_()
        reference = torch.nn.functional.binary_cross_entropy_with_logits(
            torch_logits, x, reduction="none"
        )
        reference = reference.flatten(1).sum(1)
        torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-5)
        ours.sum().backward()
        reference.sum().backward()
        torch.testing.assert_close(ours_logits.grad, torch_logits.grad)


SHAPES = [(), (1,), (3,), (2, 3), (1, 3), (2, 1), (4, 2, 3), (1, 2, 3), (4, 1, 3), (5,)]


@pytest.mark.parametrize("target", SHAPES, ids=str)
def test_broadcasting_to_the_logits_shape_is_torchs(target: tuple[int, ...]) -> None:
    for shape in SHAPES:
        try:
            expected = torch.broadcast_shapes(shape, target) == torch.Size(target)
        except RuntimeError:  # shapes that do not broadcast at all
            expected = False
        assert likelihoods._broadcasts_to(torch.Size(shape), torch.Size(target)) == expected, shape
