"""Disentanglement scores: hand-made cases against explicit computations, and each score on the
factors themselves (its maximum), on a random rotation and on one that mixes every factor equally
into every code unit (lower), and on noise (its minimum); then the metric plugins on data with and
without factors."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import build_suite, entry
from torch import Tensor, nn

import aebench
from aebench import Data, DataInfo, MetricContext, Split
from aebench.run.measure import unchanged_metrics
from aebench.run.suite import load_suite
from aebench.testing import check_metric
from aebench_plugins.datasets.dsprites import shapes_small
from aebench_plugins.metrics import disentanglement as plugin
from aebench_plugins.metrics import disentanglement_scores as scores
from aebench_plugins.metrics.disentanglement import DISENTANGLEMENT_METRICS, protocol_sizes

SIZES = (2, 2, 2, 2)  # four balanced binary factors: a mix of them all is symmetric in them
# An orthogonal matrix whose every entry is +-1/2: each code unit is an equal mix of all factors.
HADAMARD = 0.5 * np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])


def _factors(n: int, seed: int) -> np.ndarray:
    return scores.sample_factors(SIZES, n, np.random.default_rng(seed))


def _identity(factors: np.ndarray) -> np.ndarray:
    return factors.astype(float)


def _mixed(factors: np.ndarray) -> np.ndarray:
    return (factors - 0.5) @ HADAMARD


# A random rotation (seeded): each unit some mix of the factors, unequal.
ROTATION = np.linalg.qr(np.random.default_rng(5).normal(size=(4, 4)))[0]


def _rotated(factors: np.ndarray) -> np.ndarray:
    return (factors - 0.5) @ ROTATION


def _noise(factors: np.ndarray) -> np.ndarray:
    seed = int(factors.sum() * 7919 + len(factors))  # fresh noise for each batch
    return np.random.default_rng(seed).normal(size=factors.shape)


CODES = {"factors": _identity, "mixed": _mixed, "rotated": _rotated, "noise": _noise}


@pytest.fixture(scope="module")
def observational() -> dict[str, dict[str, float]]:
    """Every score that reads a train and a test split, for each kind of code."""
    train_factors, test_factors = _factors(400, 0), _factors(200, 1)
    results = {}
    for name, represent in CODES.items():
        train, test = represent(train_factors), represent(test_factors)
        importance, informativeness = scores.gbt_importance(
            train, train_factors, test, test_factors, seed=0
        )
        results[name] = {
            "mig": scores.mig(test, test_factors),
            "modularity": scores.modularity(test, test_factors),
            "explicitness": scores.explicitness(train, train_factors, test, test_factors),
            "sap": scores.sap(train, train_factors, test, test_factors),
            "dci_disentanglement": scores.dci_disentanglement(importance),
            "dci_completeness": scores.dci_completeness(importance),
            "dci_informativeness": informativeness,
        }
    return results


def test_the_factors_themselves_score_the_maximum(observational) -> None:
    best = observational["factors"]
    # MIG's second-best unit has a small positive MI from the finite sample: 1 minus that bias
    assert best["mig"] > 0.97
    for name in ("explicitness", "dci_disentanglement", "dci_completeness"):
        assert best[name] == pytest.approx(1.0, abs=1e-6), name
    assert best["modularity"] == pytest.approx(1.0, abs=1e-4)  # squared finite-sample MI bias
    assert best["dci_informativeness"] == 1.0
    # SAP's maximum for binary factors: the best unit is always right, the second at chance
    assert 0.4 < best["sap"] < 0.6


def test_a_mixing_rotation_lowers_every_disentanglement_score(observational) -> None:
    best, mixed = observational["factors"], observational["mixed"]
    for name in ("mig", "modularity", "sap", "dci_disentanglement", "dci_completeness"):
        assert mixed[name] < best[name] - 0.3, name
    # informativeness and explicitness measure what is decodable, which a rotation keeps
    assert mixed["dci_informativeness"] > 0.95
    assert mixed["explicitness"] > 0.95


def test_a_random_rotation_lowers_the_disentanglement_scores(observational) -> None:
    best, rotated = observational["factors"], observational["rotated"]
    for name in ("mig", "modularity", "sap", "dci_disentanglement", "dci_completeness"):
        assert rotated[name] < best[name] - 0.1, name


def test_noise_scores_near_the_minimum(observational) -> None:
    noise = observational["noise"]
    for name in ("mig", "sap", "dci_disentanglement", "dci_completeness"):
        assert noise[name] < 0.06, name
    assert noise["explicitness"] == pytest.approx(0.5, abs=0.08)  # a ROC AUC at chance
    assert noise["dci_informativeness"] == pytest.approx(0.5, abs=0.08)  # binary: chance
    # modularity reads how concentrated a unit's (here spurious) information is, not how much
    # there is: noise is not at its minimum, only below the factors' score
    assert noise["modularity"] < observational["factors"]["modularity"] - 0.2


def _explicit_mutual_information(a: list[int], b: list[int]) -> float:
    n = len(a)
    joint: dict[tuple[int, int], int] = {}
    for pair in zip(a, b, strict=True):
        joint[pair] = joint.get(pair, 0) + 1
    total = 0.0
    for (u, v), count in joint.items():
        p_u, p_v = a.count(u) / n, b.count(v) / n
        total += count / n * math.log(count / n / (p_u * p_v))
    return total


def test_mig_is_the_explicit_mutual_information_gap() -> None:
    factor_a = [0, 0, 0, 0, 1, 1, 1, 1]
    factor_b = [0, 1, 2, 0, 1, 2, 0, 1]
    code_1 = [0, 0, 0, 0, 1, 1, 1, 1]  # factor a exactly
    code_2 = [0, 0, 1, 0, 1, 1, 0, 1]  # factor a, two flipped
    code_3 = [0, 1, 1, 0, 1, 1, 0, 1]  # factor b, 1 and 2 merged
    codes = np.array([code_1, code_2, code_3], dtype=float).T
    factors = np.array([factor_a, factor_b]).T
    # two bins over [0, 1]: a 0/1 code is its own discretisation
    information = [
        [_explicit_mutual_information(code, factor) for factor in (factor_a, factor_b)]
        for code in (code_1, code_2, code_3)
    ]
    entropy_a, entropy_b = math.log(2), -sum(p * math.log(p) for p in (3 / 8, 3 / 8, 2 / 8))
    gap_a = sorted((row[0] for row in information), reverse=True)
    gap_b = sorted((row[1] for row in information), reverse=True)
    expected = ((gap_a[0] - gap_a[1]) / entropy_a + (gap_b[0] - gap_b[1]) / entropy_b) / 2
    assert scores.mig(codes, factors, bins=2) == pytest.approx(expected, rel=1e-12)
    assert scores.mutual_information(codes.astype(int), factors) == pytest.approx(
        np.array(information), rel=1e-12
    )


def test_histogram_discretisation_is_equal_width_bins_over_each_unit() -> None:
    codes = np.random.default_rng(0).normal(size=(500, 3)) * [1.0, 5.0, 0.1]
    bins = 20
    discrete = scores.histogram_discretize(codes, bins)
    low, high = codes.min(axis=0), codes.max(axis=0)
    expected = np.minimum(np.floor((codes - low) / (high - low) * bins), bins - 1) + 1
    assert (discrete == expected).all()


def _explicit_entropy(weights: list[float], base: int) -> float:
    total = sum(weights)
    return -sum(w / total * math.log(w / total, base) for w in weights if w > 0)


def test_dci_of_explicit_importance_matrices() -> None:
    diagonal = np.eye(3)
    assert scores.dci_disentanglement(diagonal) == pytest.approx(1.0, abs=1e-8)
    assert scores.dci_completeness(diagonal) == pytest.approx(1.0, abs=1e-8)
    uniform = np.ones((3, 3))
    assert scores.dci_disentanglement(uniform) == pytest.approx(0.0, abs=1e-8)
    assert scores.dci_completeness(uniform) == pytest.approx(0.0, abs=1e-8)
    # 3 code units x 2 factors; the last unit is dead (weight 0 in the disentanglement)
    rows = [[0.6, 0.2], [0.05, 0.15], [0.0, 0.0]]
    total = sum(map(sum, rows))
    disentanglement = sum(
        (1 - _explicit_entropy(row, base=2)) * sum(row) / total for row in rows if sum(row)
    )
    columns = [[row[j] for row in rows] for j in range(2)]
    completeness = sum((1 - _explicit_entropy(col, base=3)) * sum(col) / total for col in columns)
    matrix = np.array(rows)
    assert scores.dci_disentanglement(matrix) == pytest.approx(disentanglement, abs=1e-8)
    assert scores.dci_completeness(matrix) == pytest.approx(completeness, abs=1e-8)


def test_modularity_of_an_explicit_information_matrix() -> None:
    information = np.array([[0.5, 0.0, 0.0], [0.4, 0.2, 0.2], [0.0, 0.0, 0.0]])
    unit_2 = 1 - (0.2**2 + 0.2**2) / (0.4**2 * 2)
    expected = (1.0 + unit_2 + 0.0) / 3  # a unit without information counts 0
    assert scores.modularity_of_information(information) == pytest.approx(expected)


def test_sap_of_factors_is_one_minus_the_second_units_accuracy() -> None:
    train_factors, test_factors = _factors(300, 2), _factors(200, 3)
    train, test = _identity(train_factors), _identity(test_factors)
    matrix = scores.sap_score_matrix(train, train_factors, test, test_factors)
    assert (np.diag(matrix) == 1.0).all()  # each unit predicts its own factor perfectly
    second = np.sort(matrix, axis=0)[-2]
    assert scores.sap(train, train_factors, test, test_factors) == pytest.approx(
        np.mean(1.0 - second)
    )


def _intervened(represent) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    kwargs = {"batch_size": 16, "train_points": 200, "eval_points": 200}
    beta = scores.beta_vae_score(represent, SIZES, rng, **kwargs)
    factor, _ = scores.factor_vae_score(represent, SIZES, rng, variance_points=500, **kwargs)
    return beta, factor


def test_intervention_scores_are_perfect_on_factors_lower_when_rotated_at_chance_on_noise() -> None:
    assert _intervened(_identity) == (1.0, 1.0)
    for score in _intervened(_rotated):
        assert score < 0.8  # some factors still have a unit of their own
    chance = 1 / len(SIZES)
    for score in (*_intervened(_mixed), *_intervened(_noise)):
        assert score == pytest.approx(chance, abs=0.1)


def test_factor_vae_counts_collapsed_units_out_and_scores_none_left_zero() -> None:
    def with_dead_unit(factors: np.ndarray) -> np.ndarray:
        return np.concatenate([_identity(factors), np.zeros((len(factors), 1))], axis=1)

    rng = np.random.default_rng(0)
    # batches of 16: another binary factor is constant over a batch with probability 2^-15
    kwargs = {"batch_size": 16, "train_points": 50, "eval_points": 50, "variance_points": 100}
    assert scores.factor_vae_score(with_dead_unit, SIZES, rng, **kwargs) == (1.0, 4)
    dead = scores.factor_vae_score(lambda f: np.zeros((len(f), 2)), SIZES, rng, **kwargs)
    assert dead == (0.0, 0)


def test_scores_without_a_value_say_why() -> None:
    factors = _factors(50, 0)
    with pytest.raises(scores.ScoreUndefined, match="at least 2"):
        scores.mig(factors[:, :1].astype(float), factors)
    with pytest.raises(scores.ScoreUndefined, match="constant"):
        scores.mig(factors.astype(float), np.zeros_like(factors))
    with pytest.raises(scores.ScoreUndefined, match="finite"):
        scores.check_codes(np.array([[0.0, math.nan]]))


# The plugins, on a stand-in model whose code is the factors of its input.


class FactorLookup(nn.Module):
    """Encodes an image as the factors that rendered it (found in a table of every combination)."""

    def __init__(self, data: Data) -> None:
        super().__init__()
        sizes = data.info.factor_sizes
        assert sizes is not None and data.render is not None
        every = torch.stack(torch.unravel_index(torch.arange(math.prod(sizes)), sizes), dim=1)
        self.register_buffer("images", data.render(every).flatten(1))
        self.register_buffer("factors", every.float())

    def encode(self, x: Tensor) -> Tensor:
        distance = torch.cdist(x.flatten(1), self.images)
        return self.factors[distance.argmin(dim=1)]


FAST = {
    "beta_vae_score": {"batch_size": 16, "train_points": 150, "eval_points": 100},
    "factor_vae_score": {
        "batch_size": 16,
        "train_points": 150,
        "eval_points": 100,
        "variance_points": 400,
    },
    "mig": {"points": 400},
    "modularity": {"points": 400},
    "sap": {"train_points": 300, "test_points": 100},
    "dci": {"train_points": 200, "test_points": 100},
    "explicitness": {"train_points": 300, "test_points": 100},
}


def _context(model: nn.Module, data: Data) -> MetricContext:
    return MetricContext(
        model=model,
        data=data,
        settings={},
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(1),
    )


def test_the_plugins_score_a_code_of_the_factors_at_the_maximum() -> None:
    data = shapes_small()
    context = _context(FactorLookup(data), data)
    values = {}
    for name, metric in DISENTANGLEMENT_METRICS.items():
        measured = metric.measure(context, **FAST[name])
        assert measured.reason == "", name
        values |= measured.values
    for name in ("beta_vae_score", "factor_vae_score", "dci_informativeness"):
        assert values[name] == 1.0, name
    assert values["factor_vae_active_units"] == 4
    for name in ("modularity", "dci_disentanglement", "dci_completeness"):
        assert values[name] > 0.99, name
    # A logistic probe's AUC from 300 train points: 0.988-0.994 over six draws of the data.
    assert values["explicitness"] > 0.98
    assert values["mig"] > 0.85  # 400 samples of up to 8 values: a finite-sample MI bias
    assert values["sap"] > 0.3


def test_data_without_factors_or_rendering_gives_nan_with_the_reason() -> None:
    factored = shapes_small(n_train=40, n_test=20)
    info = DataInfo(shape=factored.info.shape, kind="binary")
    plain = Data(info, Split(factored.train.x), Split(factored.test.x))
    cannot_render = Data(factored.info, factored.train, factored.test)
    model = FactorLookup(factored)
    for name, metric in DISENTANGLEMENT_METRICS.items():
        measured = metric.measure(_context(model, plain), **FAST[name])
        assert all(math.isnan(v) for v in measured.values.values()), name
        assert measured.reason == "the data has no ground-truth factors"
    for name in ("beta_vae_score", "factor_vae_score"):
        measured = DISENTANGLEMENT_METRICS[name].measure(_context(model, cannot_render))
        assert measured.reason == "the dataset cannot render samples of given factor values"


def test_non_finite_codes_give_nan_with_the_reason() -> None:
    data = shapes_small(n_train=40, n_test=20)

    class Broken(nn.Module):
        def encode(self, x: Tensor) -> Tensor:
            return torch.full((len(x), 2), math.nan)

    measured = DISENTANGLEMENT_METRICS["mig"].measure(_context(Broken(), data), points=20)
    assert math.isnan(measured.values["mig"])
    assert measured.reason == "the codes are not all finite"


@pytest.mark.slow
def test_a_suite_measures_the_factors_of_its_data(tmp_path: Path) -> None:
    shapes = entry("shapes-small", n_train=128, n_test=64)
    beta_vae = {"batch_size": 8, "train_points": 40, "eval_points": 20}
    suite = build_suite(
        entry("vae", hidden=[16], latent_dim=3),
        name="factors",
        datasets=[shapes],
        epochs=1,
        metrics=["mig", "beta_vae_score"],
        eval={"beta_vae_score": beta_vae},
    )
    run = aebench.run_suite(suite, output=tmp_path / "out")
    (row,) = run.rows
    assert row["status"] == "ok"
    assert row["metric_errors"] == "" and "mig" not in row["nan_reasons"]
    assert 0 <= row["mig"] <= 1 and 0 <= row["beta_vae_score"] <= 1


class RandomLinearCode(nn.Module):
    """An untrained linear encoder to 3 code units: some mix of the factors, and not all of it."""

    def __init__(self, data: Data) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(math.prod(data.info.shape), 3)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))


def test_every_metric_keeps_the_metric_contract_and_repeats_from_its_seed() -> None:
    data = shapes_small(n_train=200, n_test=100)
    contexts = [_context(RandomLinearCode(data), data)]
    for name, metric in DISENTANGLEMENT_METRICS.items():
        check_metric(metric, params=FAST[name], contexts=contexts)


def test_beta_vae_fits_as_disentanglement_lib_does_by_default_to_convergence_on_request() -> None:
    """disentanglement_lib fits ``LogisticRegression(random_state=...)``: scikit-learn's default
    100 iterations, short of convergence on a code whose units differ in scale; both fits are
    checked against scikit-learn's own on the same points."""
    from sklearn.linear_model import LogisticRegression

    def scaled_rotation(factors: np.ndarray) -> np.ndarray:  # units 1 to 1000: a slow fit
        return _rotated(factors) * np.array([1.0, 10.0, 100.0, 1000.0])

    kwargs = {"batch_size": 16, "train_points": 400, "eval_points": 400}
    by_fit = {}
    for fit, iterations in (("reference", 100), ("converged", 1000)):
        rng = np.random.default_rng(0)
        by_fit[fit] = scores.beta_vae_score(scaled_rotation, SIZES, rng, fit=fit, **kwargs)
        rng = np.random.default_rng(0)  # the same points, fitted by scikit-learn directly
        train = scores.beta_vae_points(scaled_rotation, SIZES, 400, 16, rng)
        held_out = scores.beta_vae_points(scaled_rotation, SIZES, 400, 16, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = LogisticRegression(max_iter=iterations).fit(*train).score(*held_out)
        assert by_fit[fit] == expected
    default = scores.beta_vae_score(scaled_rotation, SIZES, np.random.default_rng(0), **kwargs)
    assert default == by_fit["reference"] != by_fit["converged"]


def _sized(n_train: int, n_test: int) -> Data:
    """Data of the given split sizes: what the protocol sizes are derived from."""
    info = DataInfo(shape=(1,), kind="real")
    return Data(info, Split(torch.zeros(n_train, 1)), Split(torch.zeros(n_test, 1)))


def _derived(data: Data) -> dict[str, dict[str, int]]:
    unset = {metric: dict.fromkeys(names) for metric, names in plugin.SIZES.items()}
    return {metric: protocol_sizes(metric, data, **given) for metric, given in unset.items()}


LIBRARY = {  # disentanglement_lib's protocol sizes (its metric configs)
    "beta_vae_score": {"train_points": 10_000, "eval_points": 5_000},
    "factor_vae_score": {"train_points": 10_000, "eval_points": 5_000, "variance_points": 10_000},
    "mig": {"points": 10_000},
    "modularity": {"points": 10_000},
    "sap": {"train_points": 10_000, "test_points": 5_000},
    "dci": {"train_points": 10_000, "test_points": 5_000},
    "explicitness": {"train_points": 10_000, "test_points": 5_000},
}


def test_unset_sizes_shrink_with_the_data_up_to_disentanglement_libs() -> None:
    small, dsprites_3000, large = (
        _sized(300, 100),
        _derived(_sized(3_000, 2_000)),
        _sized(10**6, 10**5),
    )
    assert dsprites_3000["beta_vae_score"] == {"train_points": 1_000, "eval_points": 500}
    assert dsprites_3000["factor_vae_score"]["variance_points"] == 3_000
    assert dsprites_3000["dci"] == {"train_points": 1_000, "test_points": 2_000}
    assert dsprites_3000["mig"] == {"points": 2_000}
    assert dsprites_3000["sap"] == {"train_points": 3_000, "test_points": 2_000}
    assert _derived(large) == LIBRARY  # large data: disentanglement_lib's protocol
    for metric, sizes in _derived(small).items():  # the smaller the data, the smaller the sizes
        for name, size in sizes.items():
            assert 2 <= size <= dsprites_3000[metric][name] <= LIBRARY[metric][name], (metric, name)
    # points read from a split: no more than it has; rendered ones: no fewer than a floor
    assert _derived(small)["dci"] == {"train_points": 300, "test_points": 100}
    assert _derived(small)["beta_vae_score"] == {"train_points": 500, "eval_points": 250}


def test_explicit_sizes_are_used_as_given() -> None:
    data = _sized(3_000, 2_000)
    assert protocol_sizes("beta_vae_score", data, **LIBRARY["beta_vae_score"]) == {
        "train_points": 10_000,
        "eval_points": 5_000,
    }
    # points read from a split: the split's first ones, as many as it has
    assert protocol_sizes("dci", data, **LIBRARY["dci"]) == {
        "train_points": 3_000,
        "test_points": 2_000,
    }


@pytest.mark.slow  # every disentanglement metric at two sizes: 7 s
def test_the_sizes_used_are_columns_and_an_explicit_size_scores_as_before() -> None:
    data = shapes_small(n_train=200, n_test=100)
    model = RandomLinearCode(data)
    context = _context(model, data)

    def measure(name: str, **params: int) -> dict[str, float]:
        with torch.no_grad():  # as the core measures
            return DISENTANGLEMENT_METRICS[name].measure(context, **params).values

    assert measure("mig")["mig_points"] == 100  # unset: the test split whole
    assert measure("dci")["dci_train_points"] == 200  # a third, at least 500: all 200
    given = measure("dci", train_points=150, test_points=80)
    assert (given["dci_train_points"], given["dci_test_points"]) == (150, 80)
    # independently: the trees of the first 150 train and 80 test codes, at the trial's seed
    with torch.no_grad():
        train, test = (model.encode(split.x).double().numpy() for split in (data.train, data.test))
    assert data.train.factors is not None and data.test.factors is not None
    importance, accuracy = scores.gbt_importance(
        train[:150],
        data.train.factors[:150].numpy(),
        test[:80],
        data.test.factors[:80].numpy(),
        seed=context.generator.initial_seed() % 2**32,
    )
    assert given["dci_informativeness"] == accuracy
    assert given["dci_disentanglement"] == scores.dci_disentanglement(importance)
    beta_vae = measure("beta_vae_score", **FAST["beta_vae_score"])
    assert (beta_vae["beta_vae_train_points"], beta_vae["beta_vae_eval_points"]) == (150, 100)


def test_a_row_measured_at_the_old_default_sizes_is_measured_again(write_suite) -> None:
    """The defaults changed from disentanglement_lib's integers to sizes derived from the data: a
    row measured before (its settings hold the integers) is measured again; one of a suite that
    sets those integers is kept."""
    plugins = aebench.load_plugins()
    shapes = entry("shapes-small", n_train=128, n_test=64)
    old_settings = {f"eval.dci.{k}": v for k, v in LIBRARY["dci"].items()}
    entry_ = plugins.metrics.get("dci")
    earlier = {
        "status": "ok",
        "eval.metrics": '["dci"]',
        **old_settings,
        "dci_disentanglement": 0.5,
        "dci_completeness": 0.5,
        "dci_informativeness": 0.5,
        f"version.{entry_.distribution}": entry_.version,
    }
    for given, kept in ((None, False), (LIBRARY["dci"], True)):
        suite = build_suite(
            datasets=[shapes], metrics=["dci"], eval={"dci": given} if given else None
        )
        trial = load_suite(write_suite(suite), plugins).trials[0]
        assert ("dci" in unchanged_metrics(trial, earlier, plugins)) is kept, given
