"""What plugins hand to the core and get back: data, model outputs, regularizers, metrics.

Plugins build on these types only (imported from ``aebench``); the core never needs to know a
concrete plugin. ``docs/plugins.md`` is the reference of every contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from aebench.columns import Column

DataKind = Literal["binary", "unit", "real"]
Binarization = Literal["none", "static", "dynamic"]


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data to build itself: ``factory(info, **params)``.

    - ``shape``: one sample's shape, ``(C, H, W)`` for images or ``(D,)`` for vectors.
    - ``kind``: ``"binary"`` (values in {0, 1}), ``"unit"`` (in [0, 1]) or ``"real"``; models
      choose their likelihood from it. With a ``Data.batch_transform`` it describes the batches as
      drawn (dynamic binarisation: ``"binary"``).
    - ``n_classes``: the number of classes of labelled data (labels ``0 .. n_classes - 1``), or
      None.
    - ``levels``: for ``"unit"`` data that takes only the evenly spaced values ``k / (levels - 1)``
      (8-bit images: 256; scikit-learn's digits: 17), their number; None where the values are not
      quantised. A likelihood over exactly these levels is a mass function of the data, whose
      bits per dimension are those that the literature reports.
    - ``binarize``: for image data, how the splits were binarised (``"none"``, ``"static"``,
      ``"dynamic"``); None for data where binarisation does not apply. It is part of the
      likelihood protocol written in every row, so that tables of different protocols are never
      compared silently.
    - ``factor_names`` and ``factor_sizes``: for data generated from known factors (dSprites'
      shape, scale, orientation, position), each factor's name and its number of values; the
      splits' ``factors`` hold each sample's values as indices ``0 .. size - 1``. None for data
      without known factors. Disentanglement metrics read them.
    """

    shape: tuple[int, ...]  # one sample: (C, H, W) or (D,)
    kind: DataKind  # binary {0, 1}, unit interval [0, 1], or real
    n_classes: int | None = None
    levels: int | None = None  # unit data on the grid k / (levels - 1)
    binarize: Binarization | None = None  # image data: "none", "static" or "dynamic"
    factor_names: tuple[str, ...] | None = None  # the ground-truth factors, where known
    factor_sizes: tuple[int, ...] | None = None  # each factor's number of values

    def __post_init__(self) -> None:
        names, sizes = self.factor_names, self.factor_sizes
        if (names is None) != (sizes is None):
            raise ValueError("DataInfo: factor_names and factor_sizes are given together")
        if names is not None and sizes is not None:
            if len(names) != len(sizes) or not names:
                raise ValueError(f"DataInfo: {len(names)} factor names but {len(sizes)} sizes")
            if min(sizes) < 1:
                raise ValueError(f"DataInfo: factor_sizes {sizes}: each factor has a value")


@dataclass
class Split:
    """One split of a dataset: inputs ``x`` and, where known, labels ``y`` and factors.

    - ``x``: ``(N, *DataInfo.shape)``, float32, holding values of the data's kind.
    - ``y``: ``(N,)`` integer class labels, or None for unlabelled data. Metrics that require
      ``"labelled data"`` get NaN where the test split has no labels.
    - ``factors``: ``(N, n_factors)`` integer (int64) values of the ground-truth factors that
      generated each sample, factor ``i`` in ``0 .. DataInfo.factor_sizes[i] - 1``; None where
      they are not known. Metrics that require ``"ground-truth factors"`` get NaN without them.
    """

    x: Tensor
    y: Tensor | None = None
    factors: Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device | str) -> Split:
        return Split(
            self.x.to(device),
            None if self.y is None else self.y.to(device),
            None if self.factors is None else self.factors.to(device),
        )

    def take(self, index: Tensor) -> Split:
        """The samples at ``index``, with their labels and factors."""
        return Split(
            self.x[index],
            None if self.y is None else self.y[index],
            None if self.factors is None else self.factors[index],
        )


