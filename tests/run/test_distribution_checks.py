"""torch.distributions' argument checks are off while a model trains (they ran on the first batch,
with the model's own checks) and on again after, also when training fails."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution

from aebench import Data, DataInfo, ModelOutput, Regularizer, Split
from aebench.contract.checks import check_first_batch
from aebench.run.sections import TrainSection
from aebench.run.train import train_model

INFO = DataInfo(shape=(4,), kind="binary")


class Recording(nn.Module):
    """A Bernoulli model that records whether distributions check their arguments at each step."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(4))
        self.checked: list[bool] = []
        self.fail_at = fail_at

    def forward(self, x: Tensor) -> ModelOutput:
        return ModelOutput(code=x, recon=torch.sigmoid(self.logits).expand_as(x))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        self.checked.append(Distribution._validate_args)
        if len(self.checked) == self.fail_at:
            raise RuntimeError("broken on purpose")
        return -Bernoulli(logits=self.logits.expand_as(x)).log_prob(x).sum(1)


def _train(model: nn.Module, x: Tensor) -> None:
    train_model(
        model,
        Regularizer(),
        Data(INFO, Split(x), Split(x)),
        TrainSection(epochs=2, batch_size=4, lr=1e-2),
        generator=torch.Generator().manual_seed(0),
    )


@pytest.fixture(autouse=True)
def checking():
    before = Distribution._validate_args
    Distribution.set_default_validate_args(True)
    yield
    Distribution.set_default_validate_args(before)


def test_the_steps_run_unchecked_and_the_checks_come_back_after() -> None:
    model = Recording()
    _train(model, torch.ones(8, 4))
    assert model.checked and not any(model.checked)
    assert Distribution._validate_args is True


def test_the_checks_come_back_when_training_fails() -> None:
    with pytest.raises(RuntimeError, match="broken on purpose"):
        _train(Recording(fail_at=2), torch.ones(8, 4))
    assert Distribution._validate_args is True


def test_the_first_batch_is_still_checked_before_training() -> None:
    # grey levels are outside a Bernoulli's support: the check before training says so
    with pytest.raises(ValueError, match="support"):
        check_first_batch(Recording(), Regularizer(), INFO, torch.full((4, 4), 0.5))
