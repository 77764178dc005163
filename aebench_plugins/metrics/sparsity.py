"""Sparsity of the code on the test split, for every model (the deterministic ``encode``)."""

from __future__ import annotations

from aebench import MetricContext

ACTIVE_THRESHOLD = 0.05


def code_mean_abs(context: MetricContext) -> dict[str, float]:
    """Mean |a| over the units of the test codes (every model)."""
    codes = context.codes()
    return {"code_mean_abs": codes.abs().mean().item()}


def code_frac_active(context: MetricContext) -> dict[str, float]:
    """Fraction of test code units with |a| > 0.05 (every model)."""
    codes = context.codes()
    return {"code_frac_active": (codes.abs() > ACTIVE_THRESHOLD).double().mean().item()}