# Applied to every batch as it is drawn (dynamic binarisation); never to the stored tensors.
BatchTransform = Callable[[Tensor, torch.Generator], Tensor]


@dataclass
class Data:
    """A dataset, materialised: what a dataset factory returns.

    The contract: ``register(name, factory)`` in ``aebench_register_datasets``, and
    ``factory(**params) -> Data``, its parameters typed and defaulted in its signature (set by a
    suite's ``params`` and ``grid``). The splits are deterministic: the same parameters give the
    same tensors. A dataset is built from its parameters alone and shared by every trial that uses
    them, whatever the trial's seed, so one that draws anything takes a ``seed`` parameter of its
    own. Tensors may be on the CPU; the core moves them to the trial's device (``to``).

    - ``info``: shape, kind and number of classes (``DataInfo``).
    - ``train``, ``test``: ``Split``s; training uses ``train``, metrics measure ``test`` (and may
      fit on ``train``).
    - ``val``: an optional validation split; the core neither trains nor measures on it.
    - ``batch_transform(x, generator) -> x``: applied to every training batch as it is drawn, with
      the trial's seeded generator, never to the stored tensors or to ``test``/``val`` (dynamic
      binarisation: ``torch.bernoulli(x, generator=generator)``).
    - ``log_density(x) -> (N,)``: the exact log-density of each sample of ``x`` ``(N, *shape)``, in
      nats, when the data's true distribution is known (synthetic sets); called on the trial's
      device.
    - ``render(factors) -> x``: for data generated from known factors, the samples of the given
      factor values ``(N, n_factors)`` (indices, as in ``Split.factors``), ``(N, *shape)`` float32
      on the factors' device; deterministic. Metrics that intervene on factors (fix one, vary the
      others: the BetaVAE and FactorVAE scores) require ``"rendering from factors"``.

    ``aebench.testing.check_dataset`` checks a factory against this contract.
    """

    info: DataInfo
    train: Split
    test: Split
    val: Split | None = None
    batch_transform: BatchTransform | None = None
    # Exact log-density of one sample, when the data's true distribution is known (synthetic sets).
    log_density: Callable[[Tensor], Tensor] | None = None
    # The samples of given factor values, when the data is generated from known factors.
    render: Callable[[Tensor], Tensor] | None = None

    def to(self, device: torch.device | str) -> Data:
        val = None if self.val is None else self.val.to(device)
        return replace(self, train=self.train.to(device), test=self.test.to(device), val=val)


@dataclass
class ModelOutput:
    """What a model's ``forward(x)`` returns.

    - ``code``: ``(B, latent)``, the code of the batch (for a VAE, a posterior sample).
    - ``recon``: the reconstruction, shaped like ``x``, in the data's space (probabilities or
      means, not logits).
    - ``hidden``: the activations that sparsity penalties act on, where they are not ``code`` (a
      VAE gives its posterior mean rather than the noisy sample); None: ``code``.
    - ``extras``: whatever the model's own ``loss`` needs (logits, ``mu``, ``logvar``, samples);
      the core does not read it.
    - ``activations``: ``hidden`` when given, else ``code``; what regularizers read.
    """

    code: Tensor  # (B, latent): the deterministic code (a posterior sample for a VAE)
    recon: Tensor  # (B, *shape): the reconstruction, in the data's space
    hidden: Tensor | None = None  # activations that sparsity penalties act on; defaults to code
    extras: dict[str, Tensor] = field(default_factory=dict)  # model-specific (mu, logvar, ...)

    @property
    def activations(self) -> Tensor:
        """``hidden`` when given, else ``code``: what sparsity penalties act on."""
        return self.code if self.hidden is None else self.hidden


