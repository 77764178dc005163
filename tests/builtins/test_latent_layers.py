"""A latent hierarchy in the contract (``latent_layers``): validated, counted per layer by the
active-units metrics against a direct computation, read at its first layer by the latent-space
metrics."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, constraints

from aebench import (
    Data,
    DataInfo,
    MetricContext,
    ModelOutput,
    Split,
    latent_layer_slices,
    load_plugins,
)
from aebench.testing import ContractError, check_model
from aebench_plugins.metrics.likelihood import posterior_mean_variance
from aebench_plugins.models.hierarchical import TwoLayerVAE

THRESHOLD = 0.01  # Burda et al.'s: a unit is active when Var_x(E_q[z_d|x]) > 0.01
NO_SAMPLES = torch.Size()
METRICS = load_plugins().metrics  # loaded once: the tests here only call metrics


# -- the declaration ---------------------------------------------------------------------------


class Declares(nn.Module):
    def __init__(self, layers: object) -> None:
        super().__init__()
        self.latent_layers = layers


def test_declared_layers_slice_the_code_in_order() -> None:
    slices = latent_layer_slices(Declares({"z1": 3, "z2": 2}), 5)
    assert list(slices) == ["z1", "z2"]
    code = torch.arange(5.0)
    assert code[slices["z1"]].tolist() == [0.0, 1.0, 2.0]
    assert code[slices["z2"]].tolist() == [3.0, 4.0]


def test_a_model_without_a_declaration_has_one_layer_of_the_whole_code() -> None:
    assert latent_layer_slices(nn.Linear(2, 2), 7) == {"z": slice(0, 7)}


@pytest.mark.parametrize(
    "layers, message",
    [
        ({"z1": 3, "z2": 2}, "the layers add up to 5 numbers, but the code has 6"),
        ({"z1": 6, "z2": 0}, "layer 'z2' has size 0"),
        ({"z1": 5.0, "z2": 1}, "layer 'z1' has size 5.0"),
        ({"z1": True, "z2": 5}, "layer 'z1' has size True"),
        ({}, "expected a mapping of layer names to sizes"),
        ([("z1", 6)], "expected a mapping of layer names to sizes"),
    ],
)
def test_a_wrong_declaration_is_one_line_naming_the_model(layers, message) -> None:
    with pytest.raises(ValueError, match=message) as error:
        latent_layer_slices(Declares(layers), 6)
    text = str(error.value)
    assert text.startswith("Declares.latent_layers = ") and "\n" not in text


class MisdeclaredVAE(nn.Module):
    """A linear autoencoder that declares layers adding up to more than its code."""

    latent_layers = {"z1": 2, "z2": 2}

    def __init__(self, info: DataInfo, latent_dim: int = 3) -> None:
        super().__init__()
        self.encoder = nn.Linear(info.shape[0], latent_dim)
        self.decoder = nn.Linear(latent_dim, info.shape[0])

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return (out.recon - x).pow(2).sum(1)


def test_the_kit_rejects_layers_that_do_not_add_up_to_the_code() -> None:
    with pytest.raises(ContractError, match="add up to 4 numbers, but the code has 3"):
        check_model(MisdeclaredVAE, shapes=[(6,)], kinds=["real"])


def test_the_two_layer_vae_declares_z1_then_z2() -> None:
    info = DataInfo(shape=(1, 8, 8), kind="binary")
    model = TwoLayerVAE(info, latent_dim=5, top_dim=2, hidden=[8], top_hidden=[4])
    assert model.latent_layers == {"z1": 3, "z2": 2}
    x = torch.bernoulli(torch.full((4, 1, 8, 8), 0.5))
    with torch.no_grad():
        z1 = latent_layer_slices(model, 5)["z1"]
        mu1, _ = model._posterior_params(x)  # q(z1|x)'s mean is the code's first layer
        torch.testing.assert_close(model.encode(x)[:, z1], mu1)


# -- active units per layer, against the posterior means written out --------------------------


class MeanHidden(Distribution):
    """N(loc, scale^2) per dimension, whose mean is not offered: the metric must sample it."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, scale: float) -> None:
        self.base = Independent(Normal(loc, torch.full_like(loc, scale)), 1)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def rsample(self, sample_shape: torch.Size = NO_SAMPLES) -> Tensor:
        return self.base.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.base.log_prob(value)


class KnownMeans(nn.Module):
    """A latent-variable model of 2-D inputs whose posterior mean is a fixed function of x:
    E_q[z|x] = x @ MIX (5 dimensions: z1 the first 3, z2 the last 2), std ``scale`` around it."""

    # Var_x of each mean for x ~ N(0, I): the squared norms of MIX's columns:
    # z1: 0.25, 0.18, 0.0009; z2: 0.04, 0.0016. Two units of z1 and one of z2 are active.
    MIX = torch.tensor([[0.5, 0.3, 0.03, 0.0, 0.04], [0.0, 0.3, 0.0, 0.2, 0.0]])

    def __init__(self, scale: float = 1.0, hide_mean: bool = True, layered: bool = True) -> None:
        super().__init__()
        self.scale, self.hide_mean = scale, hide_mean
        if layered:
            self.latent_layers = {"z1": 3, "z2": 2}
        self.register_buffer("_origin", torch.zeros(5))

    def means(self, x: Tensor) -> Tensor:
        return x @ self.MIX

    def posterior(self, x: Tensor) -> Distribution:
        if self.hide_mean:
            return MeanHidden(self.means(x), self.scale)
        return Independent(Normal(self.means(x), torch.full((len(x), 5), self.scale)), 1)

    def prior(self) -> Distribution:
        return Independent(Normal(self._origin, torch.ones(5)), 1)

    def likelihood(self, z: Tensor) -> Distribution:
        return Independent(Normal(z[..., :2], torch.ones_like(z[..., :2])), 1)

    def encode(self, x: Tensor) -> Tensor:
        return self.means(x)

    def decode(self, z: Tensor) -> Tensor:
        return z[..., :2]

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return (out.recon - x).pow(2).sum(1)


