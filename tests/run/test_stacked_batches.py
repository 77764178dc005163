"""The stacked group's batches (aebench.run.stacked_rows.GroupBatches), gathered at once into
buffers reused every step: each trial's rows drawn from its own generator as alone, also for
trials whose data tensors differ, and the short last batch of an epoch."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from aebench import Data, DataInfo, Split
from aebench.contract.model import Regularizer
from aebench.run.data import shuffled_batches
from aebench.run.stacked_rows import GroupBatches

TRIALS, N, BATCH = 4, 50, 8  # the last batch of an epoch is short: 2 rows


def dynamic(transform=None) -> Data:
    """Grey images in [0, 1], each batch binarised (``torch.bernoulli``) as drawn."""
    x = torch.rand(N, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    binarise = transform or (lambda x, g: torch.bernoulli(x, generator=g))
    info = DataInfo(shape=(1, 4, 4), kind="binary")
    return Data(info=info, train=Split(x), test=Split(x[:4]), batch_transform=binarise)


class Noisy(Regularizer):
    """A corruption that draws from the trial's generator."""

    def corrupt(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return x + torch.rand(x.shape, generator=generator)


def epoch(trials: list[tuple[Data, Regularizer, torch.Generator]]) -> list[tuple[Tensor, Tensor]]:
    orders = [shuffled_batches(N, BATCH, g) for _, _, g in trials]
    return [(x_in.clone(), x.clone()) for x_in, x in GroupBatches(trials).steps(orders)]


def alone(data: Data, regularizer: Regularizer, seed: int) -> list[tuple[Tensor, Tensor]]:
    """The trial's batches as ``train_model`` draws them alone."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for index in shuffled_batches(N, BATCH, generator):
        x = data.train.x.index_select(0, index)
        if data.batch_transform is not None:
            x = data.batch_transform(x, generator)
        out.append((regularizer.corrupt(x, generator), x))
    return out


@pytest.mark.parametrize("shared", [True, False])
def test_each_trial_draws_its_rows_from_its_own_stream(shared) -> None:
    data = dynamic()
    datas = [data if shared else dynamic() for _ in range(TRIALS)]
    trials = [(d, Noisy(), torch.Generator().manual_seed(s)) for s, d in enumerate(datas)]
    steps = epoch(trials)
    assert len(steps) == 7 and steps[-1][1].shape == (TRIALS, 2, 1, 4, 4)
    for seed in range(TRIALS):
        for (x_in, x), (own_in, own) in zip(steps, alone(data, Noisy(), seed), strict=True):
            assert torch.equal(x[seed], own) and torch.equal(x_in[seed], own_in)


def test_every_full_step_is_written_into_the_same_buffers() -> None:
    data = dynamic()
    trials = [(data, Noisy(), torch.Generator().manual_seed(s)) for s in range(TRIALS)]
    orders = [shuffled_batches(N, BATCH, g) for _, _, g in trials]
    steps = list(GroupBatches(trials).steps(orders))  # each step's tensors kept alive
    full = steps[:-1]  # the short last batch has buffers of its own
    assert len({x.data_ptr() for _, x in full}) == 1
    assert len({x_in.data_ptr() for x_in, _ in full}) == 1
    assert steps[-1][1].data_ptr() != full[0][1].data_ptr()
