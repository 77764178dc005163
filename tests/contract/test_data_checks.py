"""``check_data``: a dataset's splits, labels, factors, ``log_density`` and ``render`` against the
contract, each break found with a message saying what was expected; the built-in datasets pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import aebench_offcontract as offcontract
import pytest
import torch

from aebench import Data, Split
from aebench.contract.checks import ContractError
from aebench.contract.data_checks import check_data


def grid() -> Data:
    return offcontract.grid()


def with_test_x(x: torch.Tensor) -> Data:
    data = grid()
    return replace(data, test=replace(data.test, x=x))


def noisy_render(factors: torch.Tensor) -> torch.Tensor:
    return offcontract._render(factors) + 0.1 * torch.rand(len(factors), 36)


def real(x: torch.Tensor) -> Data:
    data = offcontract.float64()
    info = replace(data.info, kind="real")
    return replace(data, info=info, train=Split(data.train.x.float()), test=Split(x))


BROKEN: dict[str, tuple[Callable[[], Data], str]] = {
    "float64": (offcontract.float64, "train.x is torch.float64; expected torch.float32"),
    "shape": (
        lambda: with_test_x(grid().test.x.view(-1, 6, 6)),
        "test.x has shape (18, 6, 6); expected (N, *info.shape) = (N, 36)",
    ),
    "binary": (
        lambda: with_test_x(grid().test.x * 0.5),
        "test.x holds values other than 0 and 1; info.kind 'binary' expects {0, 1}",
    ),
    "unit": (
        lambda: replace(offcontract.float64(), train=Split(torch.full((4, 16), 1.5))),
        "train.x ranges over [1.5, 1.5]; info.kind 'unit' expects [0, 1]",
    ),
    "real": (
        lambda: real(torch.tensor([[float("nan")] * 16])),
        "test.x holds NaN or inf; expected finite values",
    ),
    "labels": (
        lambda: replace(grid(), train=replace(grid().train, y=torch.zeros(3, dtype=torch.long))),
        "train.y has shape (3,); expected one label per sample, (18,)",
    ),
    "factors": (
        lambda: replace(grid(), test=replace(grid().test, factors=grid().test.factors[:, :1])),
        "test.factors has shape (18, 1); expected (N, len(info.factor_names)) = (18, 2)",
    ),
    "log_density shape": (
        lambda: replace(grid(), log_density=lambda x: torch.zeros(len(x), 1)),
        "log_density(train.x[:8]) has shape (8, 1); expected one number per sample, (8,)",
    ),
    "log_density on test": (  # finite on the training split, not on the test split
        lambda: replace(
            grid(),
            log_density=lambda x: torch.where(
                torch.equal(x, grid().test.x[:8]) * torch.ones(len(x), dtype=torch.bool),
                torch.tensor(float("-inf")),
                torch.tensor(0.0),
            ),
        ),
        "log_density(test.x[:8]) is not finite",
    ),
    "render swapped": (
        offcontract.grid_swapped,
        "render(train.factors[:8]) disagrees with train.x[:8]",
    ),
    "render noisy": (
        lambda: replace(grid(), render=noisy_render),
        "render(train.factors[:8]) differs between two calls",
    ),
    "render float64": (
        lambda: replace(grid(), render=lambda f: offcontract._render(f).double()),
        "render(train.factors[:8]) is torch.float64; expected torch.float32",
    ),
    "render shape": (
        lambda: replace(grid(), render=lambda f: offcontract._render(f).view(-1, 6, 6)),
        "render(train.factors[:8]) has shape (8, 6, 6); expected (k, *info.shape) = (8, 36)",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_an_off_contract_dataset_is_found(case: str) -> None:
    make, message = BROKEN[case]
    with pytest.raises(ContractError) as caught:
        check_data(make())
    assert message in str(caught.value)


def test_a_swapped_render_says_which_sample_and_order() -> None:
    with pytest.raises(ContractError, match=r"info.factor_names \('row', 'col'\)"):
        check_data(offcontract.grid_swapped())


def test_dynamic_binarisation_is_checked_as_drawn() -> None:
    """Grey stored training inputs are the contract when every batch is drawn binary."""
    data = grid()
    grey = replace(data, train=replace(data.train, x=data.train.x * 0.7), render=None)
    with pytest.raises(ContractError, match="info.kind 'binary'"):
        check_data(grey)
    check_data(replace(grey, batch_transform=lambda x, g: torch.bernoulli(x, generator=g)))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("dsprites", {}),
        ("shapes-small", {}),
        ("digits", {"binarize": "dynamic"}),
        ("digits", {"binarize": "static", "val_fraction": 0.1}),
        ("ppca", {}),
        ("mixture2d", {}),
    ],
)
def test_the_built_in_datasets_keep_the_contract(plugins, name, params) -> None:
    """Among them every built-in with ``render``: rendered exactly as their splits' images."""
    check_data(plugins.datasets.get(name).factory(**params))


def test_a_tidy_grid_passes() -> None:
    check_data(grid())
