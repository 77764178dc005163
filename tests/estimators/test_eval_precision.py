"""The opt-in bf16 decoder pass of the likelihood estimators (``[eval] precision = "bf16"``):
it really runs in bfloat16, stays close to fp32, and the row reports how close."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from builders import build_suite, entry

from aebench import Data, DataInfo, MetricContext, Plugins, Split, load_suite
from aebench import likelihood as estimators

INFO = DataInfo(shape=(1, 8, 8), kind="binary")


def vae_and_data(plugins: Plugins, n: int = 12) -> tuple[torch.nn.Module, torch.Tensor]:
    vae = plugins.models.get("vae")
    torch.manual_seed(0)
    model = vae.factory(INFO, **vae.params.model_validate({"hidden": [32]}).model_dump())
    x = torch.rand(n, *INFO.shape, generator=torch.Generator().manual_seed(1)).round()
    return model.eval(), x


def estimate(model, x, precision: str) -> torch.Tensor:
    with torch.no_grad(), estimators.seeded(torch.Generator().manual_seed(2)):
        return estimators.iwae_bound(model, x, 50, precision=precision)


def test_a_bf16_decoder_pass_is_close_to_fp32_but_not_equal(plugins) -> None:
    model, x = vae_and_data(plugins)
    fp32, bf16 = estimate(model, x, "fp32"), estimate(model, x, "bf16")
    assert fp32.dtype == bf16.dtype == torch.float64
    difference = (bf16 - fp32).abs()
    assert difference.max() > 0  # bfloat16 keeps 8 bits of mantissa: it did run
    # a bf16 logit is off by up to 2^-9 of itself: far less than a nat over 64 pixels
    assert difference.max() < 0.5
    with pytest.raises(ValueError, match="precision must be one of"):
        estimate(model, x, "fp8")


def test_the_metric_reports_the_bf16_error_against_fp32_on_the_same_draws(plugins) -> None:
    model, x = vae_and_data(plugins)
    data = Data(INFO, train=Split(x), test=Split(x))

    def context() -> MetricContext:
        generator = torch.Generator().manual_seed(3)
        return MetricContext(model, data, {}, torch.device("cpu"), generator)

    metric = plugins.metrics.get("log_px_iwae").factory
    with torch.no_grad():
        fp32 = metric(context(), samples=50)
        bf16 = metric(context(), samples=50, precision="bf16")
        by_hand = {}
        for precision in ("bf16", "fp32"):
            with estimators.seeded(context().generator):
                by_hand[precision] = estimators.iwae_bound(model, x, 50, precision=precision)
    assert math.isnan(fp32["log_px_iwae_precision_error"])
    expected = (by_hand["bf16"] - by_hand["fp32"]).abs().mean().item()
    assert bf16["log_px_iwae_precision_error"] == pytest.approx(expected, rel=1e-9)
    assert bf16["log_px_iwae_precision_error"] > 0
    assert bf16["log_px_iwae"] == pytest.approx(by_hand["bf16"].mean().item(), rel=1e-9)


def precision_suite(precision: str) -> dict[str, Any]:
    """A VAE on digits, its default metrics evaluated in ``precision``."""
    eval = {"precision": precision}
    return build_suite(entry("vae"), name="precision", metrics=None, eval=eval)


def test_eval_precision_sets_the_iwae_metric_and_a_bad_value_is_refused(
    write_suite, plugins
) -> None:
    suite = load_suite(write_suite(precision_suite("bf16")), plugins)
    assert suite.trials[0].eval["params"]["log_px_iwae"]["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision"):
        load_suite(write_suite(precision_suite("fp8")), plugins)
