"""The start a trial trained from (``start_digest``, aebench.run.start): the same for a seed's model
whatever else changes, another for another seed or another shape, the same whether the trial
trained alone or stacked, and kept through a resume from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from builders import build_suite, entry

import aebench
from aebench.plugins.manager import Plugins
from aebench.run.checkpoint import Checkpoints
from aebench.run.sections import TrainSection
from aebench.run.start import start_digest
from aebench.run.train import train_model

DIGITS = entry("digits")


def vae(plugins: Plugins, seed: int, hidden: int = 32) -> torch.nn.Module:
    data = plugins.datasets.get("digits").factory()
    torch.manual_seed(seed)
    return plugins.models.get("vae").factory(data.info, latent_dim=4, hidden=[hidden])


def test_a_seed_draws_one_start_and_other_seeds_or_shapes_draw_others(plugins: Plugins) -> None:
    assert start_digest(vae(plugins, 0)) == start_digest(vae(plugins, 0))
    starts = {start_digest(vae(plugins, s)) for s in range(4)}
    assert len(starts) == 4
    assert start_digest(vae(plugins, 0, hidden=16)) not in starts
    moved = vae(plugins, 0)
    with torch.no_grad():
        moved.decoder.net[-1].bias[0] += 1e-6  # one value of one tensor
    assert start_digest(moved) not in starts


def test_a_lazy_module_not_yet_run_has_a_digest_too() -> None:
    def lazy() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.LazyLinear(4), torch.nn.Linear(4, 2))

    assert start_digest(lazy()) == start_digest(lazy())
    run = lazy()
    run(torch.zeros(1, 3))  # its weights drawn: another start from here on
    assert start_digest(run) != start_digest(lazy())


def start_digests(tmp_path: Path, name: str, **train: object) -> pd.Series:
    """Each seed's ``start_digest`` from a run of a small VAE on digits, 3 seeds, 2 epochs."""
    suite = build_suite(
        entry("vae", latent_dim=4, hidden=[32]), name=name, seeds=[0, 1, 2], train=train
    )
    aebench.run_suite(suite, output=tmp_path / name)
    table = pd.read_parquet(tmp_path / name / "results.parquet")
    assert (table["status"] == "ok").all()
    return table.set_index("seed")["start_digest"].sort_index()


@pytest.mark.slow
def test_a_trial_records_its_start_stacked_or_alone(tmp_path, plugins: Plugins) -> None:
    alone = start_digests(tmp_path, "alone", stack=False)
    stacked = start_digests(tmp_path, "stacked", stack="auto")
    other_rate = start_digests(tmp_path, "rate", stack=False, lr=3e-3)
    assert alone.tolist() == [start_digest(vae(plugins, s)) for s in (0, 1, 2)]
    assert stacked.equals(alone) and other_rate.equals(alone)


def test_a_resumed_trial_keeps_the_start_it_began_from(tmp_path, plugins: Plugins) -> None:
    data = plugins.datasets.get("digits").factory()
    path = tmp_path / "checkpoint.pt"

    def run() -> tuple[str, str, int]:
        model = vae(plugins, 0)
        start = start_digest(model)
        result = train_model(
            model,
            plugins.regularizers.get("none").factory(),
            data,
            TrainSection(epochs=3, batch_size=64),
            generator=torch.Generator().manual_seed(0),
            checkpoints=Checkpoints(path, "t", 1),
        )
        return start, result.start_digest, result.resumed_after

    first = run()
    resumed = run()  # from the checkpoint of epoch 2, whose weights are not the start
    assert (first[2], resumed[2]) == (0, 2)
    assert first[0] == first[1] == resumed[0] == resumed[1]
