"""Training protocols: a sweepable [train], optimizers, learning-rate schedules (resumable), and
the Burda et al. 2015 schedule as the README writes it."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import pytest
import torch

from aebench import load_plugins, load_suite
from aebench.checkpoint import Checkpoints
from aebench.optim import make_optimizer, make_schedule
from aebench.train import train_model

README = Path(__file__).resolve().parents[1] / "README.md"

SUITE = """
[suite]
name = "protocols"
device = "cpu"

[train]
epochs = 4
batch_size = 256
{train}

[eval]
metrics = ["recon_mse"]

[tracking]
enabled = false

[[datasets]]
plugin = "digits"

[[models]]
plugin = "ae"
params = {{ hidden = [16], latent_dim = 4 }}
"""


def trials(write_suite, train: str):
    return load_suite(write_suite(SUITE.format(train=train)), load_plugins()).trials


def test_a_two_value_lr_grid_makes_twice_the_trials(write_suite) -> None:
    one = trials(write_suite, "")
    two = trials(write_suite, "grid = { lr = [1e-3, 1e-4] }")
    assert len(two) == 2 * len(one)
    assert sorted(t.train["lr"] for t in two) == [1e-4, 1e-3]
    assert len({t.id for t in two}) == 2  # two protocols, two trials


def small_training(train: str, write_suite, epochs: int = 4, checkpoints=None):
    plugins = load_plugins()
    [trial] = trials(write_suite, train)
    data = plugins.datasets.get("digits").factory()
    torch.manual_seed(0)
    model = plugins.models.get("ae").factory(data.info, hidden=[16], latent_dim=4)
    result = train_model(
        model,
        plugins.regularizers.get("none").factory(),
        data,
        epochs=epochs,
        batch_size=256,
        lr=trial.train["lr"],
        generator=torch.Generator().manual_seed(0),
        optimizer={k: trial.train[k] for k in ("optimizer", "betas", "eps", "momentum")},
        schedule=trial.train["schedule"],
        checkpoints=checkpoints,
    )
    return result, model


def test_a_multistep_schedule_trains_each_epoch_at_its_rate(write_suite) -> None:
    train = 'schedule = { kind = "multistep", milestones = [1, 3], gamma = 0.5 }'
    result, _ = small_training(train, write_suite)
    assert result.curves["lr"] == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4], rel=1e-12)


def test_a_cosine_schedule_warms_up_then_falls_to_its_floor(write_suite) -> None:
    train = 'epochs = 6\nschedule = { kind = "cosine", warmup_epochs = 2, min_lr = 1e-5 }'
    text = SUITE.format(train=train).replace("epochs = 4\n", "")
    [trial] = load_suite(write_suite(text), load_plugins()).trials
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    schedule = make_schedule(optimizer, trial.train["schedule"], 6)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: changes nothing, but comes before the schedule's step
        schedule.step()
    assert rates[:2] == pytest.approx([1e-3 / 3, 2e-3 / 3])  # linear warm-up from 0
    assert rates[2] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert rates[2:] == sorted(rates[2:], reverse=True)


@pytest.mark.parametrize(
    "settings, expected",
    [
        (
            {"optimizer": "adamw", "weight_decay": 0.01, "betas": [0.99, 0.999], "eps": 1e-4},
            (torch.optim.AdamW, {"weight_decay": 0.01, "betas": (0.99, 0.999), "eps": 1e-4}),
        ),
        (
            {"optimizer": "sgd", "momentum": 0.9, "nesterov": True},
            (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
        ),
        ({}, (torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0})),
    ],
)
def test_optimizers_take_their_settings(settings, expected) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = make_optimizer(model, 0.1, settings)
    cls, options = expected
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.1
    assert {k: group[k] for k in options} == options


def test_gradients_are_clipped_to_the_norm(write_suite) -> None:
    plugins = load_plugins()
    data = plugins.datasets.get("digits").factory()
    torch.manual_seed(0)
    model = plugins.models.get("ae").factory(data.info, hidden=[16], latent_dim=4)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    train_model(
        model,
        plugins.regularizers.get("none").factory(),
        data,
        epochs=1,
        batch_size=len(data.train),  # one step
        lr=1.0,
        generator=torch.Generator().manual_seed(0),
        optimizer={"optimizer": "sgd"},
        clip_norm=1e-3,
    )
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(1e-3, rel=1e-4)  # lr 1 x clipped grad


def test_a_resumed_run_resumes_its_schedule_too(write_suite, tmp_path) -> None:
    train = 'schedule = { kind = "multistep", milestones = [1, 3], gamma = 0.5 }'
    path = tmp_path / "checkpoint.pt"
    whole, whole_model = small_training(train, write_suite, checkpoints=Checkpoints(path, "t", 1))
    # The checkpoint of epoch 3 is left there: a second run of the same trial resumes from it.
    resumed, resumed_model = small_training(
        train, write_suite, checkpoints=Checkpoints(path, "t", 1)
    )
    assert resumed.resumed_after == 3
    assert resumed.curves["lr"] == whole.curves["lr"]
    for a, b in zip(whole_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_readmes_burda_schedule_gives_the_papers_rates(write_suite) -> None:
    """Burda et al. 2015: stages i = 0..7 of 3^i epochs, lr = 1e-3 * 10^(-i/7)."""
    readme = README.read_text()
    block = re.search(r"```toml\n(# Burda et al\. 2015.*?)```", readme, re.S)
    assert block, "the README's Burda et al. example is missing"
    train = tomllib.loads(block.group(1))["train"]
    text = SUITE.format(train="").replace("[train]\nepochs = 4\nbatch_size = 256\n", "")
    path = write_suite(text + "\n" + block.group(1))
    [trial] = load_suite(path, load_plugins()).trials
    assert (trial.train["epochs"], trial.train["batch_size"]) == (3280, 20)
    assert trial.train["betas"] == [0.99, 0.999] and trial.train["eps"] == 1e-4
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=train["lr"])
    schedule = make_schedule(optimizer, trial.train["schedule"], trial.train["epochs"])
    expected = [1e-3 * 10 ** (-i / 7) for i in range(8) for _ in range(3**i)]
    rates = []
    for _ in range(trial.train["epochs"]):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: changes nothing, but comes before the schedule's step
        schedule.step()
    assert len(expected) == 3280
    assert rates == pytest.approx(expected, rel=1e-9)
    assert math.isclose(rates[-1], 1e-4, rel_tol=1e-9)  # 1e-3 * 10^-1 in the last stage
