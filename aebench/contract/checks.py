"""Checks that a plugin keeps the contract, with messages that say what was expected.

The runner applies them to the first batch of every trial; ``aebench.testing`` applies them (and
more) in plugin authors' own tests.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Mapping

from torch import Tensor, nn
from torch.distributions import Distribution

from aebench.contract.data import DataInfo
from aebench.contract.metric import Metric
from aebench.contract.model import LatentVariableModel, ModelOutput, Regularizer


class ContractError(Exception):
    """A plugin returned something off-contract; the message says what, and what was expected."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def _shape(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__


def check_model_output(model: nn.Module, x: Tensor) -> ModelOutput:
    """One forward pass and loss on ``x``: the output, code and loss have the contract's shapes."""
    batch = len(x)
    out = model(x)
    _expect(isinstance(out, ModelOutput), f"forward returned {type(out).__name__}, not ModelOutput")
    _expect(
        isinstance(out.recon, Tensor) and out.recon.shape == x.shape,
        f"reconstruction has shape {_shape(out.recon)}; expected the input's {tuple(x.shape)}",
    )
    _expect(
        isinstance(out.code, Tensor) and out.code.dim() == 2 and len(out.code) == batch,
        f"code has shape {_shape(out.code)}; expected (batch, latent) = ({batch}, ...)",
    )
    loss = model.loss(x, out)
    _expect(
        isinstance(loss, Tensor) and loss.shape == (batch,),
        f"loss has shape {_shape(loss)}; expected one number per sample, shape ({batch},)",
    )
    return out


def _log_prob(what: str, distribution: Distribution, value: Tensor) -> Tensor:
    """``log_prob``, with torch's complaint (a shape that does not broadcast, a value outside the
    support) turned into a contract error that says which distribution refused which value."""
    try:
        return distribution.log_prob(value)
    except Exception as exc:  # torch raises ValueError or RuntimeError, with long messages
        message = str(exc).splitlines()[0][:300]
        kind = "z" if what.startswith(("prior", "posterior")) else "the data"
        raise ContractError(
            f"{what}.log_prob cannot score {kind} of shape {tuple(value.shape)}:"
            f" {type(exc).__name__}: {message}"
        ) from None


def check_latent_variable_model(model: LatentVariableModel, x: Tensor) -> int:
    """prior, posterior and likelihood are distributions of the right batch and event shapes, and
    the posterior's mean (where it has one: the metrics read it as the code) is ``(B, latent)``;
    returns ``latent``, the width of the posterior's samples."""
    batch = len(x)
    posterior = model.posterior(x)
    z = posterior.rsample()
    _expect(
        z.dim() == 2 and len(z) == batch,
        f"posterior(x) {type(posterior).__name__} samples have shape {_shape(z)};"
        f" expected (batch, latent) = ({batch}, ...)",
    )
    latent = z.shape[1]
    mean = _mean(posterior)
    _expect(
        mean is None or tuple(mean.shape) == (batch, latent),
        f"posterior(x) {type(posterior).__name__}.mean has shape {_shape(mean)};"
        f" expected (batch, latent) = ({batch}, {latent}), the shape of its samples",
    )
    prior = model.prior()
    _expect(
        tuple(prior.event_shape) == (latent,),
        f"prior() {type(prior).__name__} has event shape {tuple(prior.event_shape)};"
        f" expected ({latent},)",
    )
    for name, dist in (("prior()", prior), ("posterior(x)", posterior)):
        log_q = _log_prob(f"{name} {type(dist).__name__}", dist, z)
        _expect(
            log_q.shape == (batch,),
            f"{name} {type(dist).__name__}.log_prob(z) has shape {_shape(log_q)};"
            f" expected one number per sample, ({batch},)",
        )
    likelihood = model.likelihood(z)
    _expect(
        tuple(likelihood.event_shape) == tuple(x.shape[1:]),
        f"likelihood(z) {type(likelihood).__name__} has event shape"
        f" {tuple(likelihood.event_shape)}; expected the data's {tuple(x.shape[1:])}",
    )
    log_p = _log_prob(f"likelihood(z) {type(likelihood).__name__}", likelihood, x)
    _expect(
        log_p.shape == (batch,),
        f"likelihood(z) {type(likelihood).__name__}.log_prob(x) has shape {_shape(log_p)};"
        f" expected one number per sample, ({batch},)",
    )
    return latent


def _mean(distribution: Distribution) -> Tensor | None:
    """The distribution's mean, or None where it has no closed form (torch raises then)."""
    try:
        return distribution.mean
    except NotImplementedError:
        return None


