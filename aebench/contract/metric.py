"""What a metric is handed (``MetricContext``), what it may require, how it declares its columns."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from aebench.contract.columns import CORE_COLUMNS, Column
from aebench.contract.data import Data, DataInfo
from aebench.contract.model import LatentVariableModel

EVAL_BATCH = 1024  # inputs per encoder pass over the test split (bounds the memory of one pass)
# How much a metric costs to measure: the default metrics are the cheap ones, and the expensive
# ones whose requirements single them out for the data (factors to disentangle, say).
Cost = Literal["cheap", "expensive"]


@dataclass
class MetricContext:
    """Everything a metric may look at, after training. Tensors are on ``device``.

    - ``model``: the trained model, in eval mode (gradients are off while metrics run).
    - ``data``: the trial's dataset; metrics measure ``data.test`` (and may fit on ``data.train``).
    - ``settings``: the trial's resolved ``[eval]`` section: ``{"metrics": [...],
      "params": {metric name: {parameter: value}}}``; a metric's own parameters arrive as keyword
      arguments, so a metric rarely needs this.
    - ``device``: where the model and data are.
    - ``generator``: seeded from the trial's seed; seed any sampling from it (``aebench.likelihood
      .seeded(generator)``) so that measurements are reproducible.
    - ``training``: what training measured: ``train_s``, ``train_samples_per_s``, ``peak_mem_mb``.

    The test split's shared work, computed on the first call and kept for the trial's other
    metrics (so that the default metrics encode the test split once, not once each):
    ``codes()``, ``reconstructions()`` and ``posteriors()``. A metric that reads the test split's
    code should ask for it here rather than call ``model.encode`` itself.
    """

    model: nn.Module
    data: Data
    settings: Mapping[str, Any]
    device: torch.device
    generator: torch.Generator
    training: Mapping[str, float] = field(default_factory=dict)
    _shared: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` on the first call for ``key``, without gradients; the same value after."""
        if key not in self._shared:
            with torch.no_grad():
                self._shared[key] = compute()
        return self._shared[key]

    def encoded(self) -> Tensor:
        """``model.encode`` of the whole test split, as the model returns it (one pass, in batches
        of ``EVAL_BATCH``): what ``codes()`` and ``reconstructions()`` are made from."""
        x = self.data.test.x
        return self._once(
            "encoded", lambda: torch.cat([self.model.encode(b) for b in x.split(EVAL_BATCH)])
        )

    def codes(self) -> Tensor:
        """The deterministic code of every test input (``model.encode``, the posterior mean of a
        latent-variable model), flattened to (N, code size). Do not modify it in place."""
        return self._once("codes", lambda: self.encoded().flatten(1))

    def reconstructions(self) -> Tensor:
        """``model.decode`` of the test split's codes: the deterministic reconstructions."""
        return self._once(
            "reconstructions",
            lambda: torch.cat([self.model.decode(c) for c in self.encoded().split(EVAL_BATCH)]),
        )

    def posteriors(self) -> list[Distribution]:
        """q(z|x) of the test split (latent-variable models only), one distribution per batch of
        ``EVAL_BATCH`` inputs, in order: their parameters, computed once for every metric."""
        x = self.data.test.x
        return self._once(
            "posteriors", lambda: [self.model.posterior(b) for b in x.split(EVAL_BATCH)]
        )


# What a metric may need of a trial; the core gives NaN columns where a need is not met.
Requirement = Literal[
    "latent-variable model",
    "likelihood of the data",
    "labelled data",
    "known data density",
    "ground-truth factors",
    "rendering from factors",
]
REQUIREMENTS: tuple[Requirement, ...] = get_args(Requirement)
# Those of the data, not of the model: an expensive metric that has one is among the default
# metrics (the data asks for it: factors to disentangle, labels to classify samples by).
DATA_REQUIREMENTS: frozenset[Requirement] = frozenset(
    {"labelled data", "known data density", "ground-truth factors", "rendering from factors"}
)


class NotApplicable(Exception):  # a verdict, not an error: no "Error" suffix
    """Raised by a metric's ``compute`` when it cannot measure this trial: its columns are NaN and
    the message (one line: why) goes to the row's ``nan_reasons``. Not a failure of the trial."""


@dataclass(frozen=True)
class Measurement:
    """A metric's values, and why they are NaN where they are: ``reason`` for all of them (a
    metric that did not apply), ``reasons`` column by column (one that measured some columns and
    not others). A ``compute`` returns one where a column is NaN for a reason of its own::

        return aebench.Measurement(
            {"score": score, "gap": math.nan}, reasons={"gap": "the data has one factor"}
        )
    """

    values: Mapping[str, float]
    reason: str = ""
    reasons: Mapping[str, str] = field(default_factory=dict)


