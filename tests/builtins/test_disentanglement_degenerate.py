"""Disentanglement scores on data that leaves them without a value: one factor, one code unit, a
factor that takes one value in the points a classifier is fit on. Each is NaN with its reason
(``ScoreUndefined``), never a number that cannot mean what its name says (a FactorVAE score of 1
for noise on one factor) nor a raw error from the classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from aebench import MetricContext
from aebench_plugins.datasets.dsprites import shapes_small
from aebench_plugins.metrics import disentanglement_scores as scores
from aebench_plugins.metrics.disentanglement import DISENTANGLEMENT_METRICS

PROTOCOL = {"batch_size": 8, "train_points": 60, "eval_points": 40}


def _noise(factors: np.ndarray) -> np.ndarray:
    return np.random.default_rng(len(factors)).normal(size=(len(factors), 3))


@pytest.mark.parametrize("score", [scores.factor_vae_score, scores.beta_vae_score])
def test_one_factor_leaves_the_intervening_scores_nothing_to_tell_apart(score) -> None:
    # before: the FactorVAE score of pure noise was 1.0, every vote naming the only factor
    with pytest.raises(scores.ScoreUndefined, match="the data has one factor"):
        score(_noise, (4,), np.random.default_rng(0), **PROTOCOL)


def test_dci_scores_undefined_by_one_factor_or_one_unit() -> None:
    with pytest.raises(scores.ScoreUndefined, match="one factor"):
        scores.dci_disentanglement(np.array([[0.7], [0.3]]))  # 2 units, 1 factor: 0 / 0 before
    with pytest.raises(scores.ScoreUndefined, match="one unit"):
        scores.dci_completeness(np.array([[0.7, 0.3]]))  # 1 unit, 2 factors
    assert math.isfinite(scores.dci_completeness(np.array([[0.7], [0.3]])))
    assert scores.dci_disentanglement(np.array([[0.7, 0.3]])) < 1


@pytest.mark.parametrize("score", ["explicitness", "sap", "gbt_importance"])
def test_a_factor_constant_in_the_train_points_is_no_fit_to_make(score: str) -> None:
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 3, size=(50, 2))
    train_factors = factors.copy()
    train_factors[:, 1] = 2  # factor 1 takes one value among the train points
    codes = factors + rng.normal(scale=0.1, size=factors.shape)
    arguments = (codes, train_factors, codes, factors)
    # before: scikit-learn's "needs samples of at least 2 classes", a metric error
    with pytest.raises(scores.ScoreUndefined, match="factor 1 takes one value in the train"):
        getattr(scores, score)(*arguments, **({"seed": 0} if score == "gbt_importance" else {}))


class OneUnit(nn.Module):
    """A code of one unit: the sum of the image's pixels."""

    def encode(self, x: Tensor) -> Tensor:
        return x.flatten(1).sum(1, keepdim=True)


def test_dci_on_one_code_unit_keeps_what_it_measured() -> None:
    data = shapes_small(n_train=200, n_test=100)
    context = MetricContext(OneUnit(), data, {}, torch.device("cpu"), torch.Generator())
    measured = DISENTANGLEMENT_METRICS["dci"].measure(context, train_points=200, test_points=100)
    assert measured.reason == ""  # the metric applied
    assert math.isnan(measured.values["dci_completeness"])
    assert measured.reasons == {
        "dci_completeness": "the code has one unit: a factor's importance has none to spread over"
    }
    assert math.isfinite(measured.values["dci_disentanglement"])
    assert 0 < measured.values["dci_informativeness"] <= 1