def check_encode(model: nn.Module, x: Tensor, out: ModelOutput, latent: int | None) -> None:
    """``encode(x)`` is the code the metrics read: ``(B, latent)``, as wide as ``forward``'s code
    (and, for a latent-variable model, as the posterior's samples); ``decode`` maps it back to
    the input's shape. A code of another shape would broadcast silently inside a metric (a
    ``(B, 1, latent)`` code) or be measured as the wrong code (mean and log-variance side by
    side)."""
    batch, width = len(x), out.code.shape[1]
    if latent is not None:
        _expect(
            width == latent,
            f"forward's code has width {width} but posterior(x)'s samples {latent};"
            " expected one latent width",
        )
    against = "forward's code" + (" and posterior(x)'s samples" if latent is not None else "")
    code = model.encode(x)
    _expect(
        isinstance(code, Tensor) and tuple(code.shape) == (batch, width),
        f"encode(x) returned shape {_shape(code)}; expected (batch, latent) = ({batch}, {width}),"
        f" the shape of {against}",
    )
    recon = model.decode(code)
    _expect(
        isinstance(recon, Tensor) and recon.shape == x.shape,
        f"decode(encode(x)) has shape {_shape(recon)}; expected the input's {tuple(x.shape)}",
    )


def _has_methods(model: nn.Module, *names: str) -> None:
    """The contract's methods are there (before: torch's AttributeError, naming no contract)."""
    missing = [name for name in names if not callable(getattr(model, name, None))]
    _expect(not missing, f"{type(model).__name__} has no {', '.join(missing)} method")


def check_model_contract(model: nn.Module, x: Tensor) -> ModelOutput:
    """Everything of a model's contract that one batch shows, in the runner's order: a
    latent-variable model's distributions before its own ``loss`` runs (a wrong event shape met
    first inside the loss would surface as a bare torch error), then ``forward`` and ``loss``,
    then ``encode`` and ``decode`` against them."""
    latent = None
    if isinstance(model, LatentVariableModel):
        latent = check_latent_variable_model(model, x)
    _has_methods(model, "loss")
    out = check_model_output(model, x)
    _has_methods(model, "encode", "decode")
    check_encode(model, x, out, latent)
    return out


def check_metric_values(metric: Metric, values: object) -> dict[str, float]:
    """A metric's result: exactly its declared columns, each a finite real number or NaN."""
    declared = list(metric.column_names)
    _expect(
        isinstance(values, Mapping) and set(values) == set(declared),
        f"returned {sorted(values) if isinstance(values, Mapping) else type(values).__name__};"
        f" it declares the columns {declared}",
    )
    out = {}
    for column, value in values.items():  # type: ignore[union-attr]
        _expect(
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and not math.isinf(value),
            f"returned {column} = {value!r}; a finite number (or NaN) expected",
        )
        out[column] = float(value)
    return out


def check_metric_reasons(values: Mapping[str, float], reasons: object) -> dict[str, str]:
    """The reasons a metric gave for its NaN columns: one line each, for a column it returned
    NaN in."""
    _expect(isinstance(reasons, Mapping), f"gave reasons {reasons!r}; a column -> reason mapping")
    for column, reason in reasons.items():  # type: ignore[union-attr]
        _expect(
            column in values and math.isnan(values[column]),
            f"gave a reason for {column!r}, which it returned no NaN in",
        )
        _expect(
            isinstance(reason, str) and reason.strip() and "\n" not in reason,
            f"gave {column!r} the reason {reason!r}; one line of text expected",
        )
    return dict(reasons)  # type: ignore[arg-type]


def check_penalty(regularizer: Regularizer, x: Tensor, out: ModelOutput, model: nn.Module) -> None:
    penalty = regularizer.penalty(x, out, model)
    _expect(
        isinstance(penalty, Tensor) and penalty.shape in {(), (len(x),)},
        f"penalty has shape {_shape(penalty)}; expected a scalar or ({len(x)},)",
    )


def check_first_batch(
    model: nn.Module, regularizer: Regularizer, info: DataInfo, x: Tensor
) -> tuple[str, ContractError] | None:
    """Which plugin kind broke the contract on ``x`` (and how), or None. Trains nothing."""
    try:
        out = check_model_contract(model, x)
    except ContractError as exc:
        return "model", exc
    try:
        check_penalty(regularizer, x, out, model)
    except ContractError as exc:
        return "regularizer", exc
    return None


@contextlib.contextmanager
def distribution_checks_off() -> Iterator[None]:
    """torch.distributions' argument checks off while a model trains, restored after.

    They ran with the model's own checks on the first batch (``check_first_batch``, before
    training), and the data were checked as they loaded; at every step they cost about what the
    likelihood does (a Bernoulli's log-probability of 20 MNIST images: 226 against 103 us, 6% of
    a Burda et al. step), and their data-dependent ``if`` cannot run under vmap (stacked seeds).
    A NaN they would have raised on is the loss's NaN instead: the epoch's loss says diverged."""
    validating = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(validating)
