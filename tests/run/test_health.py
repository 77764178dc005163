"""Training health: dead code units, posterior collapse and a stalled loss become warnings; an
estimator's diagnostic above its declared flag becomes an estimate note, not a warning."""

from __future__ import annotations

import math

import torch
from builders import build_suite
from torch.distributions import Independent, Normal

import aebench
from aebench import Column, Data, DataInfo, ModelOutput, Split
from aebench.contract.columns import BOOKKEEPING
from aebench.run.health import health_warnings
from aebench.run.measure import estimate_notes

DATA = Data(
    DataInfo(shape=(3,), kind="real"),
    train=Split(torch.randn(32, 3, generator=torch.Generator().manual_seed(0))),
    test=Split(torch.randn(16, 3, generator=torch.Generator().manual_seed(1))),
)
FALLING = [5.0, 4.0, 3.0, 2.0]


class Coded(torch.nn.Module):
    """Codes x as (x1, 0): its second unit never fires."""

    def encode(self, x):
        return torch.stack([x[:, 0], torch.zeros(len(x))], dim=1)

    def decode(self, z):
        return z[:, :1].expand(-1, 3)

    def forward(self, x):
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x, out):
        return (out.recon - x).pow(2).sum(1)


class Collapsed(Coded):
    """A latent-variable model whose posterior ignores its input: q(z|x) = p(z)."""

    def encode(self, x):
        return torch.zeros(len(x), 2)

    def prior(self):
        return Independent(Normal(torch.zeros(2), torch.ones(2)), 1)

    def posterior(self, x):
        return Independent(Normal(torch.zeros(len(x), 2), torch.ones(len(x), 2)), 1)

    def likelihood(self, z):
        return Independent(Normal(z[..., :1].expand(*z.shape[:-1], 3), 1.0), 1)


def test_a_code_unit_that_never_fires_is_dead() -> None:
    assert health_warnings(Coded(), DATA, {"loss": FALLING}) == [
        "1 of 2 code units dead (|a| <= 0.05 on every test input)"
    ]


def test_a_posterior_that_ignores_its_input_has_collapsed() -> None:
    warnings = health_warnings(Collapsed(), DATA, {"loss": FALLING})
    assert "posterior collapse: no active latent unit" in warnings


def test_a_loss_that_stopped_improving_is_told_and_a_falling_one_is_not() -> None:
    stalled = [5.0, 4.0, 3.0, 3.5, 3.6, 3.7]
    assert health_warnings(Coded(), DATA, {"loss": stalled})[-1] == (
        "the training loss stopped improving after epoch 3 of 6"
    )
    assert not [w for w in health_warnings(Coded(), DATA, {"loss": FALLING}) if "loss" in w]


def test_values_above_their_declared_flag_are_estimate_notes_in_declaration_order() -> None:
    columns = [
        Column("a_convergence", flag_above=0.1),
        Column("b_unflagged"),
        Column("c_ess_gap", flag_above=2.0),
        Column("d_nan", flag_above=0.0),
    ]
    row = {"a_convergence": 0.7812, "b_unflagged": 99.0, "c_ess_gap": 2.5, "d_nan": math.nan}
    assert estimate_notes(columns, row) == "a_convergence 0.781 > 0.1; c_ess_gap 2.5 > 2"
    assert estimate_notes(columns, row | {"a_convergence": 0.1, "c_ess_gap": 1.0}) == ""


def test_a_run_writes_estimate_notes_apart_from_training_warnings(tmp_path) -> None:
    def shaky(context) -> dict[str, float]:
        """An estimate and a diagnostic that says it has not converged."""
        return {"shaky": 1.0, "shaky_convergence": 0.5}

    class Shaky:
        @aebench.hookimpl
        def aebench_register_metrics(self, register):
            columns = [Column("shaky"), Column("shaky_convergence", flag_above=0.1)]
            register("shaky", aebench.Metric(shaky, columns=columns))

    plugins = aebench.load_plugins(extra=[Shaky()])
    suite = build_suite(metrics=["recon_mse", "shaky"])
    (row,) = aebench.run_suite(suite, output=tmp_path, device="cpu", plugins=plugins).rows
    assert row["notes"] == "shaky_convergence 0.5 > 0.1"
    assert "shaky" not in row["warnings"]
    assert "notes" in BOOKKEEPING  # a row column, not a metric
