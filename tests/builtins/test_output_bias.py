"""The two settings Burda et al. 2015's networks need: tanh hidden layers (``activation``) and a
Bernoulli decoder whose output bias starts at logit(mean training pixel) (``output_bias``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import build_suite, entry
from torch import nn

import aebench
from aebench import DataInfo
from aebench_plugins.models.hierarchical import TwoLayerIWAE, TwoLayerVAE
from aebench_plugins.models.iwae import IWAE
from aebench_plugins.models.vae import VAE

BINARY = DataInfo(shape=(1, 4, 4), kind="binary", binarize="dynamic")


def layers(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(
    "build",
    [
        lambda **kw: VAE(BINARY, 3, [8, 8], **kw),
        lambda **kw: IWAE(BINARY, 3, [8, 8], k=2, **kw),
        lambda **kw: TwoLayerVAE(BINARY, 4, 2, [8, 8], [6], **kw),
        lambda **kw: TwoLayerIWAE(BINARY, 4, 2, [8, 8], [6], k=2, **kw),
    ],
)
def test_tanh_replaces_every_hidden_relu(build) -> None:
    relu, tanh = build(), build(activation="tanh")

    assert layers(tanh, nn.ReLU) == 0
    assert layers(tanh, nn.Tanh) == layers(relu, nn.ReLU) > 0


@pytest.mark.parametrize(
    "build",
    [
        lambda **kw: VAE(BINARY, 3, [8], **kw),
        lambda **kw: IWAE(BINARY, 3, [8], k=2, **kw),
        lambda **kw: TwoLayerVAE(BINARY, 4, 2, [8], [6], **kw),
        lambda **kw: TwoLayerIWAE(BINARY, 4, 2, [8], [6], k=2, **kw),
    ],
)
def test_the_output_bias_starts_at_the_logit_of_the_mean_pixel(build) -> None:
    x = torch.rand(50, *BINARY.shape)
    x[:, 0, 0, 0] = 0.0  # a pixel that is always off: its logit is clipped, not -inf
    model = build(output_bias="data-mean")

    model.fit_before_training(x)

    mean = np.clip(x.double().mean(0).flatten().numpy(), 1e-3, 1 - 1e-3)
    expected = np.log(mean) - np.log1p(-mean)
    bias = model.decoder.net[-1].bias.detach().double().numpy()
    np.testing.assert_allclose(bias, expected, rtol=1e-5, atol=1e-6)  # float32 logits
    # With a zero code the decoder's last layer gives its bias: p(x|z) starts at the data's mean.
    assert bias[0] == pytest.approx(np.log(1e-3 / (1 - 1e-3)), rel=1e-5)


def test_the_default_output_bias_is_left_as_torch_initialises_it() -> None:
    model = VAE(BINARY, 3, [8])
    before = model.decoder.net[-1].bias.detach().clone()

    model.fit_before_training(torch.rand(10, *BINARY.shape))

    assert torch.equal(model.decoder.net[-1].bias, before)


def test_a_data_mean_bias_needs_bernoulli_logits() -> None:
    real = DataInfo(shape=(4,), kind="real")
    with pytest.raises(ValueError, match="output_bias = 'data-mean'.*'gaussian-learned'"):
        VAE(real, 2, [8], output_bias="data-mean")


def test_the_runner_sets_the_bias_from_the_training_split_before_training(tmp_path) -> None:
    # A learning rate of 1e-30 leaves the weights where they started, to the last bit or so.
    vae = entry("vae", latent_dim=2, hidden=[4], likelihood="bernoulli", output_bias="data-mean")
    suite = build_suite(vae, name="bias", epochs=1, batch_size=256, train={"lr": 1e-30}, metrics=[])
    run = aebench.run_suite(suite, output=tmp_path / "out")
    [row] = run.rows
    kept = aebench.load_trial(tmp_path / "out", row["trial_id"])

    mean = kept.data.train.x.double().mean(0).flatten().clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(
        kept.model.decoder.net[-1].bias.double(), torch.logit(mean), rtol=1e-5, atol=1e-5
    )
