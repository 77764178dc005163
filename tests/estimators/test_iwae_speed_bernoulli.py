"""The Bernoulli log-mass's CPU path (exp, plus one, log, in place, instead of softplus), which
the IWAE evaluation takes without gradients and training takes with its own (x - sigmoid(l)):
the same values and gradients as torch's Bernoulli, saturated logits included, softplus left to
the rows whose exp overflowed, and torch's softplus under vmap."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.distributions import Bernoulli, Independent

from aebench_plugins.models import likelihoods


def _cases() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of 6 codes of a 2x3x3 image, one code with saturated logits (exp overflows in
    float32 above 88.7), and a binary image per code."""
    g = torch.Generator().manual_seed(0)
    logits = 8 * torch.randn(6, 2, 3, 3, generator=g)
    logits[2, 0, 0, :] = torch.tensor([120.0, -120.0, 30.0])
    values = torch.rand(6, 2, 3, 3, generator=g).round()
    return logits, values


def test_without_gradients_the_log_mass_is_torchs_saturated_rows_included() -> None:
    logits, values = _cases()
    with torch.no_grad():
        fused = likelihoods.bernoulli(logits, 3).log_prob(values)
    reference = Independent(Bernoulli(logits=logits.double(), validate_args=False), 3)
    assert torch.isfinite(fused).all()
    expected = reference.log_prob(values.double())
    torch.testing.assert_close(fused.double(), expected, rtol=1e-6, atol=0)


@pytest.fixture
def rows_through_softplus(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows of each call of the likelihoods' softplus, appended as it is called."""
    rows: list[int] = []
    softplus = torch.nn.functional.softplus

    def counting(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        rows.append(len(x))
        return softplus(x, *args, **kwargs)

    monkeypatch.setattr(likelihoods.F, "softplus", counting)
    return rows


def test_without_gradients_softplus_runs_only_on_rows_whose_exp_overflowed(
    rows_through_softplus: list[int],
) -> None:
    logits, values = _cases()
    with torch.no_grad():
        likelihoods.bernoulli(logits, 3).log_prob(values)
    assert rows_through_softplus == [1]  # the saturated code's row only


@pytest.mark.parametrize("requires_grad", [True, False])
def test_with_gradients_the_log_mass_still_differentiates(requires_grad: bool) -> None:
    logits, values = _cases()
    logits.requires_grad_(requires_grad)
    log_mass = likelihoods.bernoulli(logits, 3).log_prob(values)
    assert log_mass.requires_grad == requires_grad
    if requires_grad:
        log_mass.sum().backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_with_gradients_softplus_still_runs_only_on_rows_whose_exp_overflowed(
    rows_through_softplus: list[int],
) -> None:
    logits, values = _cases()
    logits.requires_grad_()
    likelihoods.bernoulli(logits, 3).log_prob(values).sum().backward()
    assert rows_through_softplus == [1]
    # d/dl of x l - softplus(l) is x - sigmoid(l), the saturated logits' included
    torch.testing.assert_close(logits.grad, values - torch.sigmoid(logits.detach()))


def test_the_gradients_and_their_gradients_are_exact_in_float64() -> None:
    g = torch.Generator().manual_seed(1)
    logits = (4 * torch.randn(3, 2, 5, generator=g, dtype=torch.float64)).requires_grad_()
    grey = torch.rand(3, 2, 5, generator=g, dtype=torch.float64).requires_grad_()

    def log_mass(logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return likelihoods.bernoulli(logits, 2).log_prob(value)

    assert torch.autograd.gradcheck(log_mass, (logits, grey))
    assert torch.autograd.gradgradcheck(log_mass, (logits, grey))


def test_under_vmap_the_log_mass_is_each_rows_own() -> None:
    logits, values = _cases()
    logits.requires_grad_()

    def one(logits_row: torch.Tensor, value_row: torch.Tensor) -> torch.Tensor:
        return likelihoods.bernoulli(logits_row, 3).log_prob(value_row)

    with warnings.catch_warnings():  # a kernel without a batching rule runs as a slow loop
        warnings.filterwarnings("error", message=".*batching rule", category=UserWarning)
        mapped = torch.vmap(one)(logits, values)
    rows = torch.stack([one(row, v) for row, v in zip(logits, values, strict=True)])
    torch.testing.assert_close(mapped, rows)
    (grad,) = torch.autograd.grad(mapped.sum(), logits)
    torch.testing.assert_close(grad, values - torch.sigmoid(logits.detach()))
