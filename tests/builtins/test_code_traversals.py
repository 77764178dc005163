"""Traversals of a test input's code: one row per latent dimension shown, each sweeping that
dimension over the prior's ±3σ (models with a prior) or the codes' observed range (others),
drawn as a PNG and shown in the report."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import build_suite, entry
from torch import Tensor, nn

import aebench
from aebench import DataInfo, ModelOutput
from aebench.observers.trial_figures import (
    ARRAYS,
    CODE_TRAVERSAL_PNG,
    CODE_TRAVERSAL_STEPS,
    N_CODE_TRAVERSED,
    PRIOR_SWEEP,
    capture,
    render_trial,
)
from aebench.results.trials import trial_folder
from aebench.testing import _metric_data, _TinyGaussianVAE
from aebench.views.drawing import code_traversal_rows, read_arrays
from aebench.views.figure_blocks import TRIAL_CAPTIONS
from aebench.views.report import REPORT_HTML, REPORT_MD, build_report

SCALES = (3.0, 2.0, 1.0)  # the code's dimensions, most variable first


class ThreeCodes(nn.Module):
    """A deterministic autoencoder of 4x4 images: the code is the first three pixels scaled by
    ``SCALES``; the decoder ignores the second dimension (it is inactive)."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = nn.Linear(3, 16)
        with torch.no_grad():
            self.decoder.weight[:, 1] = 0.0

    def encode(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, :3] * torch.tensor(SCALES)

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z)).view(-1, 1, 4, 4)

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return (out.recon - x).pow(2).flatten(1).sum(1)


def four_by_four(n: int = 50) -> aebench.Data:
    x = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    info = DataInfo((1, 4, 4), "unit")
    return aebench.Data(info, aebench.Split(x), aebench.Split(x))


def test_each_dimension_is_swept_around_the_input_code_over_its_observed_range() -> None:
    torch.manual_seed(0)
    model, data = ThreeCodes().eval(), four_by_four()
    arrays = capture(model, data, {}, seed=0)
    grid = arrays["code_traversal"]
    assert grid.shape == (3, CODE_TRAVERSAL_STEPS, 1, 4, 4)  # one row per dimension
    assert list(arrays["code_traversal_dims"]) == [0, 1, 2]  # most variable first
    codes = model.encode(data.test.x)
    code = model.encode(data.test.x[:1])[0]
    for row, dim in enumerate(arrays["code_traversal_dims"]):
        values = arrays["code_traversal_values"][row]
        low, high = codes[:, dim].min().item(), codes[:, dim].max().item()
        np.testing.assert_allclose(values, np.linspace(low, high, CODE_TRAVERSAL_STEPS), rtol=1e-6)
        for step, value in enumerate(values):
            z = code.clone()
            z[dim] = float(value)
            with torch.no_grad():
                expected = model.decode(z[None])[0].numpy()
            np.testing.assert_allclose(grid[row, step], expected, rtol=1e-5)
    # the decoded images change along an active dimension, and not along the inactive one
    spread = np.ptp(grid, axis=1).max(axis=(1, 2, 3))
    assert spread[0] > 0.01 and spread[2] > 0.01
    assert spread[1] == 0.0
    assert str(arrays["code_traversal_range"]) == "its range on the test inputs"


def test_a_latent_variable_model_is_swept_over_its_prior() -> None:
    data = _metric_data(labelled=False)
    torch.manual_seed(0)
    arrays = capture(_TinyGaussianVAE(data.info, latent_dim=2).eval(), data, {}, seed=0)
    assert arrays["code_traversal"].shape[0] == 2
    expected = np.linspace(-PRIOR_SWEEP, PRIOR_SWEEP, CODE_TRAVERSAL_STEPS)  # N(0, I)
    for values in arrays["code_traversal_values"]:
        np.testing.assert_allclose(values, expected, rtol=1e-6)


class ThreeCodesWithAPrior(ThreeCodes):
    """The same deterministic code, with a density of its codes (as an adversarial autoencoder
    or an ex-post fit has): N((1, 0, -1), diag(4, 1, 0.25))."""

    def prior(self) -> torch.distributions.Distribution:
        loc, scale = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([2.0, 1.0, 0.5])
        return torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)


def test_a_deterministic_model_with_a_prior_is_swept_over_that_prior() -> None:
    torch.manual_seed(0)
    arrays = capture(ThreeCodesWithAPrior().eval(), four_by_four(), {}, seed=0)
    low_high = arrays["code_traversal_values"][:, [0, -1]]
    np.testing.assert_allclose(low_high, [[-5.0, 7.0], [-3.0, 3.0], [-2.5, 0.5]], rtol=1e-6)
    assert str(arrays["code_traversal_range"]) == f"the prior's mean ± {PRIOR_SWEEP:g}σ"


