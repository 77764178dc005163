"""What a model and a regularizer are to the core: the forward pass's output, the autoencoder and
latent-variable protocols, and the regularizer's penalty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from aebench.contract.data import DataInfo


class ModelOutput:
    """What a model's ``forward(x)`` returns.

    - ``code``: ``(B, latent)``, the code of the batch (for a VAE, a posterior sample).
    - ``recon``: the reconstruction, shaped like ``x``, in the data's space (probabilities or
      means, not logits). It may be given as a function of no arguments, called on the first
      read of ``recon`` (and kept): a training step whose loss reads logits never pays for it
      (a VAE's sigmoid over every pixel was 4-5% of a Burda VAE's batch-20 step).
    - ``hidden``: the activations that sparsity penalties act on, where they are not ``code`` (a
      VAE gives its posterior mean rather than the noisy sample); None: ``code``.
    - ``extras``: whatever the model's own ``loss`` needs (logits, ``mu``, ``logvar``, samples);
      the core does not read it.
    - ``activations``: ``hidden`` when given, else ``code``; what regularizers read.
    """

    def __init__(
        self,
        code: Tensor,  # (B, latent): the deterministic code (a posterior sample for a VAE)
        recon: Tensor | Callable[[], Tensor],  # (B, *shape): the reconstruction, data's space
        hidden: Tensor | None = None,  # activations that sparsity penalties act on; else code
        extras: dict[str, Tensor] | None = None,  # model-specific (mu, logvar, ...)
    ) -> None:
        self.code = code
        self._recon = recon
        self.hidden = hidden
        self.extras = {} if extras is None else extras

    @property
    def recon(self) -> Tensor:
        """The reconstruction; one given as a function is computed now, once."""
        if not isinstance(self._recon, Tensor) and callable(self._recon):
            self._recon = self._recon()
        return self._recon

    @property
    def activations(self) -> Tensor:
        """``hidden`` when given, else ``code``: what sparsity penalties act on."""
        return self.code if self.hidden is None else self.hidden

    def __repr__(self) -> str:
        return f"ModelOutput(code={self.code!r}, recon={self._recon!r}, hidden={self.hidden!r})"


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
    - ``stackable = True``, a class attribute (on the factory): the model's seeds may train
      together as one stacked model where a suite says ``[train] stack = "auto"``
      (``aebench.run.stacked``): its parameters stacked along a new first dimension and its
      ``forward`` and ``loss`` run under ``torch.vmap`` with ``randomness="different"``. Opt in
      only where both are vmap-able: tensor operations only, no data-dependent Python control
      flow (``if t.any()``), no ``.item()``, no in-place writes to its own parameters or
      buffers, randomness from torch's global generator. Absent means False: each trial trains
      alone. A group whose stacked training raises trains its trials alone, one by one.
    - ``independent_samples = True``, with ``stackable``: each sample's loss depends on its own
      row only, and every trainable parameter is in an ``nn.Linear`` used by calling it; the
      stacked seeds then train as one batch through batched matrix multiplies
      (``aebench.run.stacked_rows``) instead of vmap.

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

    A regularizer may declare itself the default, ``default = True`` as a class attribute (on
    the factory): the one trained with by a suite that lists no ``[[regularizers]]`` (the
    built-in ``none`` does). At most one installed regularizer may; when two do, such a suite is
    refused with both named.

    ``aebench.testing.check_regularizer`` checks a factory against this contract.
    """

    default: ClassVar[bool] = False  # the regularizer of a suite that lists none

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
