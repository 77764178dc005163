"""What plugins hand to the core and get back: data, model outputs, regularizers, metric context.

Plugins build on these types only; the core never needs to know a concrete plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

DataKind = Literal["binary", "unit", "real"]


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data to build itself."""

    shape: tuple[int, ...]  # one sample: (C, H, W) or (D,)
    kind: DataKind  # binary {0, 1}, unit interval [0, 1], or real
    n_classes: int | None = None


@dataclass
class Split:
    """One split: inputs ``x`` (N, *shape) float32 and labels ``y`` (N,) where known."""

    x: Tensor
    y: Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), None if self.y is None else self.y.to(device))


# Applied to every batch as it is drawn (dynamic binarisation); never to the stored tensors.
BatchTransform = Callable[[Tensor, torch.Generator], Tensor]


@dataclass
class Data:
    """A dataset, materialised: deterministic splits held as tensors."""

    info: DataInfo
    train: Split
    test: Split
    val: Split | None = None
    batch_transform: BatchTransform | None = None
    # Exact log-density of one sample, when the data's true distribution is known (synthetic sets).
    log_density: Callable[[Tensor], Tensor] | None = None

    def to(self, device: torch.device | str) -> Data:
        val = None if self.val is None else self.val.to(device)
        return replace(self, train=self.train.to(device), test=self.test.to(device), val=val)


@dataclass
class ModelOutput:
    """What a model's forward pass returns."""

    code: Tensor  # (B, latent): the deterministic code (a posterior sample for a VAE)
    recon: Tensor  # (B, *shape): the reconstruction, in the data's space
    hidden: Tensor | None = None  # activations that sparsity penalties act on; defaults to code
    extras: dict[str, Tensor] = field(default_factory=dict)  # model-specific (mu, logvar, ...)

    @property
    def activations(self) -> Tensor:
        return self.code if self.hidden is None else self.hidden


@runtime_checkable
class Autoencoder(Protocol):
    """The model contract. Models are ``nn.Module``s built by ``factory(info, **params)``.

    Optional attribute ``code_range: tuple[float, float] | None``: the closed interval that the
    code (``ModelOutput.activations``) lies in, e.g. ``(0.0, 1.0)`` for a sigmoid code; absent or
    None means unbounded. Regularizers that need bounded activations read it with
    ``getattr(model, "code_range", None)`` and decline models outside their range.
    """

    def encode(self, x: Tensor) -> Tensor:
        """The code of ``x`` (the posterior mean for a latent-variable model)."""
        ...

    def decode(self, z: Tensor) -> Tensor:
        """The reconstruction (the likelihood's mean) of code ``z``."""
        ...

    def forward(self, x: Tensor) -> ModelOutput: ...

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        """The per-sample training loss, shape (B,)."""
        ...


@runtime_checkable
class LatentVariableModel(Autoencoder, Protocol):
    """A model with p(z), q(z|x) and p(x|z): the core computes ELBO and log p(x) from these."""

    def prior(self) -> Distribution:
        """p(z), event shape (latent,)."""
        ...

    def posterior(self, x: Tensor) -> Distribution:
        """q(z|x), batch shape (B,), event shape (latent,)."""
        ...

    def likelihood(self, z: Tensor) -> Distribution:
        """p(x|z), batch shape z.shape[:-1], event shape the data's shape."""
        ...


class Regularizer:
    """Base class for regularizers: identity corruption, no penalty, accepts every model."""

    def decline(self, model: nn.Module, info: DataInfo) -> str | None:
        """A reason why this regularizer does not fit ``model``, or None when it does."""
        return None

    def corrupt(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """The input the model sees in training (identity unless denoising)."""
        return x

    def penalty(self, x_in: Tensor, out: ModelOutput, model: nn.Module) -> Tensor:
        """A per-sample (B,) or batch-level scalar penalty; the core takes its mean."""
        return torch.zeros((), device=x_in.device)


@dataclass
class MetricContext:
    """Everything a metric may look at, after training. Tensors are on ``device``."""

    model: nn.Module
    data: Data
    settings: Mapping[str, Any]  # the suite's [eval] section
    device: torch.device
    generator: torch.Generator
    training: Mapping[str, float] = field(default_factory=dict)  # train_s, samples/s, ...


Metric = Callable[[MetricContext], dict[str, float]]
