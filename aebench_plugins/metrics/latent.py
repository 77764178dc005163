"""Latent-space quality on labelled data: clusters, silhouette, k-NN and linear-probe accuracy.

All look at the deterministic code (``model.encode``: the posterior mean of a latent-variable
model); of a model with a latent hierarchy (``latent_layers``), at its first layer only, the one
nearest the data (z1 of a two-layer VAE), which holds what the upper layers summarise of x.
scikit-learn does the work, seeded from the trial's generator. NaN without labels, or where some
codes are not numbers, with the reason (``NotApplicable``).
scikit-learn is imported inside each metric: it takes seconds, and `aebench list` loads this.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field
from threadpoolctl import threadpool_limits

from aebench import MetricContext, NotApplicable, Split, latent_layer_slices
from aebench_plugins.metrics.codes import split_codes

KNN_NEIGHBOURS = 5
SILHOUETTE_MAX_SAMPLES = 5000  # silhouette is quadratic in the number of samples


def _one_thread():
    """scikit-learn on one thread: these fits are small, and OpenMP threads that wait on each
    other slow a busy machine down by orders of magnitude (k-means: 7 s instead of 0.1 s)."""
    return threadpool_limits(limits=1)


def _codes_and_labels(
    context: MetricContext, split: Split, name: str = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """The split's codes (a hierarchy's first layer) and labels as numpy arrays. ``NotApplicable``,
    with why, without labels or where some codes are not numbers (nothing to cluster or fit)."""
    if split.y is None:
        raise NotApplicable(f"the {name} split has no labels")
    codes = split_codes(context, split)
    first_layer = next(iter(latent_layer_slices(context.model, codes.shape[1]).values()))
    codes = codes[:, first_layer].double().cpu().numpy()
    if not np.isfinite(codes).all():
        broken = int((~np.isfinite(codes)).any(axis=1).sum())
        raise NotApplicable(f"the codes of {broken} of {len(codes)} {name} inputs are not numbers")
    return codes, split.y.cpu().numpy()


def _seed(context: MetricContext) -> int:
    return context.generator.initial_seed() % 2**32


def kmeans(context: MetricContext) -> dict[str, float]:
    """k-means of the test codes: columns kmeans_nmi, kmeans_ari (labelled data only; else NaN).

    k is the dataset's number of classes (else the number of distinct test labels); NMI and the
    adjusted Rand index compare the clusters with the true labels.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    codes, labels = _codes_and_labels(context, context.data.test)
    k = context.data.info.n_classes or len(np.unique(labels))
    if len(codes) < k:
        raise NotApplicable(f"{k} clusters need at least {k} test inputs; there are {len(codes)}")
    with _one_thread():
        clusters = KMeans(n_clusters=k, n_init=10, random_state=_seed(context)).fit_predict(codes)
    return {
        "kmeans_nmi": float(normalized_mutual_info_score(labels, clusters)),
        "kmeans_ari": float(adjusted_rand_score(labels, clusters)),
    }


def silhouette(context: MetricContext) -> dict[str, float]:
    """Silhouette of the true labels in test code space (labelled data only; else NaN).

    Euclidean; on a seeded subsample of 5,000 when the split is larger.
    """
    from sklearn.metrics import silhouette_score

    test = _codes_and_labels(context, context.data.test)
    if not 2 <= len(np.unique(test[1])) < len(test[1]):
        raise NotApplicable("a silhouette needs 2 or more labels and more inputs than labels")
    codes, labels = test
    sample = SILHOUETTE_MAX_SAMPLES if len(codes) > SILHOUETTE_MAX_SAMPLES else None
    with _one_thread():
        score = silhouette_score(codes, labels, sample_size=sample, random_state=_seed(context))
    return {"silhouette": float(score)}


def _train_and_score(context: MetricContext, classifier) -> float:
    """Accuracy on the test codes of ``classifier`` fit on the train codes."""
    train = _codes_and_labels(context, context.data.train, "train")
    test = _codes_and_labels(context, context.data.test)
    with _one_thread():
        return float(classifier.fit(*train).score(*test))


def knn_acc(
    context: MetricContext, neighbours: Annotated[int, Field(ge=1)] = KNN_NEIGHBOURS
) -> dict[str, float]:
    """k-NN accuracy, fit on train codes, scored on test codes (labelled data only; else NaN).

    ``neighbours`` is k (default 5); Euclidean distance in code space.
    """
    from sklearn.neighbors import KNeighborsClassifier

    if len(context.data.train) < neighbours:
        raise NotApplicable(
            f"{neighbours} neighbours need at least {neighbours} train inputs;"
            f" there are {len(context.data.train)}"
        )
    classifier = KNeighborsClassifier(n_neighbors=neighbours)
    return {"knn_acc": _train_and_score(context, classifier)}


def probe_acc(context: MetricContext) -> dict[str, float]:
    """Logistic-regression probe accuracy, train codes -> test codes (labelled data only; else NaN).

    The codes are standardised with the train split's statistics first.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = context.data.train.y
    if labels is not None and len(labels.unique()) < 2:
        raise NotApplicable("the train split holds one label: a probe has nothing to tell apart")
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=1000, random_state=_seed(context))
    )
    return {"probe_acc": _train_and_score(context, probe)}