@runtime_checkable
class Autoencoder(Protocol):
    """The model contract. Models are ``nn.Module``s built by ``factory(info, **params)``.

    Register the factory (usually the class) with ``register(name, factory)`` in
    ``aebench_register_models``; ``info`` is the data's ``DataInfo``, the other parameters are
    typed and defaulted in the signature and set by a suite's ``params`` and ``grid``. This is a
    protocol: a model has these four methods, it need not subclass it. torch is seeded from the
    trial's seed before the factory runs. The core minimises the batch mean of
    ``loss(x, model(regularizer.corrupt(x)))`` plus the regularizer's penalty.

    Optional attributes, read from the built model:

    - ``code_range: tuple[float, float] | None``: the closed interval that the code
      (``ModelOutput.activations``) lies in, e.g. ``(0.0, 1.0)`` for a sigmoid code; absent or
      None means unbounded. Regularizers that need bounded activations read it with
      ``getattr(model, "code_range", None)`` and decline models outside their range.
    - ``data_kinds: tuple[DataKind, ...]``, a class attribute: the data kinds the model takes,
      e.g. ``("binary", "unit")``; a trial on data of another kind is recorded ``skipped`` with
      the reason, and ``aebench.testing.check_model`` checks those kinds. Absent means every
      kind. The runner reads it after the model is built.
    - ``image_only = True``, a class attribute: the model takes ``(C, H, W)`` images only (conv
      networks); a trial on other data is recorded ``skipped`` with the reason, announced before
      the run.
    - ``latent_layers: Mapping[str, int]``: a hierarchy of latent layers carried in the one flat
      code (``encode``'s output, and the prior's and posterior's event): each layer's name and
      number of dimensions, in the code's order, the layer nearest the data first, e.g.
      ``{"z1": 100, "z2": 50}`` for z = (z1, z2). The sizes add up to the code's size. Absent
      means one layer. Metrics read it through ``aebench.latent_layer_slices``.

    Optional methods the training loop calls (docs/plugins.md, "Auxiliary parameters"):

    - ``auxiliary_parameters()`` and ``auxiliary_loss(x, out)``: parameters of the model (a
      discriminator) left out of the main optimizer and trained by one of their own, right after
      every main step, on the mean of ``auxiliary_loss`` (``(B,)`` or a scalar) of the clean batch
      and the main step's output detached; an optional ``auxiliary_optimizer`` mapping overrides
      the trial's optimizer settings for it (``{"lr": 1e-4, "betas": (0.5, 0.9)}``).
    - ``fit_before_training(x)``: called once before the first step, without gradients, with
      the training inputs (a model is built from ``DataInfo`` alone): a start fitted to the data,
      such as an output bias at logit(mean pixel), kept in parameters or buffers.
    - ``fit_ex_post(x)``: called once after training, in eval mode without gradients, with the
      training inputs: what it fits (an ex-post density of the codes) goes in buffers.

    With ``[suite] isolate = true`` or on Dask, the trained model reaches observers rebuilt from
    ``factory(info, **params)`` and its ``state_dict()``. ``aebench.testing.check_model`` checks
    a factory against this contract.
    """

    def encode(self, x: Tensor) -> Tensor:
        """The code of ``x`` (the posterior mean for a latent-variable model)."""
        ...

    def decode(self, z: Tensor) -> Tensor:
        """The reconstruction (the likelihood's mean) of code ``z``."""
        ...

    def forward(self, x: Tensor) -> ModelOutput:
        """The code and reconstruction of ``x`` (``ModelOutput``)."""
        ...

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        """The per-sample training loss, shape (B,)."""
        ...


