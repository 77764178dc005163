"""Sample quality: decoded prior samples against the test split, in a classifier's feature space.

The features are those of a classifier that aebench trains itself per dataset
(``feature_extractor``; its test accuracy is the ``feature_classifier_acc`` column), not ImageNet's
Inception network: the numbers compare models on one dataset, not with published FIDs.

Samples are ``decode(z)`` with ``z ~ prior()``: the likelihood's mean, not a draw from p(x|z). For
binary data the mean (pixel probabilities) is what published samples show and compare, and a draw
adds pixel noise that the features would count against every model alike. A model's ``prior()``
may be an ex-post density fitted after training (an RAE's Gaussian mixture): it is sampled the
same way. A model without one (a plain autoencoder) gets NaN with the reason.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from aebench import Data, Metric, MetricContext, NotApplicable
from aebench import likelihood as estimators
from aebench_plugins.metrics.feature_extractor import (
    ClassifierSettings,
    FeatureExtractor,
    feature_extractor,
)
from aebench_plugins.metrics.groups import samples_column

MAX_SAMPLES = 10_000  # the default sample count: the test split's size, capped here
DECODE_BATCH = 1024
NEIGHBOURS = 3  # Kynkäänniemi et al. 2019: k = 3
DEFAULT_STEPS = ClassifierSettings().steps

Samples = Annotated[int, Field(ge=2)] | None  # None: the test split's size, capped at 10,000
Steps = Annotated[int, Field(ge=1)]
Neighbours = Annotated[int, Field(ge=1)]


# --- the statistics, on feature arrays -----------------------------------------------------------


def gaussian_moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, rows are samples) of ``features`` (N, D), in float64."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.atleast_2d(np.cov(features, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance, negative round-off eigenvalues taken as 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(
    mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray
) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mean1, cov1) and N(mean2, cov2):
    ||m1 - m2||² + Tr(C1 + C2 - 2 (C1 C2)^½).

    Tr (C1 C2)^½ is computed as the sum of the square roots of the eigenvalues of the symmetric
    C1^½ C2 C1^½, which has the same eigenvalues as C1 C2 but is symmetric and PSD: no complex
    round-off as with a general matrix square root of the product.
    """
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    cross = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    distance = np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross
    return float(max(distance, 0.0))  # round-off below 0 for identical Gaussians


def fid_of(real: np.ndarray, generated: np.ndarray) -> float:
    """FID between two sets of features (N, D): the Fréchet distance of their Gaussians."""
    if min(len(real), len(generated)) < 2:
        raise NotApplicable("a covariance needs at least 2 inputs on each side")
    return frechet_distance(*gaussian_moments(real), *gaussian_moments(generated))


def _radii(points: np.ndarray, k: int) -> np.ndarray:
    """Each point's distance to its k-th nearest other point."""
    from sklearn.neighbors import NearestNeighbors

    # k + 1 neighbours: a point is its own nearest, at distance 0.
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return distances[:, k]