class ThreeCodesWithAFlowPrior(ThreeCodes):
    """A density of its codes with no closed-form moments (a flow's): N(0, I) shifted by
    (1, 0, -1) and scaled by (2, 1, 0.5) through a transform; its moments are estimated."""

    def prior(self) -> torch.distributions.Distribution:
        base = torch.distributions.Independent(
            torch.distributions.Normal(torch.zeros(3), torch.ones(3)), 1
        )
        shift = torch.distributions.AffineTransform(
            torch.tensor([1.0, 0.0, -1.0]), torch.tensor([2.0, 1.0, 0.5]), event_dim=1
        )
        return torch.distributions.TransformedDistribution(base, [shift])


def test_a_prior_without_closed_form_moments_is_sampled_without_touching_the_streams(
    monkeypatch,
) -> None:
    def every_device(seed: int) -> None:  # it seeds every GPU too, unrestored
        raise AssertionError("torch.manual_seed seeds every device")

    model, data = ThreeCodesWithAFlowPrior().eval(), four_by_four()
    torch.manual_seed(5)
    expected_next = torch.rand(4)
    torch.manual_seed(5)
    with monkeypatch.context() as patched:
        patched.setattr(torch, "manual_seed", every_device)
        arrays = capture(model, data, {}, seed=0)
        again = capture(model, data, {}, seed=0)
    assert torch.equal(torch.rand(4), expected_next)  # the global stream as before
    low_high = arrays["code_traversal_values"][:, [0, -1]]
    np.testing.assert_array_equal(low_high, again["code_traversal_values"][:, [0, -1]])
    # 1,000 draws: the mean within 0.2 and the standard deviation within 10% (about 4 sigma)
    mean, std = low_high.mean(axis=1), (low_high[:, 1] - low_high[:, 0]) / (2 * PRIOR_SWEEP)
    np.testing.assert_allclose(mean, [1.0, 0.0, -1.0], atol=0.2)
    np.testing.assert_allclose(std, [2.0, 1.0, 0.5], rtol=0.1)


def test_at_most_the_most_active_dimensions_are_shown() -> None:
    data = _metric_data(labelled=False)
    torch.manual_seed(0)
    latent = N_CODE_TRAVERSED + 4
    model = _TinyGaussianVAE(data.info, latent_dim=latent).eval()
    arrays = capture(model, data, {}, seed=0)
    dims = arrays["code_traversal_dims"]
    assert len(dims) == N_CODE_TRAVERSED == len(arrays["code_traversal"])
    with torch.no_grad():
        variances = model.encode(data.test.x).var(0).numpy()
    assert list(dims) == list(np.argsort(-variances, kind="stable")[:N_CODE_TRAVERSED])
    rows = code_traversal_rows(arrays)
    assert rows[0][0] == "test input" and len(rows) == 1 + N_CODE_TRAVERSED
    assert rows[1][0].startswith(f"z{dims[0] + 1}: ")


def test_vectors_have_no_traversal() -> None:
    x = torch.rand(20, 5)
    data = aebench.Data(DataInfo((5,), "unit"), aebench.Split(x), aebench.Split(x))
    model = nn.Sequential()  # identity: encode and decode are the same map
    model.encode = model.decode = lambda t: t  # type: ignore[method-assign]
    assert "code_traversal" not in capture(model, data, {}, seed=0)


def test_the_traversal_is_drawn_from_the_saved_arrays(tmp_path: Path) -> None:
    torch.manual_seed(0)
    arrays = capture(ThreeCodes().eval(), four_by_four(), {}, seed=0)
    np.savez(tmp_path / ARRAYS, **arrays)
    assert tmp_path / CODE_TRAVERSAL_PNG in render_trial(tmp_path, "a title")
    assert (tmp_path / CODE_TRAVERSAL_PNG).read_bytes().startswith(b"\x89PNG")
    saved = read_arrays(tmp_path / ARRAYS)
    assert str(saved["code_traversal_range"]) == "its range on the test inputs"


@pytest.mark.slow
def test_the_report_shows_the_traversal_of_a_plain_autoencoder(tmp_path: Path) -> None:
    suite = build_suite(
        entry("ae", hidden=[16], latent_dim=3), name="traversed", epochs=1, batch_size=256
    )
    run = aebench.run_suite(suite, output=tmp_path / "out")
    (row,) = run.rows
    png = trial_folder(run.output, row["trial_id"]) / CODE_TRAVERSAL_PNG
    assert png.is_file()
    build_report(run.output)
    markdown = (run.output / REPORT_MD).read_text()
    assert f"trials/{row['trial_id']}/{CODE_TRAVERSAL_PNG}" in markdown
    page = (run.output / REPORT_HTML).read_text()
    shown = f'<img src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}"'
    assert shown in page  # the very PNG, embedded
    assert f"<figcaption>{html.escape(TRIAL_CAPTIONS[CODE_TRAVERSAL_PNG])}</figcaption>" in page
