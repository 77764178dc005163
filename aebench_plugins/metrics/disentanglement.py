"""Disentanglement metrics: how the model's code lines up with the data's ground-truth factors.

Each reads the deterministic code (``model.encode``: a VAE's posterior mean) and needs data with
factors (``Split.factors``); NaN with the reason on data without them. The BetaVAE and FactorVAE
scores intervene: they render batches with one factor held fixed (``Data.render``). The others
fit on the train split's codes and factors and score on the test split's (MIG and modularity need
no fit: test split only), using the first ``train_points`` / ``test_points`` samples of each,
which are already random draws. Their defaults are disentanglement_lib's protocol parameters.
The scores themselves are in ``disentanglement_scores``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

import numpy as np
import torch
from pydantic import Field
from threadpoolctl import threadpool_limits

from aebench import Column, Metric, MetricContext, NotApplicable, Split
from aebench_plugins.metrics import disentanglement_scores as scores
from aebench_plugins.metrics.codes import encode_batched, split_codes
from aebench_plugins.metrics.groups import disentanglement_column

RENDER_BATCH = 4096  # factor combinations rendered and encoded at a time: bounds the images held
Points = Annotated[int, Field(ge=2)]
Bins = Annotated[int, Field(ge=2)]
Result = TypeVar("Result")


def _seed(context: MetricContext) -> int:
    return context.generator.initial_seed() % 2**32


def _measured(compute: Callable[[], Result]) -> Result:
    """``compute()`` on one scikit-learn thread (small fits; competing OpenMP threads slow a busy
    machine down), a score without a value for these codes made NaN with its reason."""
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
    codes = split_codes(context, split)[:points].double().cpu().numpy()
    _measured(lambda: scores.check_codes(codes))
    return codes, split.factors[:points].cpu().numpy()


def _represent(context: MetricContext) -> scores.Represent:
    """Factor values -> the codes of the samples the dataset renders from them."""
    render = context.data.render
    assert render is not None  # the metric requires "rendering from factors"

    def represent(factors: np.ndarray) -> np.ndarray:
        values = torch.as_tensor(factors, dtype=torch.long, device=context.device)
        codes = torch.cat(
            [
                encode_batched(context.model, render(part)).double()
                for part in values.split(RENDER_BATCH)
            ]
        )
        codes_np = codes.cpu().numpy()
        scores.check_codes(codes_np)
        return codes_np

    return represent


def _sizes(context: MetricContext) -> tuple[int, ...]:
    sizes = context.data.info.factor_sizes
    assert sizes is not None  # the metric requires "ground-truth factors"
    return sizes


def _intervening(
    context: MetricContext,
    score: Callable[..., Result],
    batch_size: int,
    train_points: int,
    eval_points: int,
    **parameters: object,
) -> Result:
    """``score`` (``scores.beta_vae_score`` or ``scores.factor_vae_score``) of the model's codes of
    the renders it asks for, its draws seeded by the trial, under the shared protocol; the score's
    own ``parameters`` passed on."""
    rng = np.random.default_rng(_seed(context))
    protocol = scores.Protocol(
        batch_size=batch_size, train_points=train_points, eval_points=eval_points
    )
    return _measured(
        lambda: score(_represent(context), _sizes(context), rng, **parameters, **protocol)
    )


def beta_vae_score(
    context: MetricContext,
    batch_size: Points = 64,
    train_points: Points = 10_000,
    eval_points: Points = 5_000,
    fit: scores.BetaVaeFit = "reference",
) -> dict[str, float]:
    """BetaVAE score (Higgins et al. 2017): accuracy of a linear classifier naming the fixed factor.

    Each point: two batches of ``batch_size`` renders sharing one factor's values; the mean
    absolute difference of their codes. A logistic regression fit on ``train_points`` points,
    scored on ``eval_points`` fresh ones. ``fit = "reference"`` (the default) is
    disentanglement_lib's protocol, the fit stopped at scikit-learn's default 100 iterations,
    comparable with published scores; ``fit = "converged"`` runs it to 1000 iterations (on a
    rotated code a few hundredths higher).
    """
    score = _intervening(
        context, scores.beta_vae_score, batch_size, train_points, eval_points, fit=fit
    )
    return {"beta_vae_score": score}


def factor_vae_score(
    context: MetricContext,
    batch_size: Points = 64,
    train_points: Points = 10_000,
    eval_points: Points = 5_000,
    variance_points: Points = 10_000,
    prune_threshold: Annotated[float, Field(ge=0)] = 0.05,
) -> dict[str, float]:
    """FactorVAE score (Kim & Mnih 2018): majority vote of the least-varying code unit.

    Each vote: a batch of ``batch_size`` renders with one factor held; the unit of least variance
    (scaled by its variance over ``variance_points`` samples) votes for it. Units with a standard
    deviation below ``prune_threshold`` are left out; none left: 0.
    """
    score, active = _intervening(
        context,
        scores.factor_vae_score,
        batch_size,
        train_points,
        eval_points,
        variance_points=variance_points,
        prune_threshold=prune_threshold,
    )
    return {"factor_vae_score": score, "factor_vae_active_units": float(active)}


def mig(context: MetricContext, points: Points = 10_000, bins: Bins = 20) -> dict[str, float]:
    """Mutual information gap (Chen et al. 2018), test codes in ``bins`` histogram bins.

    Per factor: (MI of the best code unit - MI of the second) / the factor's entropy; averaged.
    """
    codes, factors = _codes_and_factors(context, context.data.test, points)
    return {"mig": _measured(lambda: scores.mig(codes, factors, bins))}


def modularity(
    context: MetricContext, points: Points = 10_000, bins: Bins = 20
) -> dict[str, float]:
    """Modularity (Ridgeway & Mozer 2018): each code unit's MI concentrated on one factor.

    Test codes in ``bins`` histogram bins; averaged over code units.
    """
    codes, factors = _codes_and_factors(context, context.data.test, points)
    return {"modularity": _measured(lambda: scores.modularity(codes, factors, bins))}


def _fit_and_test(
    context: MetricContext, train_points: int, test_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train = _codes_and_factors(context, context.data.train, train_points)
    test = _codes_and_factors(context, context.data.test, test_points)
    return (*train, *test)


def explicitness(
    context: MetricContext, train_points: Points = 10_000, test_points: Points = 5_000
) -> dict[str, float]:
    """Explicitness (Ridgeway & Mozer 2018): ROC AUC of a logistic regression of each factor.

    Fit on the standardised train codes, scored on test; mean over values and factors.
    """
    arrays = _fit_and_test(context, train_points, test_points)
    return {"explicitness": _measured(lambda: scores.explicitness(*arrays))}


def sap(
    context: MetricContext, train_points: Points = 10_000, test_points: Points = 5_000
) -> dict[str, float]:
    """SAP score (Kumar et al. 2018): gap between the two code units that best predict a factor.

    A linear SVM per (unit, factor), fit on train, its test accuracy; averaged over factors.
    """
    arrays = _fit_and_test(context, train_points, test_points)
    return {"sap": _measured(lambda: scores.sap(*arrays))}


def dci(
    context: MetricContext, train_points: Points = 10_000, test_points: Points = 5_000
) -> dict[str, float]:
    """DCI (Eastwood & Williams 2018) from gradient-boosted trees' feature importances.

    Disentanglement (each unit explains one factor), completeness (each factor explained by one
    unit), informativeness (the trees' mean test accuracy); fit on train, tested on test.
    """
    arrays = _fit_and_test(context, train_points, test_points)
    importance, accuracy = _measured(lambda: scores.gbt_importance(*arrays, seed=_seed(context)))
    return {
        "dci_disentanglement": scores.dci_disentanglement(importance),
        "dci_completeness": scores.dci_completeness(importance),
        "dci_informativeness": accuracy,
    }


FACTORS = ("ground-truth factors",)
INTERVENTIONS = ("ground-truth factors", "rendering from factors")
FLOOR = 0.02  # scores in [0, 1]: a change compare tolerates


def _score(name: str, description: str, headline: bool = False) -> Column:
    return disentanglement_column(
        name, "higher", floor=FLOOR, description=description, headline=headline
    )


def _one_score(
    factory: Callable[..., dict[str, float]],
    description: str,
    requires: tuple[str, ...] = FACTORS,
    headline: bool = False,
    cost: Literal["cheap", "expensive"] = "cheap",
) -> Metric:
    """The metric of one score column, named as its ``factory``."""
    column = _score(factory.__name__, description, headline)
    return Metric(factory, columns=[column], requires=requires, cost=cost)


DISENTANGLEMENT_METRICS = {
    "beta_vae_score": _one_score(
        beta_vae_score,
        "accuracy naming the fixed factor",
        requires=INTERVENTIONS,
        cost="expensive",  # 5.5 s on shapes-small: classifiers on rendered interventions
    ),
    "factor_vae_score": Metric(
        factor_vae_score,
        columns=[
            _score("factor_vae_score", "majority-vote accuracy naming the fixed factor"),
            disentanglement_column(
                "factor_vae_active_units", description="code units with std >= prune_threshold"
            ),
        ],
        requires=INTERVENTIONS,
        cost="expensive",  # 2.7 s on shapes-small
    ),
    "mig": _one_score(mig, "mutual information gap, over the factor's entropy", headline=True),
    "sap": _one_score(sap, "gap in linear-SVM accuracy"),
    "dci": Metric(
        dci,
        columns=[
            _score("dci_disentanglement", "each code unit explains one factor"),
            _score("dci_completeness", "each factor explained by one code unit"),
            _score("dci_informativeness", "gradient-boosted trees' test accuracy"),
        ],
        requires=FACTORS,
        cost="expensive",  # 2.4 s on shapes-small: gradient-boosted trees per factor
    ),
    "modularity": _one_score(modularity, "each code unit's information on one factor"),
    "explicitness": _one_score(explicitness, "ROC AUC of a logistic regression per factor"),
}
