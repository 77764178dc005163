"""Datasets generated from known factors: the images are those of their factors, the splits and
subsets carry the factors along, and bad parameters are refused with their place."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch

from aebench import DataInfo, Split
from aebench.plugins.params import params_model
from aebench.run.validation import hold_out
from aebench.testing import check_dataset
from aebench_plugins.datasets.dsprites import DSPRITES_GEOMETRY, dsprites, shapes_small
from aebench_plugins.datasets.sprites import Geometry, render_sprites

SIZE = 64


def _expected_square(scale: float, x: float, y: float) -> torch.Tensor:
    """The pixels whose centres lie in the unrotated square, pixel by pixel."""
    margin, half = DSPRITES_GEOMETRY.margin, DSPRITES_GEOMETRY.half * scale
    centre_u, centre_v = margin + (1 - 2 * margin) * x, margin + (1 - 2 * margin) * y
    image = torch.zeros(SIZE, SIZE)
    for row in range(SIZE):
        for column in range(SIZE):
            u, v = (column + 0.5) / SIZE, (row + 0.5) / SIZE
            if abs(u - centre_u) <= half and abs(v - centre_v) <= half:
                image[row, column] = 1.0
    return image


@pytest.mark.parametrize(("scale", "x", "y"), [(5, 0, 0), (0, 31, 7), (3, 16, 31)])
def test_a_dsprites_square_covers_the_pixels_of_its_position_and_scale(
    scale: int, x: int, y: int
) -> None:
    data = dsprites(n_train=1, n_test=1)
    image = data.render(torch.tensor([[0, scale, 0, x, y]]))
    # dSprites' values: scale 0.5 .. 1 in 6 steps, positions 0 .. 1 in 32
    expected = _expected_square(0.5 + 0.1 * scale, x / 31, y / 31)
    assert image.shape == (1, 1, SIZE, SIZE)
    assert torch.equal(image[0, 0], expected)
    assert expected.sum() > 0


def test_orientation_turns_the_sprite_counter_clockwise_and_a_full_turn_is_none() -> None:
    geometry = Geometry(half=0.3, margin=0.5)  # centred
    kwargs = {"size": 32, "geometry": geometry}
    heart = torch.tensor([2, 2])
    upright, turned = render_sprites(
        heart,
        torch.ones(2),
        torch.tensor([0.0, math.pi / 2]),
        torch.zeros(2),
        torch.zeros(2),
        **kwargs,
    )
    # upright: the lobes up, the tip down; a quarter turn counter-clockwise: lobes left
    assert upright[0, :16].sum() > upright[0, 16:].sum()
    assert turned[0, :, :16].sum() > turned[0, :, 16:].sum()
    data = dsprites(n_train=1, n_test=1)
    first, last = data.render(torch.tensor([[1, 5, 0, 10, 20], [1, 5, 39, 10, 20]]))
    assert torch.equal(first, last)  # dSprites' orientations run 0 .. 2 pi, both ends included
    ellipse = render_sprites(
        torch.tensor([1, 1]),
        torch.ones(2),
        torch.tensor([0.0, math.pi / 2]),
        torch.zeros(2),
        torch.zeros(2),
        **kwargs,
    )
    assert torch.equal(ellipse[0, 0].T, ellipse[1, 0])


def test_every_split_holds_the_images_of_its_factors() -> None:
    data = dsprites(n_train=300, n_test=100, seed=3)
    assert data.info.factor_names == ("shape", "scale", "orientation", "x", "y")
    assert data.info.factor_sizes == (3, 6, 40, 32, 32)
    for split in (data.train, data.test):
        assert split.factors is not None and split.factors.dtype == torch.int64
        assert torch.equal(data.render(split.factors), split.x)
        assert torch.equal(split.y, split.factors[:, 0])  # labels: the shape
        for column, size in enumerate(data.info.factor_sizes):
            assert 0 <= split.factors[:, column].min() and split.factors[:, column].max() < size
    drawn = torch.cat([data.train.factors, data.test.factors])
    assert len(torch.unique(drawn, dim=0)) == 400  # distinct combinations: train and test apart
    again = dsprites(n_train=300, n_test=100, seed=3)
    assert torch.equal(again.train.factors, data.train.factors)
    other = dsprites(n_train=300, n_test=100, seed=4)
    assert not torch.equal(other.train.factors, data.train.factors)


def test_factor_ranges_subset_the_grid_and_a_single_value_is_no_factor() -> None:
    data = dsprites(n_train=50, n_test=10, shape=[0, 0], scale=[5, 5], x=[30, 31], y=[0, 3])
    assert data.info.factor_names == ("orientation", "x", "y")
    assert data.info.factor_sizes == (40, 2, 4)
    assert data.train.y is None and data.info.n_classes is None
    # a square of scale 1 at x index 30 + 1 (the factor's value 1), y index 0 + 2
    image = data.render(torch.tensor([[0, 1, 2]]))[0, 0]
    assert torch.equal(image, _expected_square(1.0, 31 / 31, 2 / 31))


def test_more_samples_than_combinations_is_an_error_naming_the_dataset() -> None:
    with pytest.raises(
        ValueError, match=r"dsprites: n_train \+ n_test = 12: 12 samples asked of 8"
    ):
        dsprites(
            n_train=10, n_test=2, shape=[0, 0], scale=[0, 1], orientation=[0, 0], x=[0, 1], y=[0, 1]
        )


def test_a_factor_range_out_of_the_grid_is_refused_by_the_parameter_schema() -> None:
    schema = params_model("dsprites", dsprites)
    assert schema.model_validate({"x": [2, 31]}).x == [2, 31]
    for bad in ([0, 32], [5, 4], [1], [-1, 3]):
        with pytest.raises(pydantic.ValidationError, match="x"):
            schema.model_validate({"x": bad})


def test_both_datasets_are_registered_and_keep_the_dataset_contract(plugins) -> None:
    datasets = plugins.datasets
    assert datasets.get("dsprites").factory is dsprites
    assert datasets.get("shapes-small").factory is shapes_small
    check_dataset(shapes_small)
    check_dataset(dsprites, params={"n_train": 20, "n_test": 10})
    small = shapes_small()
    assert small.info.shape == (1, 16, 16) and small.info.factor_sizes == (3, 3, 8, 8)
    assert torch.equal(small.render(small.test.factors), small.test.x)


def test_holding_out_and_moving_a_split_keeps_each_sample_with_its_factors() -> None:
    data = shapes_small()
    rest, val = hold_out(data.train, 0.25, seed=0)
    assert len(val) == math.floor(0.25 * len(data.train)) and len(rest) + len(val) == len(
        data.train
    )
    for part in (rest, val):
        assert torch.equal(data.render(part.factors), part.x)
        assert torch.equal(part.y, part.factors[:, 0])
    moved = data.to("cpu")
    assert torch.equal(moved.test.factors, data.test.factors)
    index = torch.tensor([3, 1])
    taken = data.test.take(index)
    assert torch.equal(taken.factors, data.test.factors[index])


def test_factor_names_and_sizes_go_together() -> None:
    with pytest.raises(ValueError, match="together"):
        DataInfo(shape=(1,), kind="real", factor_names=("a",))
    with pytest.raises(ValueError, match="1 factor names but 2 sizes"):
        DataInfo(shape=(1,), kind="real", factor_names=("a",), factor_sizes=(2, 3))
    assert Split(torch.zeros(2, 1)).factors is None
