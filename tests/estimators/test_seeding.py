"""``seeded_on``: torch's stream seeded for a block on the device drawn on, restored after."""

from __future__ import annotations

import pytest
import torch

from aebench.estimators.seeding import seeded_on

CPU = torch.device("cpu")


def test_draws_inside_are_those_of_torch_manual_seed() -> None:
    torch.manual_seed(7)
    expected = torch.randn(5), torch.rand(3)
    torch.manual_seed(123)  # a different stream before the block
    with seeded_on(CPU, 7):
        drawn = torch.randn(5), torch.rand(3)
    for a, b in zip(expected, drawn, strict=True):
        assert torch.equal(a, b)


def test_the_stream_after_the_block_is_as_if_there_were_none() -> None:
    torch.manual_seed(1)
    torch.rand(2)
    untouched = torch.rand(4)
    torch.manual_seed(1)
    torch.rand(2)
    with seeded_on(CPU, 99):
        torch.rand(1000)
    assert torch.equal(torch.rand(4), untouched)


def test_on_the_cpu_no_other_device_is_seeded(monkeypatch) -> None:
    """torch.manual_seed queues a seeding of every GPU kind with a stack trace where none is
    initialised (1 ms a call on a CUDA build without a GPU); the CPU's generator is enough."""

    def every_device(seed: int) -> None:
        raise AssertionError("torch.manual_seed seeds every device")

    monkeypatch.setattr(torch, "manual_seed", every_device)
    with seeded_on(CPU, 3):
        inside = torch.rand(3)
    assert torch.equal(inside, torch.rand(3, generator=torch.Generator().manual_seed(3)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_its_draws_are_seeded_and_restored() -> None:
    device = torch.device("cuda")
    torch.cuda.manual_seed(11)
    with seeded_on(device, 5):
        first = torch.rand(4, device=device)
    after = torch.rand(4, device=device)
    torch.cuda.manual_seed(11)
    assert torch.equal(torch.rand(4, device=device), after)  # as if there were no block
    with seeded_on(device, 5):
        assert torch.equal(torch.rand(4, device=device), first)


def test_the_curves_and_the_estimators_seed_the_cpu_alone(monkeypatch, plugins) -> None:
    """What seeds a pass every epoch of every trial (the curves) and every estimator's draws."""
    from aebench import DataInfo
    from aebench.estimators.likelihood import seeded
    from aebench.run.validation import held_out_losses

    info = DataInfo(shape=(1, 8, 8), kind="binary", n_classes=10)
    model = plugins.models.get("vae").factory(info, latent_dim=2, hidden=[8])
    x = torch.rand(6, 1, 8, 8).round()
    before = held_out_losses(model, x, seed=4)

    def every_device(seed: int) -> None:
        raise AssertionError("torch.manual_seed seeds every device")

    monkeypatch.setattr(torch, "manual_seed", every_device)
    assert held_out_losses(model, x, seed=4) == before
    with seeded(torch.Generator().manual_seed(8)):
        torch.rand(1)
