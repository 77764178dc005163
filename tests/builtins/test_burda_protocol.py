"""The parts of Burda et al. 2015's protocol that aebench offers as options: Glorot-uniform
initial weights for the MLP families (``init = "glorot"``), active units counted on binarised
inputs (``[eval.active_units] binarize = true``), and the suites that ask for them."""

from __future__ import annotations

import math
from pathlib import Path

import pydantic
import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from aebench import Data, DataInfo, MetricContext, NotApplicable, Split, load_plugins
from aebench.run.checkpoint import restore_checkpoint
from aebench.run.sections import AUTO_COMPILE_STEPS, TrainSection
from aebench.run.suite import load_suite
from aebench_plugins.metrics.likelihood import active_units

PLUGINS = load_plugins()
MNIST = DataInfo(shape=(1, 28, 28), kind="binary", n_classes=10)
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
BURDA_1LAYER = {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh"}
BURDA_2LAYER = {**BURDA_1LAYER, "latent_dim": 150, "top_dim": 50, "top_hidden": [100, 100]}


def build(name: str, **params: object) -> nn.Module:
    entry = PLUGINS.models.get(name)
    torch.manual_seed(0)
    return entry.factory(MNIST, **entry.params.model_validate(params).model_dump())


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("vae", BURDA_1LAYER),
        ("iwae", BURDA_1LAYER),
        ("vae-2layer", BURDA_2LAYER),
        ("iwae-2layer", BURDA_2LAYER),
    ],
)
def test_glorot_init_gives_every_linear_glorot_uniform_weights_and_zero_biases(
    name: str, params: dict[str, object]
) -> None:
    layers = linears(build(name, init="glorot", **params))
    assert len(layers) >= 6  # encoder and decoder (and the 2-layer heads) all counted
    for layer in layers:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.detach()
        assert w.abs().max() <= bound
        # uniform on +-bound: std bound / sqrt(3); >= 2,000 weights, so within 5% (about 10 sd)
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert w.abs().max() > 0.97 * bound  # reaches the edges: not a narrower distribution
        assert torch.count_nonzero(layer.bias) == 0


def test_glorot_is_opt_in_the_default_stays_torchs() -> None:
    # Without it the weights are torch's, narrower than Glorot's, with non-zero biases.
    default, glorot = build("vae", **BURDA_1LAYER), build("vae", init="glorot", **BURDA_1LAYER)
    for layer, other in zip(linears(default), linears(glorot), strict=True):
        fan_out, fan_in = layer.weight.shape
        assert layer.weight.abs().max() <= 1 / math.sqrt(fan_in)
        assert torch.count_nonzero(layer.bias) > 0
        assert other.weight.abs().max() > 1.05 / math.sqrt(fan_in)  # 1.1x to 2.2x wider here


class PixelCode(nn.Module):
    """q(z|x) = N(2 x_{1..4}, 1): the posterior mean is the first four pixels, doubled."""

    def posterior(self, x: Tensor) -> Distribution:
        mean = 2 * x.flatten(1)[:, :4]
        return Independent(Normal(mean, torch.ones_like(mean)), 1)


def context_of(x: Tensor, kind: str) -> MetricContext:
    data = Data(DataInfo(shape=tuple(x.shape[1:]), kind=kind), Split(x), Split(x))  # type: ignore[arg-type]
    return MetricContext(
        model=PixelCode(),
        data=data,
        settings={"metrics": None, "params": {}},
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )


def grey_images(n: int = 500) -> Tensor:
    """Grey levels near 0.5 (+-0.02): their posterior means hardly vary; binary draws of them do."""
    noise = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    return 0.48 + 0.04 * noise


def count(x: Tensor, kind: str = "unit", **params: object) -> float:
    # the metric itself: the registry's wrapper would give a model this partial NaN
    with torch.no_grad():
        return active_units(context_of(x, kind), split="train", inputs=500, **params)[
            "active_units"
        ]


def test_active_units_on_binarised_inputs_count_what_grey_levels_hide() -> None:
    x = grey_images()
    # grey: Var(2 x) = 4 * 0.04^2 / 12 = 5e-4 < 0.01; binarised: 4 * 0.25 = 1 > 0.01
    assert count(x) == 0
    assert count(x, binarize=True) == 4


def test_binarised_active_units_are_seeded() -> None:
    # half-active units: Var = 4 p (1 - p) straddles 0.01 for p near 0.0025, so the draw decides;
    # the same generator seed gives the same draw, hence the same count
    x = torch.full((500, 1, 4, 4), 0.0025)
    assert count(x, binarize=True) == count(x, binarize=True)


def test_binarising_real_valued_data_is_not_applicable() -> None:
    with pytest.raises(NotApplicable, match="needs data in \\[0, 1\\]"):
        count(torch.randn(500, 1, 4, 4), kind="real", binarize=True)


@pytest.mark.parametrize("suite", ["burda2015.toml", "burda2015-1layer.toml"])
def test_burda_suites_ask_for_the_papers_protocol(suite: str) -> None:
    loaded = load_suite(BENCHMARKS / suite, PLUGINS)
    assert loaded.trials
    for trial in loaded.trials:
        assert trial.model.params["init"] == "glorot"
    settings = loaded.trials[0].eval["params"]
    assert settings["active_units"]["binarize"] is True
    # "auto", kept as None: the results table's train.compile column stays boolean (pyarrow
    # cannot write a column of True, False and "auto")
    assert loaded.trials[0].train["compile"] is None
    assert TrainSection.model_validate(loaded.trials[0].train).compiles(59_600)


@pytest.mark.parametrize(
    ("compile_", "epochs", "expected"),
    [
        (False, 3280, False),
        (True, 1, True),
        ("auto", 3280, True),  # the full protocol: 9.8 million steps of 20 of 59,600 images
        ("auto", 4, False),  # the short one's 11,920 steps do not repay compiling
        ("auto", 67, False),  # 199,660 steps: just short of AUTO_COMPILE_STEPS
        ("auto", 68, True),  # 202,640
    ],
)
def test_compile_auto_compiles_the_trials_long_enough_to_repay_it(
    compile_: bool | str, epochs: int, expected: bool
) -> None:
    assert AUTO_COMPILE_STEPS == 200_000
    settings = TrainSection(compile=compile_, epochs=epochs, batch_size=20)
    assert settings.compiles(59_600) is expected


def test_compile_takes_true_false_or_auto_only() -> None:
    assert TrainSection(compile="auto").compile == "auto"
    with pytest.raises(pydantic.ValidationError, match="compile"):
        TrainSection(compile="sometimes")


def test_a_checkpoint_from_another_kind_of_device_resumes_with_a_seeded_stream() -> None:
    # A CUDA generator's state is 16 bytes, a CPU one's 5,056: restoring one into the other used
    # to raise, so a checkpoint written on a GPU could not resume on a CPU, nor the reverse.
    model = build("vae", **BURDA_1LAYER)
    optimizer = torch.optim.Adam(model.parameters())
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": torch.zeros(16, dtype=torch.uint8),  # another kind of device's
        "torch_rng": torch.get_rng_state(),
        "epoch": 5,
    }
    generator = torch.Generator().manual_seed(7)
    restore_checkpoint(state, model, optimizer, generator, torch.device("cpu"))
    expected = torch.Generator().manual_seed(7 + 5)
    assert torch.equal(generator.get_state(), expected.get_state())