def likelihood_support_problem(
    model: LatentVariableModel, x: Tensor, info: DataInfo | None = None
) -> str | None:
    """Why p(x|z) is not a density of the data ``x``, or None when every value of every input lies
    in the likelihood's support (checked at the code of the first input: a support that depends
    on the decoder's output is checked there) and, where ``info`` says the data is discrete, the
    likelihood is a mass function.

    A Bernoulli on grey levels, say: its mass is on {0, 1}, so log p(x|z) of a grey image is a
    number but not a log-likelihood. And a density on discrete data (a Gaussian or a continuous
    Bernoulli on digits' 17 levels): its log-density is not the log-probability of those values
    and, unlike a log mass, is not bounded by 0; no protocol here dequantises the data to make
    it one. A distribution that does not declare its support passes.
    """
    likelihood = _base(model.likelihood(model.encode(x[:1])))
    name = getattr(model, "likelihood_name", None) or type(likelihood).__name__
    try:
        support = likelihood.support
        inside = support.check(x)  # per element, broadcast over the inputs
    except NotImplementedError:
        return None
    if not bool(inside.all()):
        value = float(x[~inside][0]) if inside.shape == x.shape else float("nan")
        return (
            f"p(x|z) ({name}) is not a density of this data: the test data has values"
            f" outside its support (e.g. {value:g})"
        )
    values = _discrete_values(info)
    if values and not support.is_discrete:
        return (
            f"a density on discrete data: p(x|z) ({name}) is a density, the data takes {values}:"
            " its log-density is not a log-likelihood of them (a mass function's is)"
        )
    return None


def _discrete_values(info: DataInfo | None) -> str:
    """What values discrete data takes (``17 levels``), or "" for data that is not discrete."""
    if info is None:
        return ""
    if info.kind == "binary":
        return "the values 0 and 1"
    return f"{info.levels} levels" if info.levels is not None else ""


def _base(distribution: Distribution) -> Distribution:
    """The distribution inside any ``Independent`` wrappers."""
    while isinstance(distribution, Independent):
        distribution = distribution.base_dist
    return distribution


