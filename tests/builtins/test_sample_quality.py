"""Sample quality: the Fréchet distance, k-NN precision and recall, the Inception-Score analogue,
the feature classifier aebench trains and caches, and the metrics on models with and without a
prior. Every statistic is checked against an independent computation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from builders import build_suite, entry
from torch import Tensor, nn
from torch.distributions import Distribution, OneHotCategorical

import aebench
from aebench import Data, DataInfo, MetricContext, ModelOutput, NotApplicable, Split, paths
from aebench.contract.metric import Measurement
from aebench.plugins.manager import Plugins
from aebench_plugins.datasets.digits import digits
from aebench_plugins.metrics import feature_extractor as extractors
from aebench_plugins.metrics.feature_extractor import ClassifierSettings, feature_extractor
from aebench_plugins.metrics.sample_quality import (
    fid_of,
    frechet_distance,
    inception_score,
    precision_recall,
)

QUICK = ClassifierSettings(steps=100)  # 97% on digits in about a second


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch) -> None:
    """These tests watch the cache fill: a folder of their own, not the one the others share."""
    monkeypatch.setenv("AEBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def digits_data() -> Data:
    return digits()


@pytest.fixture(scope="module")
def digits_extractor(digits_data: Data, tmp_path_factory) -> extractors.FeatureExtractor:
    network, test_acc = extractors.train_classifier(digits_data, QUICK)
    return extractors.FeatureExtractor(network, test_acc, "")


def random_covariance(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


# --- the Fréchet distance ------------------------------------------------------------------------


def test_frechet_distance_agrees_with_a_general_matrix_square_root() -> None:
    rng = np.random.default_rng(0)
    for d in (1, 3, 8):
        m1, m2 = rng.normal(size=d), rng.normal(size=d)
        c1, c2 = random_covariance(rng, d), random_covariance(rng, d)
        # the textbook route: Tr sqrtm(C1 C2), a non-symmetric product's principal square root
        cross = np.trace(scipy.linalg.sqrtm(c1 @ c2)).real
        expected = np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * cross
        assert frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_in_closed_form_for_diagonal_gaussians() -> None:
    # W2² of N(m1, diag s1²) and N(m2, diag s2²) = ||m1 - m2||² + ||s1 - s2||²
    m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    expected = 0.25 + 4.0 + (4.0 + 1.0 + 0.0)
    assert frechet_distance(m1, np.diag(s1**2), m2, np.diag(s2**2)) == pytest.approx(expected)
    assert frechet_distance(m1, np.diag(s1**2), m1, np.diag(s1**2)) == pytest.approx(0, abs=1e-12)


def test_fid_of_samples_estimates_the_distance_between_their_gaussians() -> None:
    rng = np.random.default_rng(1)
    c1, c2 = random_covariance(rng, 3), random_covariance(rng, 3)
    m1, m2 = np.zeros(3), np.array([1.0, -1.0, 0.5])
    a = rng.multivariate_normal(m1, c1, size=200_000)
    b = rng.multivariate_normal(m2, c2, size=200_000)
    exact = frechet_distance(m1, c1, m2, c2)
    assert fid_of(a, b) == pytest.approx(exact, rel=0.02)
    assert fid_of(a, a) == pytest.approx(0, abs=1e-9)
    with pytest.raises(NotApplicable, match="at least 2 inputs"):
        fid_of(a[:1], b)


# --- precision and recall ------------------------------------------------------------------------


def brute_force_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al.'s definition written out with explicit distance matrices."""

    def radii(points: np.ndarray) -> np.ndarray:
        distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
        return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself

    def share_inside(queries: np.ndarray, centres: np.ndarray) -> float:
        r = radii(centres)
        inside = [
            any(np.linalg.norm(q - c) <= r[j] for j, c in enumerate(centres)) for q in queries
        ]
        return float(np.mean(inside))

    return share_inside(fake, real), share_inside(real, fake)


