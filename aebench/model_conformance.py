"""``check_model`` and the checks it runs on each shape and kind of data: the output's contract,
the latent-variable contract when offered, a declared latent hierarchy, gradients, the auxiliary
and ex-post hooks, and that a few training steps lower the loss.

Part of the conformance kit that ``aebench.testing`` offers plugin authors; import them from
there. Each check raises ``AssertionError`` (or ``ContractError``) saying what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from aebench.contract.checks import ContractError, check_model_contract
from aebench.contract.data import DataInfo
from aebench.contract.model import ModelOutput, latent_layer_slices

IMAGE_SHAPES = ((1, 8, 8), (1, 28, 28), (3, 32, 32))
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


def check_auxiliary(model: nn.Module, x: Tensor) -> None:
    """The auxiliary hook, for a model that declares ``auxiliary_parameters``: its parameters are
    the model's own (kept by ``state_dict``) and trainable; ``auxiliary_loss`` on the detached
    output is ``(B,)`` or a scalar, finite, and trains those parameters and nothing else."""
    from aebench.run.auxiliary import auxiliary_parameters, detached

    extra = auxiliary_parameters(model)
    if extra is None:
        return
    assert extra, "auxiliary_parameters() gave no trainable parameter"
    owned = {id(p) for p in model.parameters()}
    assert all(id(p) in owned for p in extra), (
        "auxiliary_parameters() gave a parameter that is not the model's: state_dict would lose it"
    )
    out = detached(model(x))
    loss = model.auxiliary_loss(x, out)
    assert isinstance(loss, Tensor) and loss.shape in ((), (len(x),)), (
        f"auxiliary_loss has shape {tuple(getattr(loss, 'shape', ()))}; expected () or ({len(x)},)"
    )
    assert torch.isfinite(loss).all(), "auxiliary_loss is not finite"
    model.zero_grad(set_to_none=True)
    loss.mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in extra), (
        "auxiliary_loss gives no gradient to the auxiliary parameters"
    )
    left_out = {id(p) for p in extra}
    reached = [
        n for n, p in model.named_parameters() if id(p) not in left_out and p.grad is not None
    ]
    assert not reached, f"auxiliary_loss reaches parameters that are not auxiliary: {reached[:3]}"
    model.zero_grad(set_to_none=True)


def check_ex_post(model: nn.Module, x: Tensor) -> None:
    """For a model with ``fit_ex_post``: the fit runs as the core runs it (eval mode, no
    gradients, on training inputs), and a ``prior()`` it offers then samples codes ``(N, latent)``
    that ``decode`` takes and scores them with one finite number each."""
    if not hasattr(model, "fit_ex_post"):
        return
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model.fit_ex_post(x)
        prior = getattr(model, "prior", None)
        if prior is not None:
            z = prior().sample((4,))
            latent = model.encode(x[:1]).shape[-1]
            assert z.shape == (4, latent), f"prior().sample((4,)) gave {tuple(z.shape)}"
            log_p = prior().log_prob(z)
            assert log_p.shape == (4,) and torch.isfinite(log_p).all(), "prior().log_prob failed"
            assert model.decode(z).shape == (4, *x.shape[1:]), "decode of prior samples"
    model.train(was_training)


def check_training_lowers_the_loss(model: nn.Module, x: Tensor, steps: int = 30) -> None:
    """A few Adam steps on one batch lower the mean loss: the model can learn at all.

    A model with auxiliary parameters is checked one optimizer at a time (``check_each_player``),
    as adversarial losses need not fall while both players move."""
    from aebench.run.auxiliary import auxiliary_parameters

    extra = auxiliary_parameters(model)
    if extra is not None:
        check_each_player(model, x, extra, steps)
        return
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


def check_each_player(
    model: nn.Module, x: Tensor, extra: list[nn.Parameter], steps: int = 30
) -> None:
    """Main steps (the auxiliary parameters held) lower the model's loss; then steps of the
    auxiliary parameters alone, on the output detached, lower the auxiliary loss."""
    from aebench.run.auxiliary import detached, main_parameters

    _lowers(model, x, main_parameters(model, extra), model.loss, steps, "")
    with torch.no_grad():
        out = detached(model(x))
    _lowers(model, x, extra, lambda x, _: model.auxiliary_loss(x, out), steps, "auxiliary ")


def _lowers(
    model: nn.Module,
    x: Tensor,
    params: list[nn.Parameter],
    loss: Callable[[Tensor, ModelOutput], Tensor],
    steps: int,
    what: str,
) -> None:
    """``steps`` Adam steps over ``params`` lower the mean of ``loss(x, model(x))``, measured
    before and after with torch's stream seeded alike (the same samples, the same draws)."""

    def measured() -> float:
        torch.manual_seed(0)
        with torch.no_grad():
            return loss(x, model(x)).mean().item()

    optimizer = torch.optim.Adam(params, lr=1e-2)
    before = measured()
    torch.manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss(x, model(x)).mean().backward()
        optimizer.step()
    after = measured()
    assert math.isfinite(after), f"the {what}loss is not finite after training"
    assert after < before, (
        f"{steps} training steps did not lower the {what}loss ({before} -> {after})"
    )


def check_latent_layers(model: nn.Module, code_size: int) -> None:
    """A declared latent hierarchy (``latent_layers``) slices the code exactly."""
    try:
        latent_layer_slices(model, code_size)
    except ValueError as exc:
        raise ContractError(str(exc)) from None


DATA_KINDS = ("binary", "unit", "real")


def check_model(
    factory: Callable[..., nn.Module],
    *,
    shapes: Iterable[tuple[int, ...]] = ((64,), *IMAGE_SHAPES),
    kinds: Iterable[str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> None:
    """Build the model for several data shapes and kinds; check forward, loss, gradients, the
    latent-variable contract when offered, a declared latent hierarchy (``latent_layers``), and
    that a tiny training run lowers the loss.

    ``kinds`` defaults to the data kinds the model declares (its ``data_kinds`` attribute), or
    every kind (binary, unit interval, real) when it declares none.
    """
    params = dict(params or {})
    if kinds is None:
        kinds = getattr(factory, "data_kinds", DATA_KINDS)
    first: tuple[nn.Module, Tensor] | None = None
    for shape in shapes:
        for kind in kinds:
            info = DataInfo(shape=tuple(shape), kind=kind, n_classes=10)
            torch.manual_seed(0)
            model = factory(info, **params)
            x = sample_batch(info)
            out = check_model_contract(model, x)  # as the runner does on its first batch
            check_latent_layers(model, out.code.shape[1])
            check_gradients_flow(model, x)
            check_auxiliary(model, x)
            check_ex_post(model, x)
            first = first or (model, x)
    assert first is not None, "no shape or kind to check"
    check_training_lowers_the_loss(*first)  # on the first (smallest) case: it is the quickest