def context_of(model: nn.Module, x: Tensor, y: Tensor | None = None) -> MetricContext:
    data = Data(DataInfo(shape=tuple(x.shape[1:]), kind="real"), Split(x, y), Split(x, y))
    return MetricContext(
        model=model,
        data=data,
        settings={"metrics": None, "params": {}},
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )


def inputs(n: int = 400) -> Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(3))


def direct_variances(model: KnownMeans, x: Tensor) -> Tensor:
    """Var_x(E_q[z_d|x]) from the posterior means written out: (1/N) sum (m - mean m)^2."""
    means = model.means(x).double()
    return ((means - means.mean(0)) ** 2).mean(0)


def test_a_closed_form_mean_gives_the_exact_variance() -> None:
    model, x = KnownMeans(hide_mean=False), inputs()
    with torch.no_grad():
        variance = posterior_mean_variance(model, x, samples=10)
    torch.testing.assert_close(variance, direct_variances(model, x))


def test_sampled_means_give_the_variance_without_their_monte_carlo_error() -> None:
    # With std 1 around each mean and 100 draws, each sampled mean is off by 0.1 (sd): the naive
    # variance over inputs is about 0.01 too large, as large as the threshold itself.
    model, x = KnownMeans(scale=1.0), inputs()
    torch.manual_seed(0)
    with torch.no_grad():
        variance = posterior_mean_variance(model, x, samples=100)
        torch.manual_seed(0)
        naive = model.posterior(x).sample((100,)).mean(0).double().var(0, unbiased=False)
    # Where a mean varies a lot, its draws' error also moves the estimate by chance (not by bias:
    # 2 sqrt(Var m * 0.01 / N) = 0.005 for Var m = 0.25); near the threshold it does not.
    small = direct_variances(model, x) < THRESHOLD
    true = direct_variances(model, x)[small]
    assert (variance[small] - true).abs().max() < 0.003
    assert (naive[small] - true).min() > 0.006  # the correction is what brings it there


def active_units_of(model: nn.Module, x: Tensor, **params) -> dict[str, float]:
    metrics = METRICS
    context = context_of(model, x)
    with torch.no_grad():
        total = metrics.get("active_units").factory(context, **params)
        by_layer = metrics.get("active_units_by_layer").factory(context, **params)
    return total | by_layer


@pytest.mark.parametrize("hide_mean", [False, True], ids=["closed-form", "sampled"])
def test_active_units_per_layer_match_a_direct_computation(hide_mean) -> None:
    model, x = KnownMeans(hide_mean=hide_mean), inputs()
    active = direct_variances(model, x) > THRESHOLD
    result = active_units_of(model, x)
    assert result["active_units_layer1"] == float(active[:3].sum()) == 2.0
    assert result["active_units_layer2"] == float(active[3:].sum()) == 1.0
    assert result["active_units"] == float(active.sum()) == 3.0


def test_a_model_of_one_layer_has_no_per_layer_count_and_says_why() -> None:
    model, x = KnownMeans(hide_mean=False, layered=False), inputs()
    measured = METRICS.get("active_units_by_layer").factory.measure(context_of(model, x))
    assert all(v != v for v in measured.values.values())  # NaN
    assert "one latent layer" in measured.reason


def test_the_two_layer_vaes_layers_add_up_to_its_active_units() -> None:
    info = DataInfo(shape=(1, 8, 8), kind="binary")
    torch.manual_seed(0)
    model = TwoLayerVAE(info, latent_dim=6, top_dim=2, hidden=[16], top_hidden=[8]).eval()
    x = torch.bernoulli(torch.full((200, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    result = active_units_of(model, x, samples=20)
    assert 0 <= result["active_units_layer1"] <= 4 and 0 <= result["active_units_layer2"] <= 2
    assert result["active_units"] == result["active_units_layer1"] + result["active_units_layer2"]


# -- the latent-space metrics read the first layer ---------------------------------------------


class LabelsInZ1(KnownMeans):
    """z1 is the label (times 3), z2 is loud noise that hides it from a k-NN of the whole code."""

    def __init__(self, labels: Tensor, layered: bool) -> None:
        super().__init__(hide_mean=False, layered=layered)
        self.labels = labels

    def encode(self, x: Tensor) -> Tensor:
        noise = 50 * torch.randn(len(x), 2, generator=torch.Generator().manual_seed(len(x)))
        z1 = 3.0 * self.labels[: len(x), None].float().expand(-1, 3)
        return torch.cat([z1, noise], dim=1)


def test_the_latent_metrics_read_z1_of_a_hierarchy() -> None:
    y = torch.arange(200) % 4
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    knn = METRICS.get("knn_acc").factory
    with torch.no_grad():
        z1_only = knn(context_of(LabelsInZ1(y, layered=True), x, y))["knn_acc"]
        whole = knn(context_of(LabelsInZ1(y, layered=False), x, y))["knn_acc"]
    assert z1_only == 1.0  # the labels, exactly
    assert whole < 0.6  # the noise of z2 drowns them: a whole-code metric would have shown it