@dataclass(frozen=True)
class Metric:
    """A measurement of a trained model, and the columns it writes: register it by name.

    ``compute(context, **params) -> {column: number}`` returns one finite number (or NaN) per
    declared column; where some columns are NaN and others not, it returns an
    ``aebench.Measurement`` that says why (a NaN without a reason is reported as one). Its
    parameters after ``context`` are typed and defaulted like a model's; the suite sets them per
    metric (``[eval.NAME] samples = 5000``) and they are validated before anything trains. Its
    docstring's first line is what ``aebench list`` shows.

    - ``columns``: every column it returns, with which way is better, its comparison floor, its
      noise (``aebench.Column``). The report, MLflow and ``aebench compare`` read these alone.
    - ``requires``: what it applies to; where a trial lacks one, the core writes NaN in its
      columns without calling it, and the reason in the row's ``nan_reasons``:

      - ``"latent-variable model"``: the model has ``prior``, ``posterior`` and ``likelihood``;
      - ``"likelihood of the data"``: that, and the test data lies in the support of p(x|z), so
        that log p(x|z) is a log-density of the data (no Bernoulli on grey levels), and a mass
        function where the data is discrete (no Gaussian on 17 grey levels);
      - ``"labelled data"``: the test split has labels;
      - ``"known data density"``: the dataset knows its exact ``log_density``;
      - ``"ground-truth factors"``: the train and test splits carry ``factors`` (and ``DataInfo``
        names them);
      - ``"rendering from factors"``: the dataset can ``render`` samples of given factor values.

      ``compute`` may also raise ``aebench.NotApplicable("why")`` for a case only it can see.
    - ``planes``: pairs of its columns that the report plots against each other, one point per
      trial (``("x_column", "y_column")``).
    - ``aliases``: plain ``[eval]`` keys that set one of its parameters, for older suites
      (``{"iwae_samples": "samples"}``); several metrics may share an alias.
    - ``cost``: ``"cheap"`` (the default) or ``"expensive"`` (over about a second on a small
      trial: thousands of samples, a classifier fit). A suite that names no ``[eval] metrics``
      measures the cheap ones, the expensive ones that need something of the data (labels, a
      known density, factors, rendering; NaN with the reason where the data lacks it) and those
      whose parameters it sets; ``metrics = "all"`` measures every one.

    ::

        def mean_code(context, scale: float = 1.0) -> dict[str, float]:
            \"\"\"Mean code value, scaled.\"\"\"
            return {"mean_code": scale * context.model.encode(context.data.test.x).mean().item()}

        register("mean_code", Metric(mean_code, columns=[Column("mean_code", better="higher")]))
    """

    compute: Callable[..., Mapping[str, float]]
    columns: Sequence[Column]
    requires: Sequence[Requirement] = ()
    planes: Sequence[tuple[str, str]] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    cost: Cost = "cheap"

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "requires", tuple(self.requires))
        if self.cost not in get_args(Cost):
            raise ValueError(f"Metric(cost=...): {self.cost!r} is not 'cheap' or 'expensive'")
        object.__setattr__(self, "planes", tuple(tuple(p) for p in self.planes))
        if not callable(self.compute):
            raise TypeError("Metric(compute=...): compute must be callable")
        if not self.columns or not all(isinstance(c, Column) for c in self.columns):
            raise TypeError("Metric(columns=...): declare at least one aebench.Column")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"Metric(columns=...): a column is declared twice in {names}")
        for requirement in self.requires:
            if requirement not in REQUIREMENTS:
                raise ValueError(
                    f"Metric(requires=...): {requirement!r} is not one of {', '.join(REQUIREMENTS)}"
                )
        for plane in self.planes:
            if len(plane) != 2 or not set(plane) <= set(names):
                raise ValueError(f"Metric(planes=...): {plane} is not a pair of its own columns")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def __call__(self, context: MetricContext, **params: Any) -> dict[str, float]:
        """Measure: NaN in every column where the metric does not apply, else its values."""
        return dict(self.measure(context, **params).values)

    def measure(self, context: MetricContext, **params: Any) -> Measurement:
        """The values (with their reasons where ``compute`` gave a ``Measurement``), or NaN in
        every column with the reason where a requirement is unmet or ``compute`` raised
        ``NotApplicable``."""
        reason = self.unmet(context)
        if reason is None:
            try:
                result = self.compute(context, **params)
            except NotApplicable as exc:
                reason = str(exc)
            else:
                return result if isinstance(result, Measurement) else Measurement(dict(result))
        return Measurement(dict.fromkeys(self.column_names, math.nan), reason)

    def unmet(self, context: MetricContext) -> str | None:
        """Why this metric does not apply to the trial in ``context``, or None when it does."""
        latent = isinstance(context.model, LatentVariableModel)
        for requirement in self.requires:
            if requirement in ("latent-variable model", "likelihood of the data") and not latent:
                return "the model is not a latent-variable model"
            if requirement == "likelihood of the data":
                problem = likelihood_support_problem(
                    context.model, context.data.test.x, context.data.info
                )
                if problem:
                    return problem
            if requirement == "labelled data" and context.data.test.y is None:
                return "the data has no labels"
            if requirement == "known data density" and context.data.log_density is None:
                return "the data's true density is not known"
            if requirement == "ground-truth factors" and not _has_factors(context.data):
                return "the data has no ground-truth factors"
            if requirement == "rendering from factors" and context.data.render is None:
                return "the dataset cannot render samples of given factor values"
        return None


def _has_factors(data: Data) -> bool:
    """Whether both splits carry ground-truth factors that ``data.info`` names."""
    named = data.info.factor_names is not None
    return named and data.train.factors is not None and data.test.factors is not None


@dataclass(frozen=True)
class LegacyMetric(Metric):
    """A metric registered as a plain function, the v1 contract (``register(name, compute)``),
    kept working while its author moves to ``aebench.Metric``.

    It declares no columns when it registers: they are learned from its first measurement, each
    a ``Column(name)`` with no direction (nothing is marked best or compared on them), so that
    every later measurement is checked against them like any metric's. A trial measured in
    another process learns them there; the run then declares the columns its rows have that no
    metric declares (``aebench.results.table.declare_measured``).
    """

    columns: Sequence[Column] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        if not callable(self.compute):
            raise TypeError("a metric's compute must be callable")

    def measure(self, context: MetricContext, **params: Any) -> Measurement:
        measurement = super().measure(context, **params)
        if not self.columns and not measurement.reason:
            self._learn(measurement.values)
        return measurement

    def _learn(self, values: Mapping[str, float]) -> None:
        """Declare the columns of a first result (a name that no column may have raises)."""
        if not isinstance(values, Mapping) or not values:
            return  # off-contract: the check of the values says so
        core = sorted(set(values) & set(CORE_COLUMNS))
        if core:
            raise ValueError(f"returned the column {core[0]!r}, one of the core's own")
        object.__setattr__(self, "columns", tuple(Column(str(name)) for name in values))