@runtime_checkable
class LatentVariableModel(Autoencoder, Protocol):
    """A model with p(z), q(z|x) and p(x|z): the core computes ELBO and log p(x) from these.

    An ``Autoencoder`` that also has ``prior()``, ``posterior(x)`` and ``likelihood(z)``, each
    returning a ``torch.distributions.Distribution``, is one (``isinstance`` checks the methods; no
    subclassing needed), and the metrics that require a ``"latent-variable model"`` are computed
    for it:

    - ``prior()``: p(z), batch shape ``()``, event shape ``(latent,)``;
    - ``posterior(x)``: q(z|x) for ``x`` ``(B, *data)``, batch shape ``(B,)``, event shape
      ``(latent,)``;
    - ``likelihood(z)``: p(x|z) for ``z`` ``(N, latent)``, batch shape ``z.shape[:-1]``, event
      shape the data's shape.

    ``log_prob`` of each gives one number per sample (``torch.distributions.Independent`` makes
    the event shapes). ``encode(x)`` is the posterior mean and ``decode(z)`` the likelihood's mean.
    On the first batch of every trial, before training, the core checks these shapes before the
    model's own ``loss`` runs; a mismatch fails the trial with a reason naming the model.
    """

    def prior(self) -> Distribution:
        """p(z), batch shape (), event shape (latent,); on the model's device (build it from a
        buffer)."""
        ...

    def posterior(self, x: Tensor) -> Distribution:
        """q(z|x), batch shape (B,), event shape (latent,)."""
        ...

    def likelihood(self, z: Tensor) -> Distribution:
        """p(x|z), batch shape z.shape[:-1], event shape the data's shape."""
        ...


def latent_layer_slices(model: nn.Module, code_size: int) -> dict[str, slice]:
    """The model's latent layers as slices of its flat code of ``code_size`` numbers, the layer
    nearest the data first: from its ``latent_layers`` declaration, or one layer ``"z"`` holding
    the whole code where it declares none.

    A ``ValueError`` (one line, naming the model's class) where the declaration is not a mapping
    of names to positive sizes that add up to ``code_size``.
    """
    declared = getattr(model, "latent_layers", None)
    if declared is None:
        return {"z": slice(0, code_size)}
    where = f"{type(model).__name__}.latent_layers = {declared!r}"
    if not isinstance(declared, Mapping) or not declared:
        raise ValueError(f"{where}: expected a mapping of layer names to sizes, e.g. {{'z1': 4}}")
    slices, start = {}, 0
    for name, size in declared.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: layer names are non-empty strings, not {name!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"{where}: layer {name!r} has size {size!r}; sizes are integers >= 1")
        slices[name] = slice(start, start + size)
        start += size
    if start != code_size:
        raise ValueError(
            f"{where}: the layers add up to {start} numbers, but the code has {code_size}"
        )
    return slices


