"""Disentanglement scores of codes against the ground-truth factors that generated the data.

The definitions and protocol parameters are disentanglement_lib's (Locatello et al. 2019), which
implement: the BetaVAE score (Higgins et al. 2017), the FactorVAE score (Kim & Mnih 2018), the
mutual information gap (MIG, Chen et al. 2018), the SAP score (Kumar et al. 2018), DCI
disentanglement, completeness and informativeness (Eastwood & Williams 2018), and modularity and
explicitness (Ridgeway & Mozer 2018). Plain functions of arrays: ``codes`` are ``(N, n_codes)``
floats, ``factors`` ``(N, n_factors)`` integer values of discrete factors. The scores that
intervene on factors (BetaVAE, FactorVAE) take ``represent``: the codes of the samples rendered
from given factor values.

scikit-learn is imported inside the functions that use it: it takes seconds, and `aebench list`
loads this module.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypedDict, Unpack

import numpy as np

# Factor values (n, n_factors) -> the codes (n, n_codes) of the samples rendered from them.
Represent = Callable[[np.ndarray], np.ndarray]
ENTROPY_FLOOR = 1e-11  # disentanglement_lib's: keeps log(0) out of the importance entropies
# The BetaVAE score's logistic regression: disentanglement_lib's (scikit-learn's default 100
# iterations, stopped before it converges on a rotated code), or run until it converges.
BetaVaeFit = Literal["reference", "converged"]
BETA_VAE_ITERATIONS: dict[str, int] = {"reference": 100, "converged": 1000}


class Protocol(TypedDict):
    """The protocol the scores that intervene share: ``batch_size`` renders per point, a
    classifier fit on ``train_points`` points and scored on ``eval_points`` fresh ones (their
    defaults are the metrics' parameters, in ``disentanglement``)."""

    batch_size: int
    train_points: int
    eval_points: int


@dataclass(frozen=True)
class ProtocolSize:
    """A protocol size suited to the data: ``share`` of a split's ``n`` samples, at least
    ``least`` and at most ``cap`` (disentanglement_lib's size for it, reached on large data).

    ``read``: the points are the split's own (no more than it has: a split smaller than
    ``least`` is read whole); otherwise they are drawn afresh (rendered), and ``least`` holds
    on small data too, so that a score is not left to a handful of points.
    """

    cap: int
    share: float = 1.0
    least: int = 0
    read: bool = True

    def of(self, n: int) -> int:
        size = min(self.cap, max(self.least, round(self.share * n)))
        return min(size, n) if self.read else size


class ScoreUndefined(ValueError):
    """The score has no value for these codes (one code unit only, a constant factor, ...)."""


def histogram_discretize(codes: np.ndarray, bins: int) -> np.ndarray:
    """Each code unit cut into ``bins`` equal-width bins over its own range: bin numbers
    ``(N, n_codes)``, ``1 .. bins`` (the maximum goes in the last bin)."""
    discrete = np.zeros(codes.shape, dtype=np.int64)
    for unit in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, unit], bins)
        discrete[:, unit] = np.digitize(codes[:, unit], edges[:-1])
    return discrete