def test_precision_and_recall_of_a_copy_of_the_data_are_one() -> None:
    real = np.random.default_rng(2).normal(size=(300, 5))
    assert precision_recall(real, real.copy(), k=3) == (1.0, 1.0)


def test_precision_and_recall_agree_with_the_definition_written_out() -> None:
    rng = np.random.default_rng(3)
    real = rng.normal(size=(60, 2))
    fake = rng.normal(loc=1.5, scale=0.5, size=(50, 2))  # narrower, shifted: partial overlap
    precision, recall = precision_recall(real, fake, k=3)
    assert (precision, recall) == pytest.approx(brute_force_precision_recall(real, fake, 3))
    assert 0 < recall < precision < 1  # a narrow generator: faithful but not covering


def test_disjoint_sets_have_neither_precision_nor_recall() -> None:
    real = np.random.default_rng(4).normal(size=(40, 3))
    assert precision_recall(real, real + 100.0, k=3) == (0.0, 0.0)
    with pytest.raises(NotApplicable, match="more than 3 points"):
        precision_recall(real[:3], real, k=3)


# --- the Inception-Score analogue ----------------------------------------------------------------


def test_inception_score_from_one_to_the_number_of_classes() -> None:
    confident_and_even = np.eye(4)[np.arange(40) % 4]
    assert inception_score(confident_and_even) == pytest.approx(4.0)
    all_alike = np.tile([0.7, 0.2, 0.1, 0.0], (40, 1))
    assert inception_score(all_alike) == pytest.approx(1.0)
    p = np.random.default_rng(5).dirichlet(np.ones(5), size=30)
    marginal = p.mean(0)
    kl = [sum(pi * math.log(pi / mj) for pi, mj in zip(row, marginal, strict=True)) for row in p]
    assert inception_score(p) == pytest.approx(math.exp(np.mean(kl)))


# --- the feature classifier, trained and cached ---------------------------------------------------