class Regularizer:
    """Base class for regularizers: identity corruption, no penalty, accepts every model.

    The contract: ``register(name, factory)`` in ``aebench_register_regularizers``, and
    ``factory(**params) -> Regularizer`` (usually the subclass itself), its parameters typed and
    defaulted in its signature and set by a suite's ``params`` and ``grid``. Subclass this and
    override what you need:

    - ``decline(model, info)``: a reason string when the regularizer does not fit this model and
      data (the trial is recorded ``skipped`` with it), else None; called once, after the model is
      built.
    - ``corrupt(x, generator)``: the input the model sees in training (denoising); training
      batches only, same shape and dtype; draw randomness from ``generator``. The model's loss
      still compares with the clean ``x``.
    - ``penalty(x_in, out, model)``: ``(B,)`` per sample or a scalar, added (its mean) to the
      model's mean loss; ``x_in`` is the corrupted input and ``out`` the model's output on it.

    ``aebench.testing.check_regularizer`` checks a factory against this contract.
    """

    def decline(self, model: nn.Module, info: DataInfo) -> str | None:
        """A reason why this regularizer does not fit ``model``, or None when it does."""
        return None

    def corrupt(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """The input the model sees in training (identity unless denoising)."""
        return x

    def penalty(self, x_in: Tensor, out: ModelOutput, model: nn.Module) -> Tensor:
        """A per-sample (B,) or batch-level scalar penalty; the core takes its mean.

        ``x_in`` is the input the model saw (after ``corrupt``), ``out`` its output on it.
        """
        return torch.zeros((), device=x_in.device)


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
    """

    model: nn.Module
    data: Data
    settings: Mapping[str, Any]
    device: torch.device
    generator: torch.Generator
    training: Mapping[str, float] = field(default_factory=dict)


# What a metric may need of a trial; the core gives NaN columns where a need is not met.
Requirement = Literal[
    "latent-variable model",
    "likelihood of the data",
    "labelled data",
    "known data density",
    "ground-truth factors",
    "rendering from factors",
]
REQUIREMENTS: tuple[Requirement, ...] = (
    "latent-variable model",
    "likelihood of the data",
    "labelled data",
    "known data density",
    "ground-truth factors",
    "rendering from factors",
)


class NotApplicable(Exception):  # a verdict, not an error: no "Error" suffix
    """Raised by a metric's ``compute`` when it cannot measure this trial: its columns are NaN and
    the message (one line: why) goes to the row's ``nan_reasons``. Not a failure of the trial."""


@dataclass(frozen=True)
class Measurement:
    """A metric's values, and why they are NaN when they are (``reason``, else empty)."""

    values: dict[str, float]
    reason: str = ""


def likelihood_support_problem(model: LatentVariableModel, x: Tensor) -> str | None:
    """Why p(x|z) is not a density of the data ``x``, or None when every value of every input lies
    in the likelihood's support (checked at the code of the first input: a support that depends
    on the decoder's output is checked there).

    A Bernoulli on grey levels, say: its mass is on {0, 1}, so log p(x|z) of a grey image is a
    number but not a log-likelihood. A distribution that does not declare its support passes.
    """
    likelihood = _base(model.likelihood(model.encode(x[:1])))
    try:
        inside = likelihood.support.check(x)  # per element, broadcast over the inputs
    except NotImplementedError:
        return None
    if bool(inside.all()):
        return None
    value = float(x[~inside][0]) if inside.shape == x.shape else float("nan")
    name = getattr(model, "likelihood_name", None) or type(likelihood).__name__
    return (
        f"p(x|z) ({name}) is not a density of this data: the test data has values"
        f" outside its support (e.g. {value:g})"
    )


def _base(distribution: Distribution) -> Distribution:
    """The distribution inside any ``Independent`` wrappers."""
    while isinstance(distribution, Independent):
        distribution = distribution.base_dist
    return distribution


@dataclass(frozen=True)
class Metric:
    """A measurement of a trained model, and the columns it writes: register it by name.

    ``compute(context, **params) -> {column: number}`` returns one finite number (or NaN) per
    declared column. Its parameters after ``context`` are typed and defaulted like a model's; the
    suite sets them per metric (``[eval.NAME] samples = 5000``) and they are validated before
    anything trains. Its docstring's first line is what ``aebench list`` shows.

    - ``columns``: every column it returns, with which way is better, its comparison floor, its
      noise (``aebench.Column``). The report, MLflow and ``aebench compare`` read these alone.
    - ``requires``: what it applies to; where a trial lacks one, the core writes NaN in its
      columns without calling it, and the reason in the row's ``nan_reasons``:

      - ``"latent-variable model"``: the model has ``prior``, ``posterior`` and ``likelihood``;
      - ``"likelihood of the data"``: that, and the test data lies in the support of p(x|z), so
        that log p(x|z) is a log-density of the data (no Bernoulli on grey levels);
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "requires", tuple(self.requires))
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
        return self.measure(context, **params).values

    def measure(self, context: MetricContext, **params: Any) -> Measurement:
        """The values, or NaN in every column with the reason where a requirement is unmet or
        ``compute`` raised ``NotApplicable``."""
        reason = self.unmet(context)
        if reason is None:
            try:
                return Measurement(dict(self.compute(context, **params)))
            except NotApplicable as exc:
                reason = str(exc)
        return Measurement(dict.fromkeys(self.column_names, math.nan), reason)

    def unmet(self, context: MetricContext) -> str | None:
        """Why this metric does not apply to the trial in ``context``, or None when it does."""
        latent = isinstance(context.model, LatentVariableModel)
        for requirement in self.requires:
            if requirement in ("latent-variable model", "likelihood of the data") and not latent:
                return "the model is not a latent-variable model"
            if requirement == "likelihood of the data":
                problem = likelihood_support_problem(context.model, context.data.test.x)
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
