"""Disentanglement metrics: how the model's code lines up with the data's ground-truth factors.

Each reads the deterministic code (``model.encode``: a VAE's posterior mean) and needs data with
factors (``Split.factors``); NaN with the reason on data without them. The BetaVAE and FactorVAE
scores intervene: they render batches with one factor held fixed (``Data.render``). The others
fit on the train split's codes and factors and score on the test split's (MIG and modularity need
no fit: test split only), using the first ``train_points`` / ``test_points`` samples of each,
which are already random draws. The scores themselves are in ``disentanglement_scores``.

Protocol sizes suited to the data: a size left unset (None, the default) is derived from the
data (``SIZES``), with disentanglement_lib's protocol size as its cap; an integer is used as
given, so that ``train_points = 10000`` in a suite is disentanglement_lib's protocol. The sizes
used are columns of their own (``dci_train_points``, ...), so that a score says what it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

import numpy as np
import torch
from pydantic import Field
from threadpoolctl import threadpool_limits

from aebench import Column, Data, Measurement, Metric, MetricContext, NotApplicable, Split
from aebench_plugins.metrics import disentanglement_scores as scores
from aebench_plugins.metrics.codes import EVAL_BATCH, encode_batched
from aebench_plugins.metrics.groups import disentanglement_column

RENDER_BATCH = 4096  # factor combinations rendered and encoded at a time: bounds the images held
# Renders encoded at a time: fewer than EVAL_BATCH (1,024), because a conv-vae encoded 8,192
# dSprites renders in 2.1 s at 1,024 a batch and 0.55 s at 128 (2 threads, measured): 1,024's
# activations (134 MB out of its first convolution) are fresh memory, out of cache, every batch.
# The codes differ from those of 1,024 a batch in float32 rounding only (up to 1.2e-6).
ENCODE_BATCH = 128
Points = Annotated[int, Field(ge=2)]
Size = Points | None  # None: a size derived from the data (``SIZES``)
Bins = Annotated[int, Field(ge=2)]
Result = TypeVar("Result")
SplitName = Literal["train", "test"]

# Each size left unset: derived from a split's size (which split, and how), capped at
# disentanglement_lib's protocol size for it (its metric configs: 10,000 train points and 5,000
# evaluation or test points; the FactorVAE score's variance over 10,000 samples; MIG on 10,000).
# The splits' own points are read whole up to the cap, except DCI's train points: its
# gradient-boosted trees (one per factor value and stage: 113 a stage on dSprites) take a third
# of the train split, at least 500 points. The scores that intervene render their points, as many
# as a third (train) and a sixth (evaluation) of the train split's size, at least 500 and 250:
# each point renders 128 images (BetaVAE) or 64 (FactorVAE), so they encode about 64 and 33 times
# the train split's size; disentanglement_lib's sizes are reached from 30,000 training images.
# Fewer train points lower the scores of a weak code (the BetaVAE score of a one-epoch VAE on
# 3,000 dSprites images, 1,000 evaluation points: 0.44 on 300 train points, 0.57 on 1,000, 0.58
# on 3,000): a third is where that curve flattens there.
SIZES: dict[str, dict[str, tuple[SplitName, scores.ProtocolSize]]] = {
    "beta_vae_score": {
        "train_points": ("train", scores.ProtocolSize(10_000, share=1 / 3, least=500, read=False)),
        "eval_points": ("train", scores.ProtocolSize(5_000, share=1 / 6, least=250, read=False)),
    },
    "factor_vae_score": {
        "train_points": ("train", scores.ProtocolSize(10_000, share=1 / 3, least=500, read=False)),
        "eval_points": ("train", scores.ProtocolSize(5_000, share=1 / 6, least=250, read=False)),
        "variance_points": (
            "train",
            scores.ProtocolSize(10_000, share=1.0, least=1_000, read=False),
        ),
    },
    "mig": {"points": ("test", scores.ProtocolSize(10_000))},
    "modularity": {"points": ("test", scores.ProtocolSize(10_000))},
    "sap": {
        "train_points": ("train", scores.ProtocolSize(10_000)),
        "test_points": ("test", scores.ProtocolSize(5_000)),
    },
    "dci": {
        "train_points": ("train", scores.ProtocolSize(10_000, share=1 / 3, least=500)),
        "test_points": ("test", scores.ProtocolSize(5_000)),
    },
    "explicitness": {
        "train_points": ("train", scores.ProtocolSize(10_000)),
        "test_points": ("test", scores.ProtocolSize(5_000)),
    },
}


def protocol_sizes(metric: str, data: Data, **given: int | None) -> dict[str, int]:
    """The sizes ``metric`` uses on ``data``: each given integer as it is (points read from a split
    are at most the split's), each None derived from the data (``SIZES``)."""
    sizes = {}
    for name, value in given.items():
        split, rule = SIZES[metric][name]
        n = len(getattr(data, split))
        if value is None:
            sizes[name] = rule.of(n)
        else:
            sizes[name] = min(value, n) if rule.read else value
    return sizes


def size_columns(metric: str) -> list[Column]:
    """The columns of the sizes ``metric`` used: ``<prefix>_<size>`` (``dci_train_points``)."""
    return [
        disentanglement_column(
            size_column(metric, name),
            description=f"{metric}'s {name} used (unset: derived from the data's size)",
        )
        for name in SIZES[metric]
    ]


def size_column(metric: str, size: str) -> str:
    return f"{metric.removesuffix('_score')}_{size}"


def _with_sizes(metric: str, values: dict[str, float], sizes: dict[str, int]) -> dict[str, float]:
    return values | {size_column(metric, name): float(n) for name, n in sizes.items()}


def _seed(context: MetricContext) -> int:
    return context.generator.initial_seed() % 2**32


def _threads() -> int:
    """The cores this trial may use: its torch threads (``[suite] threads``), read outside
    ``_measured``, which holds OpenMP, torch's included, to one thread."""
    return torch.get_num_threads()


def _measured(compute: Callable[[], Result]) -> Result:
    """``compute()`` on one scikit-learn thread (small fits; competing OpenMP threads slow a busy
    machine down), a score without a value for these codes made NaN with its reason. Work that
    wants more threads takes them back itself (``_represent``; DCI's fits run side by side)."""
    try:
        with threadpool_limits(limits=1):
            return compute()
    except scores.ScoreUndefined as exc:
        raise NotApplicable(str(exc)) from None


def _codes_and_factors(
    context: MetricContext, split: Split, points: int
) -> tuple[np.ndarray, np.ndarray]:
    """The codes and factors of the split's first ``points`` samples, as float64 / int64 arrays."""
    assert split.factors is not None  # the metric requires "ground-truth factors"
    if split is context.data.test:  # the trial's shared codes, encoded once for every metric
        codes = context.codes()[:points]
    else:  # the batches holding the first ``points`` only, encoded as a whole split's would be
        whole_batches = -(-points // EVAL_BATCH) * EVAL_BATCH
        codes = encode_batched(context.model, split.x[:whole_batches], EVAL_BATCH)[:points]
    codes = codes.double().cpu().numpy()
    _measured(lambda: scores.check_codes(codes))
    return codes, split.factors[:points].cpu().numpy()


def _represent(context: MetricContext, threads: int) -> scores.Represent:
    """Factor values -> the codes of the samples the dataset renders from them, rendered and
    encoded on ``threads`` torch threads: called inside ``_measured``, whose one OpenMP thread
    would otherwise run torch's convolutions on one core."""
    render = context.data.render
    assert render is not None  # the metric requires "rendering from factors"

    def represent(factors: np.ndarray) -> np.ndarray:
        values = torch.as_tensor(factors, dtype=torch.long, device=context.device)
        with threadpool_limits(limits=threads, user_api="openmp"):
            codes = torch.cat(
                [
                    encode_batched(context.model, render(part), ENCODE_BATCH).double()
                    for part in values.split(RENDER_BATCH)
                ]
            )
        codes_np = codes.cpu().numpy()
        scores.check_codes(codes_np)
        return codes_np

    return represent


def _factor_sizes(context: MetricContext) -> tuple[int, ...]:
    sizes = context.data.info.factor_sizes
    assert sizes is not None  # the metric requires "ground-truth factors"
    return sizes


def _intervening(
    context: MetricContext,
    score: Callable[..., Result],
    protocol: scores.Protocol,
    **parameters: object,
) -> Result:
    """``score`` (``scores.beta_vae_score`` or ``scores.factor_vae_score``) of the model's codes of
    the renders it asks for, its draws seeded by the trial, under the shared ``protocol``; the
    score's own ``parameters`` passed on."""
    rng = np.random.default_rng(_seed(context))
    represent = _represent(context, _threads())
    return _measured(
        lambda: score(represent, _factor_sizes(context), rng, **parameters, **protocol)
    )


def beta_vae_score(
    context: MetricContext,
    batch_size: Points = 64,
    train_points: Size = None,
    eval_points: Size = None,
    fit: scores.BetaVaeFit = "reference",
) -> dict[str, float]:
    """BetaVAE score (Higgins et al. 2017): accuracy of a linear classifier naming the fixed factor.

    Each point: two batches of ``batch_size`` renders sharing one factor's values; the mean
    absolute difference of their codes. A logistic regression fit on ``train_points`` points,
    scored on ``eval_points`` fresh ones (unset: a third and a sixth of the train split's size,
    at least 500 and 250, at most disentanglement_lib's 10,000 and 5,000). ``fit =
    "reference"`` (the default) is disentanglement_lib's protocol, the fit stopped at
    scikit-learn's default 100 iterations, comparable with published scores; ``fit =
    "converged"`` runs it to 1000 iterations (on a rotated code a few hundredths higher).
    """
    sizes = protocol_sizes(
        "beta_vae_score", context.data, train_points=train_points, eval_points=eval_points
    )
    protocol = scores.Protocol(
        batch_size=batch_size, train_points=sizes["train_points"], eval_points=sizes["eval_points"]
    )
    score = _intervening(context, scores.beta_vae_score, protocol, fit=fit)
    return _with_sizes("beta_vae_score", {"beta_vae_score": score}, sizes)


def factor_vae_score(
    context: MetricContext,
    batch_size: Points = 64,
    train_points: Size = None,
    eval_points: Size = None,
    variance_points: Size = None,
    prune_threshold: Annotated[float, Field(ge=0)] = 0.05,
) -> dict[str, float]:
    """FactorVAE score (Kim & Mnih 2018): majority vote of the least-varying code unit.

    Each vote: a batch of ``batch_size`` renders with one factor held; the unit of least variance
    (scaled by its variance over ``variance_points`` samples) votes for it. Units with a standard
    deviation below ``prune_threshold`` are left out; none left: 0. Unset sizes: as the BetaVAE
    score's, and ``variance_points`` the train split's size (1,000 to 10,000).
    """
    sizes = protocol_sizes(
        "factor_vae_score",
        context.data,
        train_points=train_points,
        eval_points=eval_points,
        variance_points=variance_points,
    )
    protocol = scores.Protocol(
        batch_size=batch_size, train_points=sizes["train_points"], eval_points=sizes["eval_points"]
    )
    score, active = _intervening(
        context,
        scores.factor_vae_score,
        protocol,
        variance_points=sizes["variance_points"],
        prune_threshold=prune_threshold,
    )
    values = {"factor_vae_score": score, "factor_vae_active_units": float(active)}
    return _with_sizes("factor_vae_score", values, sizes)


def mig(context: MetricContext, points: Size = None, bins: Bins = 20) -> dict[str, float]:
    """Mutual information gap (Chen et al. 2018), test codes in ``bins`` histogram bins.

    Per factor: (MI of the best code unit - MI of the second) / the factor's entropy; averaged.
    On the test split's first ``points`` (unset: all of it, at most 10,000).
    """
    sizes = protocol_sizes("mig", context.data, points=points)
    codes, factors = _codes_and_factors(context, context.data.test, sizes["points"])
    return _with_sizes("mig", {"mig": _measured(lambda: scores.mig(codes, factors, bins))}, sizes)


def modularity(context: MetricContext, points: Size = None, bins: Bins = 20) -> dict[str, float]:
    """Modularity (Ridgeway & Mozer 2018): each code unit's MI concentrated on one factor.

    Test codes in ``bins`` histogram bins; averaged over code units. On the test split's first
    ``points`` (unset: all of it, at most 10,000).
    """
    sizes = protocol_sizes("modularity", context.data, points=points)
    codes, factors = _codes_and_factors(context, context.data.test, sizes["points"])
    value = _measured(lambda: scores.modularity(codes, factors, bins))
    return _with_sizes("modularity", {"modularity": value}, sizes)


def _fit_and_test(
    context: MetricContext, metric: str, train_points: int | None, test_points: int | None
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], dict[str, int]]:
    """The train split's first codes and factors and the test split's, at ``metric``'s sizes;
    and those sizes."""
    sizes = protocol_sizes(metric, context.data, train_points=train_points, test_points=test_points)
    train = _codes_and_factors(context, context.data.train, sizes["train_points"])
    test = _codes_and_factors(context, context.data.test, sizes["test_points"])
    return (*train, *test), sizes


def explicitness(
    context: MetricContext, train_points: Size = None, test_points: Size = None
) -> dict[str, float]:
    """Explicitness (Ridgeway & Mozer 2018): ROC AUC of a logistic regression of each factor.

    Fit on the standardised train codes, scored on test; mean over values and factors. Unset
    sizes: the splits whole, at most 10,000 train and 5,000 test points.
    """
    arrays, sizes = _fit_and_test(context, "explicitness", train_points, test_points)
    value = _measured(lambda: scores.explicitness(*arrays))
    return _with_sizes("explicitness", {"explicitness": value}, sizes)


def sap(
    context: MetricContext, train_points: Size = None, test_points: Size = None
) -> dict[str, float]:
    """SAP score (Kumar et al. 2018): gap between the two code units that best predict a factor.

    A linear SVM per (unit, factor), fit on train, its test accuracy; averaged over factors.
    Unset sizes: the splits whole, at most 10,000 train and 5,000 test points.
    """
    arrays, sizes = _fit_and_test(context, "sap", train_points, test_points)
    return _with_sizes("sap", {"sap": _measured(lambda: scores.sap(*arrays))}, sizes)


def dci(context: MetricContext, train_points: Size = None, test_points: Size = None) -> Measurement:
    """DCI (Eastwood & Williams 2018) from gradient-boosted trees' feature importances.

    Disentanglement (each unit explains one factor), completeness (each factor explained by one
    unit), informativeness (the trees' mean test accuracy); fit on train, tested on test. Unset
    sizes: a third of the train split (at least 500 points, at most 10,000) and the test split
    whole (at most 5,000).
    """
    arrays, sizes = _fit_and_test(context, "dci", train_points, test_points)
    seed, workers = _seed(context), _threads()
    importance, accuracy = _measured(
        lambda: scores.gbt_importance(*arrays, seed=seed, workers=workers)
    )
    values, reasons = {"dci_informativeness": accuracy}, {}
    # one factor, or one code unit, leaves one of the two scores undefined, not the other
    for name, score in (
        ("dci_disentanglement", scores.dci_disentanglement),
        ("dci_completeness", scores.dci_completeness),
    ):
        try:
            values[name] = score(importance)
        except scores.ScoreUndefined as exc:
            values[name], reasons[name] = math.nan, str(exc)
    return Measurement(_with_sizes("dci", values, sizes), reasons=reasons)


FACTORS = ("ground-truth factors",)
INTERVENTIONS = ("ground-truth factors", "rendering from factors")
FLOOR = 0.02  # scores in [0, 1]: a change compare tolerates


def _score(name: str, description: str, headline: bool = False) -> Column:
    return disentanglement_column(
        name, "higher", floor=FLOOR, description=description, headline=headline
    )


def _metric(
    factory: Callable[..., dict[str, float]],
    columns: list[Column],
    requires: tuple[str, ...] = FACTORS,
    cost: Literal["cheap", "expensive"] = "cheap",
) -> Metric:
    """The metric named as its ``factory``: its ``columns``, then those of the sizes it used."""
    sized = [*columns, *size_columns(factory.__name__)]
    return Metric(factory, columns=sized, requires=requires, cost=cost)


DISENTANGLEMENT_METRICS = {
    "beta_vae_score": _metric(
        beta_vae_score,
        [_score("beta_vae_score", "accuracy naming the fixed factor")],
        requires=INTERVENTIONS,
        cost="expensive",  # 17.7 s (vae, 3,000 dSprites images, derived sizes, 2 cores): renders
    ),
    "factor_vae_score": _metric(
        factor_vae_score,
        [
            _score("factor_vae_score", "majority-vote accuracy naming the fixed factor"),
            disentanglement_column(
                "factor_vae_active_units", description="code units with std >= prune_threshold"
            ),
        ],
        requires=INTERVENTIONS,
        cost="expensive",  # 2.8 s (vae, 3,000 dSprites images, derived sizes, 2 cores)
    ),
    "mig": _metric(
        mig, [_score("mig", "mutual information gap, over the factor's entropy", headline=True)]
    ),
    "sap": _metric(sap, [_score("sap", "gap in linear-SVM accuracy")]),
    "dci": _metric(
        dci,
        [
            _score("dci_disentanglement", "each code unit explains one factor"),
            _score("dci_completeness", "each factor explained by one code unit"),
            _score("dci_informativeness", "gradient-boosted trees' test accuracy"),
        ],
        cost="expensive",  # 21.3 s there: gradient-boosted trees per factor value
    ),
    "modularity": _metric(
        modularity, [_score("modularity", "each code unit's information on one factor")]
    ),
    "explicitness": _metric(
        explicitness, [_score("explicitness", "ROC AUC of a logistic regression per factor")]
    ),
}