def tiny_images(seed: int = 0, n: int = 48) -> Data:
    """Two classes of 6x6 images: a bright top half or a bright bottom half, with noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.2 * torch.rand(n, 1, 6, 6, generator=g)
    x[y == 0, :, :3] += 0.8
    x[y == 1, :, 3:] += 0.8
    half = n // 2
    info = DataInfo((1, 6, 6), "unit", n_classes=2)
    return Data(info, Split(x[:half], y[:half]), Split(x[half:], y[half:]))


def cached_files() -> list[Path]:
    return sorted((paths.cache_folder() / extractors.CACHE_SUBFOLDER).glob("*"))


def test_the_classifier_is_trained_once_and_then_read_from_the_cache(monkeypatch) -> None:
    data = tiny_images()
    with torch.no_grad():  # as metrics run: training turns gradients on for itself
        first = feature_extractor(data, QUICK)
    assert first.test_acc >= 0.9  # an easy task: the classifier does learn
    assert [p.name for p in cached_files()] == [f"{first.key}.pt"]  # no temporary file left

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(extractors, "train_classifier", must_not_train)
    second = feature_extractor(data, QUICK)
    x = data.test.x
    assert second.key == first.key and second.test_acc == first.test_acc
    assert torch.equal(second.features(x), first.features(x))


def test_the_cache_key_follows_the_data_and_the_settings() -> None:
    data = tiny_images()
    key = extractors.cache_key(data, QUICK)
    assert extractors.cache_key(tiny_images(), QUICK) == key  # the same content: the same key
    changed = tiny_images()
    changed.train.x[0, 0, 0, 0] += 0.01
    assert extractors.cache_key(changed, QUICK) != key
    relabelled = replace(data, test=Split(data.test.x, 1 - data.test.y))
    assert extractors.cache_key(relabelled, QUICK) != key
    assert extractors.cache_key(data, replace(QUICK, steps=101)) != key


def test_training_is_seeded(monkeypatch, tmp_path: Path) -> None:
    data = tiny_images()
    first = feature_extractor(data, QUICK)
    monkeypatch.setenv("AEBENCH_CACHE", str(tmp_path / "another"))
    again = feature_extractor(data, QUICK)
    assert torch.equal(first.features(data.test.x), again.features(data.test.x))


def test_a_failed_write_leaves_no_file_and_a_damaged_one_is_trained_again(monkeypatch) -> None:
    data = tiny_images()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(extractors.torch, "save", disk_full)
        with pytest.raises(OSError):
            feature_extractor(data, QUICK)
    assert cached_files() == []  # neither the file nor its temporary
    good = feature_extractor(data, QUICK)
    (path,) = cached_files()
    path.write_bytes(path.read_bytes()[:100])  # as a foreign tool might leave it
    trained = []
    original = extractors.train_classifier
    monkeypatch.setattr(
        extractors, "train_classifier", lambda *a: trained.append(1) or original(*a)
    )
    again = feature_extractor(data, QUICK)
    assert trained == [1] and again.test_acc == good.test_acc


def test_unlabelled_data_has_no_classifier() -> None:
    data = tiny_images()
    unlabelled = replace(data, train=Split(data.train.x), test=Split(data.test.x))
    with pytest.raises(NotApplicable, match="no labels"):
        feature_extractor(unlabelled, QUICK)


def test_the_classifier_learns_digits(digits_extractor) -> None:
    assert digits_extractor.test_acc > 0.9


# --- FID on real data ----------------------------------------------------------------------------


def test_fid_of_the_test_split_against_itself_is_zero_and_against_noise_large(
    digits_data: Data, digits_extractor
) -> None:
    test = digits_extractor.features(digits_data.test.x).numpy()
    train = digits_extractor.features(digits_data.train.x[: len(test)]).numpy()
    noise = torch.rand(digits_data.test.x.shape, generator=torch.Generator().manual_seed(0))
    noisy = digits_extractor.features(noise).numpy()
    assert fid_of(test, test) == pytest.approx(0, abs=1e-6)
    data_fid = fid_of(test, train)  # two samples of one distribution: small but not 0
    assert 0 < data_fid < 0.1 * fid_of(test, noisy)


# --- the metrics, on models ----------------------------------------------------------------------


class DataBank(nn.Module):
    """A "model" whose prior picks one of the given inputs at random and decodes to it exactly:
    a generator of the data itself."""

    def __init__(self, x: Tensor) -> None:
        super().__init__()
        self.register_buffer("bank", x)

    def prior(self) -> Distribution:
        return OneHotCategorical(logits=torch.zeros(len(self.bank)))

    def decode(self, z: Tensor) -> Tensor:
        return (z @ self.bank.flatten(1)).view(-1, *self.bank.shape[1:])

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError  # the sample metrics never encode

    def forward(self, x: Tensor) -> ModelOutput:
        raise NotImplementedError

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        raise NotImplementedError


class Grey(DataBank):
    """Decodes every prior draw to the same grey image."""

    def decode(self, z: Tensor) -> Tensor:
        return torch.full((len(z), *self.bank.shape[1:]), 0.5)


def context_of(model: nn.Module, data: Data) -> MetricContext:
    return MetricContext(
        model=model.eval(),
        data=data,
        settings={},
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )


@pytest.fixture
def measure(plugins: Plugins) -> Callable[..., Measurement]:
    """The metric named ``name`` measured on ``context``, with ``params``."""

    def measured(name: str, context: MetricContext, **params) -> Measurement:
        return plugins.metrics.get(name).factory.measure(context, **params)

    return measured


def test_a_generator_of_the_test_data_scores_as_the_data_does(digits_data: Data, measure) -> None:
    steps = {"classifier_steps": QUICK.steps}
    perfect = context_of(DataBank(digits_data.test.x), digits_data)
    grey = context_of(Grey(digits_data.test.x), digits_data)
    fid, pr = measure("fid", perfect, **steps), measure("sample_pr", perfect, **steps)
    assert fid.reason == "" and pr.reason == ""
    assert pr.values["sample_precision"] == 1.0  # every sample is a test input
    assert pr.values["sample_recall"] > 0.5  # resampled with replacement: some are missed
    worst = measure("fid", grey, **steps).values["fid"]
    assert fid.values["fid"] < fid.values["fid_train"] < worst
    assert fid.values["feature_classifier_acc"] > 0.9
    scores = measure("sample_is", perfect, **steps).values
    assert scores["sample_is"] == pytest.approx(scores["sample_is_test"], rel=0.1)
    grey_scores = measure("sample_is", grey, **steps).values
    assert grey_scores["sample_is"] == pytest.approx(1.0)  # one image: no spread over classes
    # seeded by the trial: the same numbers again
    assert measure("fid", context_of(DataBank(digits_data.test.x), digits_data), **steps) == fid


def test_models_without_a_prior_are_nan_with_the_reason(
    digits_data: Data, plugins, measure
) -> None:
    ae = plugins.models.get("ae").factory(digits_data.info, latent_dim=2, hidden=[8])
    rae = plugins.models.get("rae").factory(digits_data.info, latent_dim=2, hidden=[8])
    for name in ("fid", "sample_pr", "sample_is"):
        result = measure(name, context_of(ae, digits_data), classifier_steps=1)
        assert math.isnan(next(iter(result.values.values())))
        assert result.reason == "the model has no prior or ex-post density to sample from"
        unfitted = measure(name, context_of(rae, digits_data), classifier_steps=1)
        assert "ex-post density is fitted after training" in unfitted.reason
    assert cached_files() == []  # no classifier trained for a model that cannot be sampled
    rae.eval().fit_ex_post(digits_data.train.x)  # its ex-post density: then it is sampled
    fitted = measure("fid", context_of(rae, digits_data), classifier_steps=QUICK.steps)
    assert fitted.reason == "" and fitted.values["fid"] > 0


def test_unlabelled_data_is_nan_with_the_reason(digits_data: Data, measure) -> None:
    unlabelled = replace(
        digits_data, train=Split(digits_data.train.x), test=Split(digits_data.test.x)
    )
    result = measure("fid", context_of(DataBank(unlabelled.test.x), unlabelled))
    assert result.reason == "the data has no labels" and math.isnan(result.values["fid"])


def test_one_eval_key_sets_the_classifier_and_sample_size_of_all_three(
    write_suite, plugins
) -> None:
    suite = build_suite(
        entry("vae"),
        name="samples",
        metrics=["fid", "sample_pr", "sample_is"],
        eval={"feature_classifier_steps": 7, "sample_count": 50, "sample_pr": {"samples": 60}},
    )
    params = aebench.load_suite(write_suite(suite), plugins).trials[0].eval["params"]
    assert {name: p["classifier_steps"] for name, p in params.items()} == dict.fromkeys(params, 7)
    assert {name: p["samples"] for name, p in params.items()} == {
        "fid": 50,
        "sample_pr": 60,  # a metric's own table wins
        "sample_is": 50,
    }


def test_dynamically_binarised_data_is_featured_and_scored_as_the_model_sees_it(measure) -> None:
    # Stored as grey levels, trained on binary draws, tested on a binary split. Before: the
    # feature classifier learnt grey images and scored binary ones, and fid_train set grey
    # training images against the binary test split (7 static against 59 dynamic on digits).
    steps = {"classifier_steps": QUICK.steps}
    by_kind = {}
    for binarize in ("static", "dynamic"):
        data = digits(binarize=binarize)
        by_kind[binarize] = measure("fid", context_of(DataBank(data.test.x), data), **steps)
    static, dynamic = by_kind["static"].values, by_kind["dynamic"].values
    assert dynamic["feature_classifier_acc"] > 0.85
    assert dynamic["fid_train"] < 2 * static["fid_train"] + 5
