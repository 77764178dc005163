"""What the core holds out of a dynamically binarised training split to validate on, and the
training inputs whose loss terms it records each epoch, are of the kind training sees: binarised
once, seeded, as the dataset's own validation and test splits are (before: grey levels under a
Bernoulli likelihood, the validation loss and the search's likelihoods not those of the data)."""

from __future__ import annotations

import torch

from aebench.plugins.manager import Plugins
from aebench.run.train import TERMS_SAMPLES, watched_inputs
from aebench.run.validation import hold_out


def _dynamic_digits(plugins: Plugins):
    return plugins.datasets.get("digits").factory(binarize="dynamic")


def test_a_held_out_split_of_dynamic_data_is_binarised_once_and_seeded(plugins: Plugins) -> None:
    data = _dynamic_digits(plugins)
    assert data.info.kind == "binary" and data.batch_transform is not None
    assert len(data.train.x.unique()) > 2  # stored as grey levels, binarised batch by batch
    rest, val = hold_out(data.train, 0.1, seed=3, transform=data.batch_transform)
    assert set(val.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(val.x, hold_out(data.train, 0.1, 3, data.batch_transform)[1].x)
    grey = hold_out(data.train, 0.1, seed=3)[1]
    assert torch.equal(val.y, grey.y)  # the same samples, their labels with them
    assert ((val.x == 1) == (grey.x > 0)).float().mean() > 0.6  # drawn from their intensities
    assert torch.equal(rest.x, hold_out(data.train, 0.1, seed=3)[0].x)  # training's: grey


def test_the_watched_training_inputs_of_dynamic_data_are_binary(plugins: Plugins) -> None:
    data = _dynamic_digits(plugins)
    generator = torch.Generator().manual_seed(5)
    watched = watched_inputs(data, generator)
    assert len(watched) == TERMS_SAMPLES and set(watched.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(watched, watched_inputs(data, generator))  # the same every epoch
    plain = plugins.datasets.get("digits").factory()
    assert torch.equal(watched_inputs(plain, generator), plain.train.x[:TERMS_SAMPLES])