def _inside(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Whether each query lies in at least one ball (centre, radius), boundaries included."""
    from sklearn.metrics import pairwise_distances_chunked

    def reduce(chunk: np.ndarray, start: int) -> np.ndarray:
        return (chunk <= radii[None, :]).any(axis=1)

    return np.concatenate(list(pairwise_distances_chunked(queries, centres, reduce_func=reduce)))


def precision_recall(
    real: np.ndarray, generated: np.ndarray, k: int = NEIGHBOURS
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its points, each reaching to the point's
    k-th nearest neighbour within the set. Precision: the share of generated points inside the
    real manifold; recall: the share of real points inside the generated one.
    """
    if min(len(real), len(generated)) <= k:
        raise NotApplicable(f"k-NN manifolds of k={k} need more than {k} points in each set")
    precision = _inside(generated, real, _radii(real, k)).mean()
    recall = _inside(real, generated, _radii(generated, k)).mean()
    return float(precision), float(recall)


def inception_score(probabilities: np.ndarray) -> float:
    """exp(E_x KL(p(y|x) || p(y))), p(y) the mean of p(y|x) over the samples (Salimans et al.
    2016), with the dataset's classifier for Inception: from 1 (every sample looks alike, or
    ambiguous) to the number of classes (confident and spread evenly over the classes)."""
    from scipy.special import rel_entr

    p = np.asarray(probabilities, dtype=np.float64)
    marginal = p.mean(0, keepdims=True)
    return float(np.exp(rel_entr(p, marginal).sum(1).mean()))


# --- samples and features of a trial -------------------------------------------------------------


def sample_count(data: Data, samples: int | None) -> int:
    return samples if samples is not None else min(len(data.test), MAX_SAMPLES)


@torch.no_grad()
def prior_samples(context: MetricContext, n: int) -> Tensor:
    """``n`` decodes of prior draws (seeded by the trial), or ``NotApplicable`` with why not."""
    model = context.model
    if not callable(getattr(model, "prior", None)):
        raise NotApplicable("the model has no prior or ex-post density to sample from")
    try:
        prior = model.prior()
    except RuntimeError as exc:  # an ex-post density that was never fitted, say
        raise NotApplicable(f"the model's prior cannot be sampled: {exc}") from None
    with estimators.seeded(context.generator):
        z = prior.sample((n,)).to(context.device)
    decoded = torch.cat([model.decode(b) for b in z.split(DECODE_BATCH)])
    if not torch.isfinite(decoded).all():
        raise NotApplicable("decoded prior samples are not finite")
    return decoded


def _measured(
    context: MetricContext, samples: int | None, classifier_steps: int
) -> tuple[Tensor, Tensor, FeatureExtractor]:
    """The decoded prior samples, as many test inputs (up to the cap) and the dataset's feature
    extractor. Sampled first: a model without a prior costs no classifier training."""
    n = sample_count(context.data, samples)
    decoded = prior_samples(context, n)
    real = context.data.test.x[: min(n, MAX_SAMPLES)]  # the splits are already shuffled
    extractor = feature_extractor(context.data, ClassifierSettings(steps=classifier_steps))
    return decoded, real, extractor


# --- the metrics ---------------------------------------------------------------------------------


def fid(
    context: MetricContext, samples: Samples = None, classifier_steps: Steps = DEFAULT_STEPS
) -> dict[str, float]:
    """FID of decoded prior samples against the test split, in the dataset classifier's features.

    ``samples`` prior draws (default: the test split's size, at most 10,000) against as many test
    inputs; the features are the penultimate layer of a classifier aebench trains on the training
    split (``classifier_steps`` Adam steps, seeded, cached). ``fid_train``: training inputs
    against the test split, the same way: what a generator of the data itself would score at this
    sample size (FID is biased upwards by small samples; drawn through the data's
    ``batch_transform``, as training draws them, where it has one). ``feature_classifier_acc``:
    that classifier's test accuracy. NaN without labels or without a prior.
    """
    decoded, real_x, extractor = _measured(context, samples, classifier_steps)
    real, generated = extractor.features(real_x).numpy(), extractor.features(decoded).numpy()
    train_x = context.data.train.x[: len(real)]
    if context.data.batch_transform is not None:  # the training inputs as the model saw them
        seeded = torch.Generator(device=train_x.device).manual_seed(
            context.generator.initial_seed()
        )
        train_x = context.data.batch_transform(train_x, seeded)
    train = extractor.features(train_x).numpy()
    return {
        "fid": fid_of(real, generated),
        "fid_train": fid_of(real, train),
        "feature_classifier_acc": extractor.test_acc,
    }


def sample_pr(
    context: MetricContext,
    samples: Samples = None,
    neighbours: Neighbours = NEIGHBOURS,
    classifier_steps: Steps = DEFAULT_STEPS,
) -> dict[str, float]:
    """Precision and recall of decoded prior samples (Kynkäänniemi et al. 2019).

    k-NN manifolds (``neighbours`` = k, default 3) of the test split's and the samples' classifier
    features: ``sample_precision``, the share of samples on the data's manifold (fidelity);
    ``sample_recall``, the share of test inputs on the samples' manifold (coverage). Samples and
    features as for ``fid``.
    """
    decoded, real_x, extractor = _measured(context, samples, classifier_steps)
    real, generated = extractor.features(real_x).numpy(), extractor.features(decoded).numpy()
    precision, recall = precision_recall(real, generated, neighbours)
    return {"sample_precision": precision, "sample_recall": recall}


def sample_is(
    context: MetricContext, samples: Samples = None, classifier_steps: Steps = DEFAULT_STEPS
) -> dict[str, float]:
    """Inception-Score analogue of decoded prior samples, with the dataset's own classifier.

    ``sample_is``: exp(E KL(p(y|x) || p(y))) over the samples, from 1 to the number of classes;
    ``sample_is_test``: the same of the test split, the score of real data; ``sample_confidence``:
    the mean of max_y p(y|x) over the samples (how recognisable they are as some class).
    """
    decoded, real_x, extractor = _measured(context, samples, classifier_steps)
    generated = extractor.probabilities(decoded).numpy()
    real = extractor.probabilities(real_x).numpy()
    return {
        "sample_is": inception_score(generated),
        "sample_is_test": inception_score(real),
        "sample_confidence": float(generated.max(1).mean()),
    }


# --- declarations --------------------------------------------------------------------------------

LABELLED = ("labelled data",)  # the classifier learns the classes: no labels, no features
# Plain [eval] keys that set the parameter of all three at once: one classifier, one sample size.
SHARED = {"feature_classifier_steps": "classifier_steps", "sample_count": "samples"}

SAMPLE_QUALITY_METRICS = {
    "fid": Metric(
        fid,
        columns=[
            samples_column(
                "fid",
                "lower",
                floor=1.0,
                heavy_tailed=True,  # a seed's FID can be far off the others (12.5 of spread)
                description="prior samples vs test split, dataset-classifier features",
                headline=True,
            ),
            samples_column(
                "fid_train",
                description="training vs test inputs: the data's own FID at this sample size",
            ),
            samples_column(
                "feature_classifier_acc",
                description="test accuracy of the classifier the features come from",
            ),
        ],
        requires=LABELLED,
        aliases=SHARED,
        cost="expensive",  # the first trains the feature classifier (2.9 s on digits)
    ),
    "sample_pr": Metric(
        sample_pr,
        columns=[
            samples_column(
                "sample_precision",
                "higher",
                floor=0.02,
                description="share of samples on the test split's k-NN manifold",
                at_least=0.0,
                at_most=1.0,
            ),
            samples_column(
                "sample_recall",
                "higher",
                floor=0.02,
                description="share of test inputs on the samples' k-NN manifold",
                at_least=0.0,
                at_most=1.0,
            ),
        ],
        requires=LABELLED,
        aliases=SHARED,
        cost="expensive",  # the first trains the feature classifier (2.9 s on digits)
    ),
    "sample_is": Metric(
        sample_is,
        columns=[
            samples_column(
                "sample_is",
                "higher",
                floor=0.1,
                description="Inception-Score analogue with the dataset's classifier",
            ),
            samples_column("sample_is_test", description="the same of the test split"),
            samples_column(
                "sample_confidence",
                "higher",
                floor=0.02,
                description="mean max_y p(y|x) of the samples",
            ),
        ],
        requires=LABELLED,
        aliases=SHARED,
        cost="expensive",  # the first trains the feature classifier (2.9 s on digits)
    ),
}