def mutual_information(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(code unit i; factor j) in nats, ``(n_codes, n_factors)``, of the empirical joint."""
    from sklearn.metrics import mutual_info_score

    return np.array(
        [
            [
                mutual_info_score(factors[:, j], discrete_codes[:, i])
                for j in range(factors.shape[1])
            ]
            for i in range(discrete_codes.shape[1])
        ]
    )


def factor_entropies(factors: np.ndarray) -> np.ndarray:
    """H(factor j) in nats of the empirical distribution, ``(n_factors,)``."""
    import scipy.stats  # as sklearn here: imported where measured, not where plugins load

    return np.array(
        [scipy.stats.entropy(np.unique(column, return_counts=True)[1]) for column in factors.T]
    )


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """The mutual information gap: per factor, the MI of its most informative code unit minus
    that of the second, over the factor's entropy; averaged over factors. Codes discretised in
    ``bins`` histogram bins."""
    if codes.shape[1] < 2:
        raise ScoreUndefined("a gap between code units needs at least 2 of them")
    entropy = factor_entropies(factors)
    if (entropy == 0).any():
        raise ScoreUndefined("a factor is constant in these samples: its entropy is 0")
    information = mutual_information(histogram_discretize(codes, bins), factors)
    top = -np.sort(-information, axis=0)  # each factor's column, largest first
    return float(np.mean((top[0] - top[1]) / entropy))


def modularity(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """Ridgeway & Mozer's modularity of the codes, discretised in ``bins`` histogram bins:
    ``modularity_of_information`` of their mutual information with the factors."""
    if factors.shape[1] < 2:
        raise ScoreUndefined("modularity compares a code unit's factors: it needs 2 or more")
    return modularity_of_information(mutual_information(histogram_discretize(codes, bins), factors))


def modularity_of_information(information: np.ndarray) -> float:
    """From the mutual information ``(n_codes, n_factors)``: per code unit, 1 - (the sum of its
    squared MIs with the factors other than its best) / ((n_factors - 1) * its best squared MI),
    0 for a unit that carries no information; averaged over units."""
    squared = information**2
    best = squared.max(axis=1)
    rest = squared.sum(axis=1) - best
    informative = best > 0
    per_unit = np.zeros(len(best))
    per_unit[informative] = 1.0 - rest[informative] / (best[informative] * (squared.shape[1] - 1))
    return float(per_unit.mean())


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both scaled by the train codes' mean and standard deviation (a constant unit: by 1)."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def check_factors_vary(factors: np.ndarray, split: str) -> None:
    """Factors that a classifier can be fit to: each takes two values or more in ``split``."""
    for j in range(factors.shape[1]):
        if len(np.unique(factors[:, j])) < 2:
            raise ScoreUndefined(f"factor {j} takes one value in the {split} split")


def explicitness(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
) -> float:
    """Ridgeway & Mozer's explicitness: per factor, a logistic regression of its value on the
    standardised codes, fit on train; the ROC AUC of each value one-vs-rest on test, averaged
    over values (macro); averaged over factors. Values absent from the test split, or absent from
    the train split (never predicted), are left out of the average."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    check_factors_vary(train_factors, "train")
    train_x, test_x = _standardise(train_codes, test_codes)
    per_factor = []
    for j in range(train_factors.shape[1]):
        classifier = LogisticRegression(max_iter=1000).fit(train_x, train_factors[:, j])
        probability = classifier.predict_proba(test_x)
        truth = test_factors[:, j, None] == classifier.classes_[None, :]
        scored = [
            roc_auc_score(truth[:, k], probability[:, k])
            for k in range(len(classifier.classes_))
            if 0 < truth[:, k].sum() < len(truth)
        ]
        if not scored:
            raise ScoreUndefined(f"factor {j} takes one value in the test split")
        per_factor.append(np.mean(scored))
    return float(np.mean(per_factor))


def sap_score_matrix(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
) -> np.ndarray:
    """``(n_codes, n_factors)``: the test accuracy of a linear SVM (C = 0.01, balanced class
    weights) predicting factor j from code unit i alone, fit on train."""
    from sklearn.svm import LinearSVC

    matrix = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    for i in range(train_codes.shape[1]):
        for j in range(train_factors.shape[1]):
            classifier = LinearSVC(C=0.01, class_weight="balanced")
            classifier.fit(train_codes[:, i : i + 1], train_factors[:, j])
            predicted = classifier.predict(test_codes[:, i : i + 1])
            matrix[i, j] = np.mean(predicted == test_factors[:, j])
    return matrix


def sap(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
) -> float:
    """The SAP score for discrete factors: per factor, the best code unit's accuracy in
    ``sap_score_matrix`` minus the second best's; averaged over factors. The second best unit of a
    perfect code predicts at chance level, so the score of a perfect code is 1 - chance (0.5 for
    balanced binary factors), not 1."""
    if train_codes.shape[1] < 2:
        raise ScoreUndefined("a gap between code units needs at least 2 of them")
    check_factors_vary(train_factors, "train")
    matrix = sap_score_matrix(train_codes, train_factors, test_codes, test_factors)
    top = -np.sort(-matrix, axis=0)
    return float(np.mean(top[0] - top[1]))


def gbt_importance(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    seed: int,
    workers: int = 1,
) -> tuple[np.ndarray, float]:
    """DCI's importance matrix ``(n_codes, n_factors)``: the feature importances of a gradient
    boosted classifier (scikit-learn's defaults) of each factor from the codes, fit on train; and
    the mean test accuracy of those classifiers (the informativeness).

    The factors' fits are independent and scikit-learn builds trees without the GIL, so up to
    ``workers`` of them run at once, on threads, the factors with the most values (the most trees
    a stage) first so that the long fits do not end up last; each keeps its ``random_state``, so
    the result is the same for any ``workers``."""
    from joblib import Parallel, delayed
    from sklearn.ensemble import GradientBoostingClassifier

    check_factors_vary(train_factors, "train")

    def fit(j: int) -> tuple[np.ndarray, float]:
        classifier = GradientBoostingClassifier(random_state=seed)
        classifier.fit(train_codes, train_factors[:, j])
        accuracy = np.mean(classifier.predict(test_codes) == test_factors[:, j])
        return np.abs(classifier.feature_importances_), float(accuracy)

    n_factors = train_factors.shape[1]
    values = [len(np.unique(train_factors[:, j])) for j in range(n_factors)]
    order = sorted(range(n_factors), key=lambda j: -values[j])
    fitted = Parallel(n_jobs=max(1, min(workers, n_factors)), backend="threading")(
        delayed(fit)(j) for j in order
    )
    by_factor = dict(zip(order, fitted, strict=True))
    importance = np.stack([by_factor[j][0] for j in range(n_factors)], axis=1)
    return importance, float(np.mean([by_factor[j][1] for j in range(n_factors)]))


def dci_disentanglement(importance: np.ndarray) -> float:
    """Per code unit, 1 - the entropy (base n_factors) of its importances over the factors;
    averaged with weights the units' shares of the total importance. Undefined for one factor
    (an entropy in base 1: 0 / 0)."""
    import scipy.stats

    if importance.shape[1] < 2:
        raise ScoreUndefined("the data has one factor: a unit's importance has none to spread over")

    per_unit = 1.0 - scipy.stats.entropy(importance.T + ENTROPY_FLOOR, base=importance.shape[1])
    return float(np.sum(per_unit * _shares(importance, axis=1)))


def dci_completeness(importance: np.ndarray) -> float:
    """Per factor, 1 - the entropy (base n_codes) of its importances over the code units;
    averaged with weights the factors' shares of the total importance. Undefined for one code
    unit (an entropy in base 1: 0 / 0)."""
    import scipy.stats

    if importance.shape[0] < 2:
        raise ScoreUndefined("the code has one unit: a factor's importance has none to spread over")

    per_factor = 1.0 - scipy.stats.entropy(importance + ENTROPY_FLOOR, base=importance.shape[0])
    return float(np.sum(per_factor * _shares(importance, axis=0)))


def _shares(importance: np.ndarray, axis: int) -> np.ndarray:
    """Each row's (axis=1) or column's (axis=0) share of the total; equal shares when it is 0."""
    if importance.sum() == 0:
        importance = np.ones_like(importance)
    return importance.sum(axis=axis) / importance.sum()


def sample_factors(sizes: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` factor combinations ``(n, n_factors)``, each factor uniform over its values."""
    return rng.integers(0, sizes, size=(n, len(sizes)))


def beta_vae_points(
    represent: Represent,
    sizes: tuple[int, ...],
    points: int,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The BetaVAE score's training points: for each, a factor k drawn uniformly and two batches
    of ``batch_size`` random factor combinations, the second's k-th value set to the first's; the
    point is the mean absolute difference of their codes ``(points, n_codes)``, its label k."""
    labels = rng.integers(0, len(sizes), size=points)
    first = sample_factors(sizes, points * batch_size, rng).reshape(points, batch_size, -1)
    second = sample_factors(sizes, points * batch_size, rng).reshape(points, batch_size, -1)
    fixed = np.arange(len(sizes))[None, None, :] == labels[:, None, None]
    second = np.where(fixed, first, second)
    codes_first = represent(first.reshape(points * batch_size, -1))
    codes_second = represent(second.reshape(points * batch_size, -1))
    difference = np.abs(codes_first - codes_second).reshape(points, batch_size, -1)
    return difference.mean(axis=1), labels


def beta_vae_score(
    represent: Represent,
    sizes: tuple[int, ...],
    rng: np.random.Generator,
    *,
    fit: BetaVaeFit = "reference",
    **protocol: Unpack[Protocol],
) -> float:
    """The accuracy, on fresh points, of a logistic regression trained to tell from a point
    (``beta_vae_points``) which factor its two batches shared.

    ``fit = "reference"`` stops the fit at scikit-learn's default 100 iterations, as
    disentanglement_lib does (``LogisticRegression(random_state=...)``, nothing else set), so that
    the score is comparable with the published ones; ``"converged"`` runs it to 1000.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(sizes) < 2:
        raise ScoreUndefined("the data has one factor: the score names which factor was fixed")
    batch_size = protocol["batch_size"]
    train_x, train_y = beta_vae_points(represent, sizes, protocol["train_points"], batch_size, rng)
    eval_x, eval_y = beta_vae_points(represent, sizes, protocol["eval_points"], batch_size, rng)
    if len(np.unique(train_y)) < 2:
        raise ScoreUndefined("the training points name one factor only: draw more of them")
    classifier = LogisticRegression(max_iter=BETA_VAE_ITERATIONS[fit])
    with warnings.catch_warnings():
        # the reference protocol stops early on purpose: its warning says nothing new
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(train_x, train_y)
    return float(classifier.score(eval_x, eval_y))


def factor_vae_votes(
    represent: Represent,
    sizes: tuple[int, ...],
    points: int,
    batch_size: int,
    scale: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The FactorVAE score's votes ``(n_factors, n_units)``: for each point, a factor k drawn
    uniformly is held at one random value across a batch of ``batch_size`` random combinations;
    the code unit whose variance over the batch, divided by ``scale`` (its variance over the
    data), is least votes for k. ``scale`` holds the active units only; codes are cut to them by
    the caller's ``represent``."""
    labels = rng.integers(0, len(sizes), size=points)
    factors = sample_factors(sizes, points * batch_size, rng).reshape(points, batch_size, -1)
    held = factors[np.arange(points), 0, labels]  # each batch's first value of its factor
    factors[np.arange(points), :, labels] = held[:, None]
    codes = represent(factors.reshape(points * batch_size, -1)).reshape(points, batch_size, -1)
    variance = codes.var(axis=1, ddof=1)
    winners = np.argmin(variance / scale[None, :], axis=1)
    votes = np.zeros((len(sizes), codes.shape[2]), dtype=np.int64)
    np.add.at(votes, (labels, winners), 1)
    return votes


def factor_vae_score(
    represent: Represent,
    sizes: tuple[int, ...],
    rng: np.random.Generator,
    *,
    variance_points: int = 10_000,
    prune_threshold: float = 0.05,
    **protocol: Unpack[Protocol],
) -> tuple[float, int]:
    """(score, active units). Units whose standard deviation over ``variance_points`` random
    samples is below ``prune_threshold`` (collapsed to the prior) are left out; the majority-vote
    classifier maps each remaining unit to the factor it voted for most on the training votes;
    the score is the share of fresh votes it gets right. No active unit: a score of 0. One factor:
    undefined (every vote is right, whatever the code)."""
    if len(sizes) < 2:
        raise ScoreUndefined("the data has one factor: the score names which factor was held")
    variance = represent(sample_factors(sizes, variance_points, rng)).var(axis=0, ddof=1)
    active = np.sqrt(variance) >= prune_threshold
    if not active.any():
        return 0.0, 0

    def active_codes(factors: np.ndarray) -> np.ndarray:
        return represent(factors)[:, active]

    scale, batch_size = variance[active], protocol["batch_size"]
    train = factor_vae_votes(active_codes, sizes, protocol["train_points"], batch_size, scale, rng)
    classifier = np.argmax(train, axis=0)  # each unit's factor
    votes = factor_vae_votes(active_codes, sizes, protocol["eval_points"], batch_size, scale, rng)
    correct = votes[classifier, np.arange(votes.shape[1])].sum()
    return float(correct / votes.sum()), int(active.sum())


def check_codes(codes: np.ndarray) -> None:
    """Codes that every score can read: finite numbers."""
    if not np.isfinite(codes).all():
        raise ScoreUndefined("the codes are not all finite")
    if math.prod(codes.shape) == 0:
        raise ScoreUndefined("there are no codes")
