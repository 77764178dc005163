"""Conformance checks for plugin authors, to call from their own tests.

In the manner of scikit-learn's ``check_estimator``::

    from aebench.testing import check_model
    from my_package.models import MyModel

    def test_my_model_keeps_the_contract():
        check_model(MyModel)

Each check raises ``AssertionError`` (or ``aebench.checks.ContractError``) saying what is wrong.
``check_model`` and the checks it runs live in ``aebench.model_conformance``; the checks of the
other kinds, and the tiny models and data they run on, live here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from aebench.contract.checks import ContractError, check_metric_values, check_penalty
from aebench.contract.data import Data, DataInfo, Split
from aebench.contract.hookspecs import hookimpl
from aebench.contract.metric import Metric, MetricContext
from aebench.contract.model import ModelOutput, Regularizer
from aebench.model_conformance import (
    check_auxiliary,
    check_each_player,
    check_ex_post,
    check_gradients_flow,
    check_model,
    check_training_lowers_the_loss,
    sample_batch,
)

SMALL_IMAGES = DataInfo(shape=(1, 8, 8), kind="unit")


class _LinearAutoencoder(nn.Module):
    """A tiny autoencoder with a sigmoid code, for checking regularizers, metrics and observers."""

    code_range = (0.0, 1.0)

    def __init__(self, info: DataInfo, latent_dim: int = 4) -> None:
        super().__init__()
        self.info = info
        size = math.prod(info.shape)
        self.encoder = nn.Linear(size, latent_dim)
        self.decoder = nn.Linear(latent_dim, size)

    def encode(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.encoder(x.flatten(1)))

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z)).view(-1, *self.info.shape)

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return (out.recon - x).pow(2).flatten(1).sum(1)


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
    """Splits of the declared shape, kind and labels, identical when loaded twice."""
    data = factory(**dict(params or {}))
    assert isinstance(data, Data), f"a dataset factory returns aebench.Data, not {type(data)}"
    again = factory(**dict(params or {}))
    splits = {"train": data.train, "test": data.test, "val": data.val}
    for name, split in splits.items():
        if split is None:
            continue
        x = split.x
        if name == "train" and data.batch_transform is not None:  # dynamic: binary as drawn
            x = data.batch_transform(x, torch.Generator().manual_seed(0))
        assert x.dtype == torch.float32, f"{name}.x is {x.dtype}, not float32"
        assert tuple(x.shape[1:]) == data.info.shape, f"{name}.x is {tuple(x.shape)}"
        assert len(x) > 0, f"{name} split is empty"
        if data.info.kind == "binary":
            assert set(x.unique().tolist()) <= {0.0, 1.0}, f"{name}.x is not binary"
        elif data.info.kind == "unit":
            assert x.min() >= 0 and x.max() <= 1, f"{name}.x leaves [0, 1]"
            if data.info.levels is not None:  # a likelihood over the levels must hold the data
                steps = x * (data.info.levels - 1)
                off = (steps - steps.round()).abs().max().item()
                assert off < 1e-4, f"{name}.x is not on the grid of {data.info.levels} levels"
        if split.y is not None:
            assert len(split.y) == len(x), f"{name}.y and {name}.x differ in length"
            if data.info.n_classes is not None:
                assert split.y.max() < data.info.n_classes, f"{name}.y has unknown classes"
        twin = getattr(again, name)
        assert torch.equal(split.x, twin.x), f"{name} differs between two loads: not deterministic"


class _TinyGaussianVAE(_LinearAutoencoder):
    """A linear VAE: q(z|x) = N(Wx + b, 0.5^2 I), p(z) = N(0, I), p(x|z) Bernoulli(sigmoid(Vz + c)).

    Enough of a latent-variable model to run a metric that needs one; a 2-D latent, so that
    metrics limited to small latents (exact quadrature) apply too."""

    likelihood_name = "bernoulli"

    def __init__(self, info: DataInfo, latent_dim: int = 2) -> None:
        super().__init__(info, latent_dim)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def prior(self) -> Distribution:
        zeros = torch.zeros(self.encoder.out_features)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def posterior(self, x: Tensor) -> Distribution:
        mean = self.encode(x)
        return Independent(Normal(mean, torch.full_like(mean, 0.5)), 1)

    def likelihood(self, z: Tensor) -> Distribution:
        logits = self.decoder(z).view(*z.shape[:-1], *self.info.shape)
        return Independent(Bernoulli(logits=logits), len(self.info.shape))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return -self.likelihood(out.code).log_prob(x)


def _metric_data(labelled: bool, n: int = 64) -> Data:
    """Binary 8x8 images, every pixel an independent fair coin (a Bernoulli of a uniform
    probability): their exact log-density is 64 log(1/2), so metrics that need one apply."""
    info = DataInfo(shape=(1, 8, 8), kind="binary", n_classes=3 if labelled else None)

    def split(seed: int) -> Split:
        x = sample_batch(info, batch=n, seed=seed)
        y = torch.arange(n) % 3 if labelled else None
        return Split(x, y)

    def log_density(x: Tensor) -> Tensor:
        return torch.full((len(x),), math.prod(info.shape) * math.log(0.5), device=x.device)

    return Data(info=info, train=split(0), test=split(1), log_density=log_density)


FACTOR_REQUIREMENTS = ("ground-truth factors", "rendering from factors")


def _factor_data(n: int = 64) -> Data:
    """Binary 8x8 images of a 2x2 square whose row and column (4 values each) are the data's two
    ground-truth factors, which it can render: for metrics that need factors."""
    info = DataInfo(
        shape=(1, 8, 8), kind="binary", factor_names=("row", "column"), factor_sizes=(4, 4)
    )

    def render(factors: Tensor) -> Tensor:
        rows = F.one_hot(factors[:, 0], 4).repeat_interleave(2, dim=1).float()  # (N, 8)
        columns = F.one_hot(factors[:, 1], 4).repeat_interleave(2, dim=1).float()
        return (rows[:, :, None] * columns[:, None, :]).unsqueeze(1)

    def split(seed: int) -> Split:
        factors = torch.randint(0, 4, (n, 2), generator=torch.Generator().manual_seed(seed))
        return Split(render(factors), factors=factors)

    return Data(info=info, train=split(0), test=split(1), render=render)


def check_metric(
    metric: Metric,
    *,
    params: Mapping[str, Any] | None = None,
    contexts: Iterable[MetricContext] | None = None,
) -> None:
    """A metric keeps the contract: it is an ``aebench.Metric``; its parameters form a valid schema
    (and ``params`` validate against it); on a deterministic autoencoder and on a latent-variable
    model, with labelled and unlabelled data, and data of known factors that it can render where
    the metric needs factors (or on the ``contexts`` given), it returns exactly its
    declared columns as numbers wherever its requirements are met, and the same numbers again
    from the same seed (noisy columns aside)."""
    from aebench.plugins.params import params_model

    assert isinstance(metric, Metric), "register an aebench.Metric(compute, columns=[...])"
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
            context.generator.manual_seed(context.generator.initial_seed())
            again = check_metric_values(metric, metric.compute(context, **resolved))
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


def check_observer(factory: Callable[..., Any], suite: Any = None) -> None:
    """An observer factory keeps the contract: ``factory(suite)`` gives a ``SuiteObserver`` (or
    None), which takes a whole run without raising: its start, an ``ok`` trial with a model, a
    ``failed`` trial without one, and the end of a run that was interrupted.

    ``suite`` defaults to a one-trial suite of the check's own plugins (``_ObservedPlugins``), so
    that the check needs no installed plugin; its output goes to a temporary folder. A ``suite``
    given runs on the installed plugins.
    """
    import tempfile

    from aebench.plugins.manager import load_plugins
    from aebench.run.observing import SuiteObserver, SuiteRun, TrialOutcome
    from aebench.run.suite import load_suite
    from aebench.run.trial import base_row

    with tempfile.TemporaryDirectory() as tmp:
        if suite is None:
            plugins = load_plugins(entry_points=False, extra=[_ObservedPlugins()])
            path = Path(tmp) / "suite.toml"
            path.write_text(_OBSERVED_SUITE)
            suite = load_suite(path, plugins)
        else:
            plugins = load_plugins()
        observer = factory(suite)
        if observer is None:
            return
        assert isinstance(observer, SuiteObserver), "an observer subclasses aebench.SuiteObserver"
        output = Path(tmp) / "results"
        output.mkdir()
        trial = suite.trials[0]
        device = torch.device("cpu")
        data = plugins.datasets.get(trial.dataset.plugin).factory(**trial.dataset.params)
        torch.manual_seed(0)
        model = plugins.models.get(trial.model.plugin).factory(data.info, **trial.model.params)
        ok = base_row(trial, plugins, device) | {"status": "ok", "train_s": 0.1}
        failed = base_row(trial, plugins, device) | {"status": "failed", "reason": "Boom: x"}
        curves = {"loss": [2.0, 1.0], "model_loss": [2.0, 1.0], "penalty": [0.0, 0.0]}
        observer.suite_started(suite, output, suite.trials)
        observer.trial_started(trial)
        observer.trial_finished(trial, ok, TrialOutcome(curves, model.eval(), data))
        observer.trial_started(trial)
        observer.trial_finished(trial, failed, TrialOutcome(traceback="Traceback: Boom"))
        observer.suite_finished(SuiteRun(output, [ok, failed], interrupted=True))


class _ObservedPlugins:
    """The dataset, model and regularizer of ``check_observer``'s own suite, registered for the
    check only (``load_plugins(extra=...)``): the kit's coin-flip images, its linear autoencoder,
    and the contract's do-nothing regularizer."""

    @hookimpl
    def aebench_register_datasets(self, register: Callable[..., None]) -> None:
        register("coin-flips", _metric_data)

    @hookimpl
    def aebench_register_models(self, register: Callable[..., None]) -> None:
        register("linear-autoencoder", _LinearAutoencoder)

    @hookimpl
    def aebench_register_regularizers(self, register: Callable[..., None]) -> None:
        register("unregularized", Regularizer)


_OBSERVED_SUITE = """
[suite]
name = "observed"
device = "cpu"

[tracking]
enabled = false

[[datasets]]
plugin = "coin-flips"
params = { labelled = true }

[[models]]
plugin = "linear-autoencoder"
params = { latent_dim = 2 }

[[regularizers]]
plugin = "unregularized"
"""


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
