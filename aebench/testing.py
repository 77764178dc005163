"""Conformance checks for plugin authors, to call from their own tests.

In the manner of scikit-learn's ``check_estimator``::

    from aebench.testing import check_model
    from my_package.models import MyModel

    def test_my_model_keeps_the_contract():
        check_model(MyModel)

Each check raises ``AssertionError`` (or ``aebench.checks.ContractError``) saying what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from aebench.checks import (
    ContractError,
    check_latent_variable_model,
    check_model_output,
    check_penalty,
)
from aebench.contracts import Data, DataInfo, LatentVariableModel, ModelOutput, Regularizer

IMAGE_SHAPES = ((1, 8, 8), (1, 28, 28), (3, 32, 32))
SMALL_IMAGES = DataInfo(shape=(1, 8, 8), kind="unit")
BATCH = 16


def sample_batch(info: DataInfo, batch: int = BATCH, seed: int = 0) -> Tensor:
    """A batch that looks like ``info`` says: binary, in [0, 1], or real-valued."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *info.shape, generator=generator)
    if info.kind == "binary":
        return torch.bernoulli(x, generator=generator)
    if info.kind == "real":
        return torch.randn(batch, *info.shape, generator=generator)
    return x


def check_gradients_flow(model: nn.Module, x: Tensor) -> None:
    """The mean loss back-propagates: finite gradients, and some parameter's is non-zero."""
    model.zero_grad(set_to_none=True)
    loss = model.loss(x, model(x)).mean()
    assert loss.requires_grad, "the loss does not depend on the parameters: no gradient flows"
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads, "the model has no trainable parameters"
    for name, grad in grads.items():
        assert grad is None or torch.isfinite(grad).all(), f"gradient of {name} is not finite"
    assert any(g is not None and g.abs().sum() > 0 for g in grads.values()), (
        "no parameter received a gradient from the loss"
    )


def check_training_lowers_the_loss(model: nn.Module, x: Tensor, steps: int = 30) -> None:
    """A few Adam steps on one batch lower the mean loss: the model can learn at all."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        before = model.loss(x, model(x)).mean().item()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model.loss(x, model(x)).mean().backward()
        optimizer.step()
    with torch.no_grad():
        after = model.loss(x, model(x)).mean().item()
    assert math.isfinite(after), "the loss is not finite after training"
    assert after < before, f"{steps} training steps did not lower the loss ({before} -> {after})"


def check_model(
    factory: Callable[..., nn.Module],
    *,
    shapes: Iterable[tuple[int, ...]] = ((64,), *IMAGE_SHAPES),
    kinds: Iterable[str] = ("unit", "binary"),
    params: Mapping[str, Any] | None = None,
) -> None:
    """Build the model for several data shapes and kinds; check forward, loss, gradients, the
    latent-variable contract when offered, and that a tiny training run lowers the loss."""
    params = dict(params or {})
    first: tuple[nn.Module, Tensor] | None = None
    for shape in shapes:
        for kind in kinds:
            info = DataInfo(shape=tuple(shape), kind=kind, n_classes=10)
            torch.manual_seed(0)
            model = factory(info, **params)
            x = sample_batch(info)
            check_model_output(model, x)
            code = model.encode(x)
            assert code.dim() == 2 and len(code) == len(x), f"encode gave {tuple(code.shape)}"
            recon = model.decode(code)
            assert recon.shape == x.shape, f"decode gave {tuple(recon.shape)}, not {x.shape}"
            if isinstance(model, LatentVariableModel):
                check_latent_variable_model(model, x)
            check_gradients_flow(model, x)
            first = first or (model, x)
    assert first is not None, "no shape or kind to check"
    check_training_lowers_the_loss(*first)  # on the first (smallest) case: it is the quickest


class _LinearAutoencoder(nn.Module):
    """A tiny autoencoder with a sigmoid code, for checking regularizers in isolation."""

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
        if split.y is not None:
            assert len(split.y) == len(x), f"{name}.y and {name}.x differ in length"
            if data.info.n_classes is not None:
                assert split.y.max() < data.info.n_classes, f"{name}.y has unknown classes"
        twin = getattr(again, name)
        assert torch.equal(split.x, twin.x), f"{name} differs between two loads: not deterministic"


__all__ = [
    "ContractError",
    "check_dataset",
    "check_gradients_flow",
    "check_model",
    "check_regularizer",
    "check_training_lowers_the_loss",
    "sample_batch",
]
