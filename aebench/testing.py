"""Conformance checks for plugin authors, to call from their own tests.

In the manner of scikit-learn's ``check_estimator``::

    from aebench.testing import check_model
    from my_package.models import MyModel

    def test_my_model_keeps_the_contract():
        check_model(MyModel)

Each check raises ``AssertionError`` (or ``aebench.checks.ContractError``) saying what is wrong.
``check_model`` and the checks it runs live in ``aebench.model_conformance``, ``check_observer``
in ``aebench.testing_observer``, the tiny models and data the checks run on in
``aebench.testing_fixtures``; the checks of the other kinds live here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from aebench.contract.checks import (
    ContractError,
    check_metric_reasons,
    check_metric_values,
    check_penalty,
)
from aebench.contract.data import Data, DataInfo
from aebench.contract.data_checks import check_data
from aebench.contract.metric import Metric, MetricContext
from aebench.contract.model import Regularizer
from aebench.model_conformance import (
    check_auxiliary,
    check_each_player,
    check_ex_post,
    check_gradients_flow,
    check_model,
    check_training_lowers_the_loss,
    sample_batch,
)
from aebench.plugins.manager import Plugins, load_plugins
from aebench.plugins.params import params_model
from aebench.run.nan_reasons import NO_REASON, column_reasons
from aebench.testing_fixtures import (
    _factor_data,
    _LinearAutoencoder,
    _metric_data,
    _TinyGaussianVAE,
)
from aebench.testing_observer import check_observer

SMALL_IMAGES = DataInfo(shape=(1, 8, 8), kind="unit")


def check_regularizer(
    factory: Callable[..., Regularizer],
    *,
    params: Mapping[str, Any] | None = None,
    model: nn.Module | None = None,
    info: DataInfo = SMALL_IMAGES,
) -> None:
    """Corruption keeps shape and dtype; the penalty is a finite scalar or one number per sample
    and carries gradients to the model; ``decline`` gives None or a reason."""
    regularizer = factory(**dict(params or {}))
    assert isinstance(regularizer, Regularizer), "a regularizer must subclass aebench.Regularizer"
    torch.manual_seed(0)
    model = model if model is not None else _LinearAutoencoder(info)
    reason = regularizer.decline(model, info)
    assert reason is None or (isinstance(reason, str) and reason), "decline: None or a reason"
    if reason:
        return
    x = sample_batch(info)
    corrupted = regularizer.corrupt(x, torch.Generator().manual_seed(0))
    assert corrupted.shape == x.shape and corrupted.dtype == x.dtype, "corrupt changed the shape"
    out = model(corrupted)
    check_penalty(regularizer, corrupted, out, model)
    penalty = regularizer.penalty(corrupted, out, model)
    assert torch.isfinite(penalty).all(), "the penalty is not finite"
    if penalty.detach().abs().sum() > 0:
        model.zero_grad(set_to_none=True)
        penalty.mean().backward()
        assert any(p.grad is not None for p in model.parameters()), (
            "the penalty carries no gradient to the model"
        )


def check_dataset(factory: Callable[..., Data], *, params: Mapping[str, Any] | None = None) -> None:
    """The data as the core checks it where it enters a run (``check_data``: float32 splits of the
    declared shape and kind, labels and factors in range, ``log_density`` one finite number per
    sample and ``render`` deterministic float32 samples agreeing with the splits, on both the
    training and test splits), unit data on its declared levels, identical when loaded twice."""
    data = factory(**dict(params or {}))
    assert isinstance(data, Data), f"a dataset factory returns aebench.Data, not {type(data)}"
    check_data(data)
    again = factory(**dict(params or {}))
    splits = {"train": data.train, "test": data.test, "val": data.val}
    for name, split in splits.items():
        if split is None:
            continue
        x = split.x
        if name == "train" and data.batch_transform is not None:  # dynamic: binary as drawn
            x = data.batch_transform(x, torch.Generator().manual_seed(0))
        if data.info.kind == "unit" and data.info.levels is not None:
            steps = x * (data.info.levels - 1)  # a likelihood over the levels must hold the data
            off = (steps - steps.round()).abs().max().item()
            assert off < 1e-4, f"{name}.x is not on the grid of {data.info.levels} levels"
        twin = getattr(again, name)
        assert torch.equal(split.x, twin.x), f"{name} differs between two loads: not deterministic"


FACTOR_REQUIREMENTS = ("ground-truth factors", "rendering from factors")


def check_metric(
    metric: Metric,
    *,
    params: Mapping[str, Any] | None = None,
    contexts: Iterable[MetricContext] | None = None,
    plugins: Plugins | None = None,
) -> None:
    """A metric keeps the contract: it is an ``aebench.Metric``; none of its columns is written by
    an installed metric (``plugins``, default ``load_plugins()``) other than itself; its
    parameters form a valid schema (and ``params`` validate against it); on a deterministic
    autoencoder and on a latent-variable model, with labelled and unlabelled data, and data of
    known factors that it can render where the metric needs factors (or on the ``contexts``
    given), it returns exactly its declared columns as numbers wherever its requirements are
    met (a NaN among them with its reason: ``aebench.Measurement``), and the same numbers again
    from the same seed (noisy columns aside)."""
    assert isinstance(metric, Metric), "register an aebench.Metric(compute, columns=[...])"
    check_no_collision(metric, plugins if plugins is not None else load_plugins())
    schema = params_model("metric", metric.compute, skip_first=True)
    resolved = schema.model_validate(dict(params or {})).model_dump()
    if contexts is None:
        datasets = [_metric_data(labelled=True), _metric_data(labelled=False)]
        if any(need in FACTOR_REQUIREMENTS for need in metric.requires):
            datasets.append(_factor_data())
        contexts = [
            _metric_context(model, data)
            for model in (_LinearAutoencoder, _TinyGaussianVAE)
            for data in datasets
        ]
    steady = [c.name for c in metric.columns if not c.noisy]
    measured = 0
    for context in contexts:
        with torch.no_grad():
            measurement = metric.measure(context, **resolved)
            if measurement.reason:  # a requirement unmet, or NotApplicable from compute
                continue
            first = check_metric_values(metric, measurement.values)
            reasons = column_reasons(first, check_metric_reasons(first, measurement.reasons))
            unexplained = [column for column, why in reasons.items() if why == NO_REASON]
            assert not unexplained, (
                f"{', '.join(unexplained)}: NaN without a reason; return an"
                " aebench.Measurement(values, reasons={column: why})"
            )
            context.generator.manual_seed(context.generator.initial_seed())
            again = check_metric_values(metric, metric.measure(context, **resolved).values)
        for name in steady:
            same = first[name] == again[name] or (
                math.isnan(first[name]) and math.isnan(again[name])
            )
            assert same, (
                f"{name} differs between two runs from one seed: {first[name]} vs {again[name]}"
            )
        measured += 1
    assert measured, (
        f"the metric applied to none of the models and data it was given ({metric.requires})"
    )


def check_no_collision(metric: Metric, plugins: Plugins) -> None:
    """No column of ``metric`` is written by another installed metric: installed beside it, the
    later registration would be dropped. The installed metric that is ``metric`` itself (the same
    object, or the same ``compute``) is no collision."""
    for entry in plugins.metrics:
        installed = entry.factory
        if installed is metric or getattr(installed, "compute", None) is metric.compute:
            continue
        shared = set(metric.column_names) & set(getattr(installed, "column_names", ()))
        assert not shared, (
            f"a column is written by one metric alone: {', '.join(sorted(shared))} is already"
            f" written by the installed {entry.origin}; rename the column"
        )


def _metric_context(model_class: type[nn.Module], data: Data) -> MetricContext:
    torch.manual_seed(0)
    model = model_class(data.info).eval()
    return MetricContext(
        model=model,
        data=data,
        settings={"metrics": None, "params": {}},
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        training={"train_s": 1.0, "train_samples_per_s": 100.0, "peak_mem_mb": 0.0},
    )


__all__ = [
    "ContractError",
    "check_auxiliary",
    "check_dataset",
    "check_each_player",
    "check_ex_post",
    "check_gradients_flow",
    "check_metric",
    "check_model",
    "check_observer",
    "check_regularizer",
    "check_training_lowers_the_loss",
    "sample_batch",
]
