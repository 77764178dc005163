"""What only a CUDA device can show (marked ``gpu``; every test skips without CUDA, so a plain
``pytest`` on a CPU machine runs none of them; ``benchmarks/gpu/run.sh`` runs them on one):
training keeps the model, its optimizer and the batches on the device; an epoch's steps never wait
for the host (``torch.cuda.set_sync_debug_mode("error")`` around them); the precision choices
(TF32 for training's float32 matmuls, bf16 autocast only when asked); a checkpoint written on one
device resumes on the other and ends as an uninterrupted run there would."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from aebench import Data, DataInfo, Split, load_plugins
from aebench.run import train as train_module
from aebench.run.checkpoint import Checkpoints
from aebench.run.sections import TrainSection
from aebench.run.train import TrainResult, train_model
from aebench_plugins.datasets.images import bernoulli_draw

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

PLUGINS = load_plugins()
INFO = DataInfo(shape=(1, 28, 28), kind="binary", n_classes=10)
BURDA_VAE = {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh", "init": "glorot"}
CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def grey_data(device: torch.device, n: int = 400) -> Data:
    """Grey 28x28 images, dynamically binarised per batch as the Burda suites' MNIST is."""
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    train, test = Split(x.to(device)), Split(x[:100].to(device))
    return Data(info=INFO, train=train, test=test, batch_transform=bernoulli_draw)


def vae(device: torch.device, name: str = "vae") -> nn.Module:
    entry = PLUGINS.models.get(name)
    torch.manual_seed(0)
    params = entry.params.model_validate(BURDA_VAE).model_dump()
    return entry.factory(INFO, **params).to(device)


def none_regularizer():
    entry = PLUGINS.regularizers.get("none")
    return entry.factory(**entry.params.model_validate({}).model_dump())


def train(
    model: nn.Module, data: Data, device: torch.device, checkpoints=None, **settings
) -> TrainResult:
    section = TrainSection(**{"epochs": 2, "batch_size": 20, **settings})
    generator = torch.Generator(device=device).manual_seed(0)
    return train_model(
        model, none_regularizer(), data, section, generator=generator, checkpoints=checkpoints
    )


def test_training_keeps_the_model_its_optimizer_and_its_batches_on_the_device(
    monkeypatch,
) -> None:
    devices: set[torch.device] = set()
    original = train_module.make_objective

    def watching(*args, **kwargs):
        objective = original(*args, **kwargs)

        def seen(x_in, x):
            devices.update({x_in.device, x.device})
            return objective(x_in, x)

        return seen

    monkeypatch.setattr(train_module, "make_objective", watching)
    model = vae(CUDA)
    result = train(model, grey_data(CUDA), CUDA)
    assert result.diverged_at is None
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert {b.device.type for b in model.buffers()} == {"cuda"}
    assert devices == {torch.device("cuda", 0)}
    assert result.peak_mem_mb > 0  # CUDA's peak allocation is read where there is one


@pytest.mark.parametrize("name", ["vae", "iwae"])
def test_an_epochs_steps_never_wait_for_the_host(monkeypatch, name: str) -> None:
    # "error": any call that makes the host wait for the device (.item(), a device-to-host
    # copy, a data-dependent shape) raises. The epoch's one sync, its mean losses, is let through.
    original_epoch, original_means = train_module.Training._train_epoch, train_module._epoch_means

    def strict_epoch(self, epoch):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original_epoch(self, epoch)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    def means_once_per_epoch(*args):
        torch.cuda.set_sync_debug_mode("default")
        try:
            return original_means(*args)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(train_module.Training, "_train_epoch", strict_epoch)
    monkeypatch.setattr(train_module, "_epoch_means", means_once_per_epoch)
    result = train(vae(CUDA, name), grey_data(CUDA), CUDA)
    assert result.diverged_at is None and len(result.curves["loss"]) == 2


def test_training_uses_tf32_matmuls_and_autocasts_only_when_asked(monkeypatch) -> None:
    # TF32 while training's steps run, given back after: the metrics then run in float32
    dtypes: list[torch.dtype] = []
    tf32: list[bool] = []
    original = train_module.make_objective

    def watching(model, *args, **kwargs):
        def hook(module, inputs, out):
            dtypes.append(out.dtype)
            tf32.append(torch.backends.cuda.matmul.allow_tf32)

        model.decoder.register_forward_hook(hook)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "make_objective", watching)
    torch.backends.cuda.matmul.allow_tf32 = False
    train(vae(CUDA), grey_data(CUDA), CUDA, epochs=1)
    assert set(tf32) == {True}
    assert not torch.backends.cuda.matmul.allow_tf32
    assert set(dtypes) == {torch.float32}
    dtypes.clear()
    train(vae(CUDA), grey_data(CUDA), CUDA, epochs=1, precision="bf16")
    assert set(dtypes) == {torch.bfloat16}
    assert not torch.backends.cuda.matmul.allow_tf32


@pytest.mark.parametrize(
    ("first", "then"), [(CUDA, CPU), (CPU, CUDA)], ids=["cuda-cpu", "cpu-cuda"]
)
def test_a_checkpoint_resumes_on_the_other_device(
    tmp_path: Path, first: torch.device, then: torch.device
) -> None:
    # Three epochs on `first`, a checkpoint after the first two (never after the last); the
    # same trial asked, on `then`, for two epochs resumes from the second's checkpoint with
    # nothing left to train: its weights are the saved ones, moved. Asked for three, it trains
    # the third there.
    path = tmp_path / "checkpoint.pt"
    train(vae(first), grey_data(first), first, Checkpoints(path, "t", every=1), epochs=3)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 2
    resumed = vae(then)
    result = train(resumed, grey_data(then), then, Checkpoints(path, "t"))
    assert result.resumed_after == 2
    for key, value in resumed.state_dict().items():
        assert value.device.type == then.type
        torch.testing.assert_close(value.cpu(), saved["model"][key], rtol=0, atol=0)
    longer = train(vae(then), grey_data(then), then, Checkpoints(path, "t"), epochs=3)
    assert longer.resumed_after == 2 and len(longer.curves["loss"]) == 3
    assert longer.diverged_at is None
