"""Latent-space metrics (k-means, silhouette, k-NN, probe) and sparsity, on codes of known shape.

The model is the identity, so the "codes" are exactly the points a test puts in the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from aebench import Data, DataInfo, Metric, MetricContext, ModelOutput, Plugins, Split


class Identity(nn.Module):
    def encode(self, x: Tensor) -> Tensor:
        return x

    def decode(self, z: Tensor) -> Tensor:
        return z

    def forward(self, x: Tensor) -> ModelOutput:
        return ModelOutput(code=x, recon=x)

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return torch.zeros(len(x))


def context_for(train: Split, test: Split, n_classes: int | None = None) -> MetricContext:
    info = DataInfo(shape=tuple(test.x.shape[1:]), kind="real", n_classes=n_classes)
    return MetricContext(
        model=Identity(),
        data=Data(info=info, train=train, test=test),
        settings={},
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )


def blobs(n: int, seed: int, spread: float = 0.3) -> Split:
    """Four well-separated Gaussian blobs in 3-D, labelled by blob."""
    g = torch.Generator().manual_seed(seed)
    centres = 10 * torch.eye(4, 3)
    y = torch.arange(n) % 4
    return Split(centres[y] + spread * torch.randn(n, 3, generator=g), y)


def random_codes(n: int, seed: int) -> Split:
    """Codes that carry no information about the labels."""
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randn(n, 3, generator=g), torch.randint(0, 4, (n,), generator=g))


@pytest.fixture
def metric(plugins: Plugins) -> Callable[[str], Metric]:
    """The metric named ``name``."""
    return lambda name: plugins.metrics.get(name).factory


def test_separable_blobs_score_perfectly(metric) -> None:
    context = context_for(blobs(400, 0), blobs(200, 1), n_classes=4)
    clusters = metric("kmeans")(context)
    assert clusters["kmeans_nmi"] > 0.99
    assert clusters["kmeans_ari"] > 0.99
    assert metric("knn_acc")(context)["knn_acc"] > 0.99
    assert metric("probe_acc")(context)["probe_acc"] > 0.99
    assert metric("silhouette")(context)["silhouette"] > 0.9


def test_random_codes_score_at_chance(metric) -> None:
    context = context_for(random_codes(2000, 0), random_codes(1000, 1), n_classes=4)
    clusters = metric("kmeans")(context)
    assert clusters["kmeans_nmi"] < 0.02
    assert abs(clusters["kmeans_ari"]) < 0.02
    assert abs(metric("knn_acc")(context)["knn_acc"] - 0.25) < 0.05
    assert abs(metric("probe_acc")(context)["probe_acc"] - 0.25) < 0.05
    assert abs(metric("silhouette")(context)["silhouette"]) < 0.05


def test_number_of_clusters_defaults_to_the_distinct_labels(metric) -> None:
    # Without n_classes, k = 4 distinct labels: four blobs are recovered exactly.
    context = context_for(blobs(400, 0), blobs(200, 1), n_classes=None)
    assert metric("kmeans")(context)["kmeans_nmi"] > 0.99


def test_silhouette_matches_a_hand_computation(metric) -> None:
    points = torch.tensor([[0.0], [1.0], [10.0], [12.0], [4.0]])
    labels = torch.tensor([0, 0, 1, 1, 0])
    context = context_for(Split(points, labels), Split(points, labels))

    def silhouette_of(i: int) -> float:
        distances = (points - points[i]).abs().flatten()
        same = [distances[j].item() for j in range(5) if labels[j] == labels[i] and j != i]
        other = [distances[j].item() for j in range(5) if labels[j] != labels[i]]
        a, b = np.mean(same), np.mean(other)
        return (b - a) / max(a, b)

    expected = np.mean([silhouette_of(i) for i in range(5)])
    assert metric("silhouette")(context)["silhouette"] == pytest.approx(expected)


def test_knn_uses_train_codes_for_neighbours(metric) -> None:
    # Train labels are the opposite of the test labels at the same places: a 5-NN fit on train
    # codes must then get every test point wrong.
    train = blobs(400, 0)
    test = blobs(200, 1)
    flipped = Split(train.x, 3 - train.y)
    context = context_for(flipped, test, n_classes=4)
    assert metric("knn_acc")(context)["knn_acc"] < 0.01
    assert metric("probe_acc")(context)["probe_acc"] < 0.01


@pytest.mark.parametrize("name", ["kmeans", "silhouette", "knn_acc", "probe_acc"])
def test_unlabelled_data_gives_nan(name: str, metric) -> None:
    context = context_for(Split(blobs(40, 0).x), Split(blobs(20, 1).x))
    values = metric(name)(context)
    assert values and all(math.isnan(v) for v in values.values())


def test_sparsity_of_known_codes(metric) -> None:
    codes = torch.tensor([[0.0, 0.04, -0.06, 1.0], [-2.0, 0.05, 0.0, 0.5]])
    context = context_for(Split(codes), Split(codes))
    assert metric("code_mean_abs")(context)["code_mean_abs"] == pytest.approx(3.65 / 8)
    # |a| > 0.05: -0.06, 1.0, -2.0, 0.5 (0.05 itself is not above the threshold)
    assert metric("code_frac_active")(context)["code_frac_active"] == pytest.approx(4 / 8)


def test_too_few_test_inputs_give_nan_with_the_reason_not_an_error(metric) -> None:
    context = context_for(blobs(400, 0), blobs(1, 1), n_classes=4)  # one test input, 4 classes
    clusters = metric("kmeans").measure(context)
    assert all(math.isnan(v) for v in clusters.values.values())
    assert clusters.reason == "4 clusters need at least 4 test inputs; there are 1"
    shape = metric("silhouette").measure(context)
    assert math.isnan(shape.values["silhouette"]) and "more inputs than labels" in shape.reason


def test_a_train_split_a_classifier_cannot_fit_gives_nan_with_the_reason(metric) -> None:
    # before: scikit-learn's errors ("Expected n_neighbors <= n_samples_fit", "needs samples of
    # at least 2 classes"), entries in metric_errors instead of reasons
    few = metric("knn_acc").measure(context_for(blobs(3, 0), blobs(20, 1)))
    assert math.isnan(few.values["knn_acc"])
    assert few.reason == "5 neighbours need at least 5 train inputs; there are 3"
    train = blobs(40, 0)
    one_label = Split(train.x, torch.zeros_like(train.y))
    probe = metric("probe_acc").measure(context_for(one_label, blobs(20, 1)))
    assert math.isnan(probe.values["probe_acc"])
    assert probe.reason == "the train split holds one label: a probe has nothing to tell apart"
