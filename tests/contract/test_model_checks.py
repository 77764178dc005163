"""The model checks of the first batch: ``encode`` (the code the metrics read) is checked against
``forward``'s code and the posterior's samples, with what was expected in the message."""

from __future__ import annotations

import aebench_offcontract as offcontract
import pytest
import torch
from torch import distributions as D

from aebench import DataInfo, ModelOutput
from aebench.contract.checks import ContractError, check_first_batch, check_model_contract
from aebench.testing import check_model

INFO = DataInfo(shape=(16,), kind="real")


def batch(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 16, generator=torch.Generator().manual_seed(0))


class PosteriorMeanWide(offcontract.TidyVAE):
    """q(z|x)'s mean, which the metrics read as the code, is wider than its samples."""

    def posterior(self, x):
        q = super().posterior(x)

        class Wide(D.Independent):
            @property
            def mean(self):
                return torch.cat([super().mean, super().mean], dim=1)

        return Wide(q.base_dist, 1)


class DecodeFlat(offcontract.Encode3d):
    """encode and forward are right; decode returns flat vectors whatever the data's shape."""

    def encode(self, x):
        return self.encoder(x.flatten(1))

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decoder(code).view(-1, *self.shape))


EXPECTED = "expected (batch, latent) = (8, 2)"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (offcontract.Encode3d, f"encode(x) returned shape (8, 1, 2); {EXPECTED}"),
        (offcontract.EncodeMuLogvar, f"encode(x) returned shape (8, 4); {EXPECTED}"),
        (PosteriorMeanWide, f"posterior(x) Wide.mean has shape (8, 4); {EXPECTED}"),
    ],
)
def test_an_off_contract_code_is_found_on_the_first_batch(model, message) -> None:
    torch.manual_seed(0)
    broken = check_first_batch(model(INFO), None, INFO, batch())  # type: ignore[arg-type]
    assert broken is not None
    kind, error = broken
    assert kind == "model" and message in str(error)


def test_the_latent_variable_message_names_the_posterior() -> None:
    with pytest.raises(ContractError, match="the shape of forward's code and posterior"):
        check_model_contract(offcontract.EncodeMuLogvar(INFO), batch())


def test_decode_must_give_back_the_input_shape() -> None:
    info = DataInfo(shape=(1, 4, 4), kind="real")
    x = torch.randn(8, 1, 4, 4)
    with pytest.raises(ContractError, match=r"decode\(encode\(x\)\) has shape \(8, 16\)"):
        check_model_contract(DecodeFlat(info), x)


def test_a_tidy_model_passes() -> None:
    out = check_model_contract(offcontract.TidyVAE(INFO), batch())
    assert out.code.shape == (8, 2)


def test_the_conformance_kit_checks_encode_too() -> None:
    """A plugin author's own test finds what the runner would (it checked only encode's rank)."""
    with pytest.raises(ContractError, match=r"encode\(x\) returned shape \(16, 4\)"):
        check_model(offcontract.EncodeMuLogvar, shapes=[(16,)], kinds=["real"])
