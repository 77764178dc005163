"""Training protocols: a sweepable [train], optimizers, learning-rate schedules (resumable), and
the Burda et al. 2015 schedule as the README writes it."""

from __future__ import annotations

import math
import re
import tomllib

import pytest
import torch
from repo import REPO

from aebench import ModelOutput, Split, load_plugins, load_suite
from aebench.run.checkpoint import Checkpoints
from aebench.run.optim import make_optimizer, make_schedule
from aebench.run.sections import AnnealSection, TrainSection
from aebench.run.train import Annealing, train_model
from aebench.run.validation import EarlyStopping

README = REPO / "README.md"

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

[observers.mlflow]
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
        trial.settings().model_copy(update={"epochs": epochs}),
        generator=torch.Generator().manual_seed(0),
        checkpoints=checkpoints,
    )
    return result, model


def test_a_multistep_schedule_trains_each_epoch_at_its_rate(write_suite) -> None:
    train = 'schedule = { kind = "multistep", milestones = [1, 3], gamma = 0.5 }'
    result, _ = small_training(train, write_suite)
    assert result.curves["lr"] == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4], rel=1e-12)


def test_a_cosine_schedule_warms_up_then_falls_to_its_floor(write_suite, plugins) -> None:
    train = 'epochs = 6\nschedule = { kind = "cosine", warmup_epochs = 2, min_lr = 1e-5 }'
    text = SUITE.format(train=train).replace("epochs = 4\n", "")
    [trial] = load_suite(write_suite(text), plugins).trials
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    schedule = make_schedule(optimizer, trial.settings())
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
    optimizer = make_optimizer(model, TrainSection(lr=0.1, **settings))
    cls, options = expected
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.1
    assert {k: group[k] for k in options} == options


def test_gradients_are_clipped_to_the_norm(write_suite, plugins) -> None:
    data = plugins.datasets.get("digits").factory()
    torch.manual_seed(0)
    model = plugins.models.get("ae").factory(data.info, hidden=[16], latent_dim=4)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    train_model(
        model,
        plugins.regularizers.get("none").factory(),
        data,
        # one step
        TrainSection(epochs=1, batch_size=len(data.train), lr=1.0, optimizer="sgd", clip_norm=1e-3),
        generator=torch.Generator().manual_seed(0),
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
    # The resumed process's first epoch warms up as a fresh one's does (a compile, say): its
    # speed is the earlier epochs' (before: that epoch was timed, 989 samples/s after a compile
    # against 28,611 uninterrupted)
    saved = Checkpoints(path, "t", 1).read()
    n = len(load_plugins().datasets.get("digits").factory().train)
    assert saved is not None and saved["timed_samples"] == 2 * n  # epochs 2 and 3
    assert resumed.samples_per_s == saved["timed_samples"] / saved["timed_s"]
    for a, b in zip(whole_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_readmes_burda_schedule_gives_the_papers_rates(write_suite, plugins) -> None:
    """Burda et al. 2015: stages i = 0..7 of 3^i epochs, lr = 1e-3 * 10^(-i/7)."""
    readme = README.read_text()
    block = re.search(r"```toml\n(# Burda et al\. 2015.*?)```", readme, re.S)
    assert block, "the README's Burda et al. example is missing"
    train = tomllib.loads(block.group(1))["train"]
    text = SUITE.format(train="").replace("[train]\nepochs = 4\nbatch_size = 256\n", "")
    path = write_suite(text + "\n" + block.group(1))
    [trial] = load_suite(path, plugins).trials
    assert (trial.train["epochs"], trial.train["batch_size"]) == (3280, 20)
    assert trial.train["betas"] == [0.99, 0.999] and trial.train["eps"] == 1e-4
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=train["lr"])
    schedule = make_schedule(optimizer, trial.settings())
    expected = [1e-3 * 10 ** (-i / 7) for i in range(8) for _ in range(3**i)]
    rates = []
    for _ in range(trial.train["epochs"]):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: changes nothing, but comes before the schedule's step
        schedule.step()
    assert len(expected) == 3280
    assert rates == pytest.approx(expected, rel=1e-9)
    assert math.isclose(rates[-1], 1e-4, rel_tol=1e-9)  # 1e-3 * 10^-1 in the last stage


class Drifting(torch.nn.Module):
    """Reconstructs every input as one learned value w: trained on ones, validated on zeros, its
    validation loss w^2 rises while its training loss (w - 1)^2 falls: built to overfit."""

    def __init__(self, info=None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.2))

    def encode(self, x):
        return self.w.expand(len(x), 1)

    def decode(self, z):
        return z.expand(-1, 4)

    def forward(self, x):
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x, out):
        return (out.recon - x).pow(2).sum(1)


def drifting_run(**options):
    from aebench import Data, DataInfo, Split

    data = Data(
        DataInfo(shape=(4,), kind="real"),
        train=Split(torch.ones(64, 4)),
        test=Split(torch.zeros(8, 4)),
        val=Split(torch.zeros(16, 4)),
    )
    model = Drifting()
    result = train_model(
        model,
        load_plugins().regularizers.get("none").factory(),
        data,
        TrainSection(epochs=20, batch_size=64, lr=0.05, optimizer="sgd", **options),
        generator=torch.Generator().manual_seed(0),
        val=data.val,
    )
    return result, model


def test_early_stopping_stops_a_stalling_run_and_restores_its_best_epoch() -> None:
    result, model = drifting_run(early_stopping={"patience": 3}, restore_best=True)
    curve = result.curves["val_loss"]
    assert curve == sorted(curve)  # it only gets worse: the first epoch is the best
    assert result.best_epoch == 1 and result.stopped_epoch == 4  # 3 epochs without improvement
    assert len(result.curves["loss"]) == 4
    assert result.best_val_loss == pytest.approx(4 * model.w.item() ** 2)  # the best's weights
    assert result.best_val_loss == curve[0]


def test_without_early_stopping_it_trains_every_epoch_and_keeps_the_last_weights() -> None:
    result, model = drifting_run()
    assert result.stopped_epoch == 20 and result.best_epoch == 1
    assert 4 * model.w.item() ** 2 == pytest.approx(result.curves["val_loss"][-1])


def test_a_plateau_schedule_follows_the_validation_loss() -> None:
    schedule = {"kind": "plateau", "factor": 0.5, "patience": 1}
    result, _ = drifting_run(schedule=schedule)
    rates = result.curves["lr"]
    assert rates[:3] == pytest.approx([0.05, 0.05, 0.025])  # halved after each worse epoch
    assert rates == sorted(rates, reverse=True)


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_a_plateau_cuts_after_patience_epochs_without_a_lower_loss_as_early_stopping_stops(
    patience: int,
) -> None:
    # before: torch's own meaning, a cut after patience + 1 flat epochs, and a gain under a
    # relative 1e-4 counted as none (patience 0 cut 3 times in 6 epochs of a loss still falling)
    settings = TrainSection(
        epochs=10, batch_size=8, lr=1.0, schedule={"kind": "plateau", "patience": patience}
    )
    optimizer = make_optimizer([torch.zeros(1, requires_grad=True)], settings)
    schedule = make_schedule(optimizer, settings)
    stopping = EarlyStopping(patience=patience)
    flat = [5.0] * 6
    for epoch, loss in enumerate(flat, start=1):
        schedule.step(loss)
        stopped = stopping.update(epoch, loss, torch.nn.Linear(1, 1), keep_weights=False)
        cut = optimizer.param_groups[0]["lr"] < 1.0
        assert cut == stopped == (epoch > patience), epoch
    falling = TrainSection(
        epochs=10, batch_size=8, lr=1.0, schedule={"kind": "plateau", "patience": 1}
    )
    optimizer = make_optimizer([torch.zeros(1, requires_grad=True)], falling)
    schedule = make_schedule(optimizer, falling)
    for step in range(6):
        schedule.step(100.0 - 0.001 * step)  # lower every epoch, by a relative 1e-5
    assert optimizer.param_groups[0]["lr"] == 1.0


def test_the_best_epoch_is_the_lowest_loss_whatever_min_delta_patience_counts() -> None:
    # before: a loss lower by less than min_delta was not the best: best_epoch, best_val_loss
    # and the restored weights were an earlier epoch's
    stopping = EarlyStopping(patience=2, min_delta=1.0)
    model = torch.nn.Linear(1, 1)
    stopped = [
        stopping.update(epoch, loss, model, keep_weights=True)
        for epoch, loss in enumerate([10.0, 9.5, 9.2, 9.1], start=1)
    ]
    assert (stopping.best_epoch, stopping.best) == (4, 9.1)
    assert stopped == [False, False, True, True]  # no gain over 1.0 since epoch 1: patience 2
    again = EarlyStopping(patience=2, min_delta=1.0)
    again.load_state_dict(stopping.state_dict())
    assert (again.improved, again.since) == (10.0, 3)


def test_the_validation_loss_of_a_warm_up_is_at_the_weights_the_model_is_measured_at() -> None:
    # before: at the warm-up's rising beta, so that a later epoch looked no better and early
    # stopping restored a model half warmed up
    plugins = load_plugins()
    data = plugins.datasets.get("digits").factory()
    torch.manual_seed(0)
    model = plugins.models.get("vae").factory(data.info, hidden=[16], latent_dim=2, beta=2.0)
    annealing = Annealing(model, {"beta": AnnealSection(epochs=4)}, steps_per_epoch=1)
    annealing.set(epoch=2, step=0)
    assert model.beta == 0.5
    with annealing.at_targets():
        assert model.beta == 2.0
    assert model.beta == 0.5


def test_a_suite_holds_out_validation_and_records_its_epochs(write_suite, tmp_path) -> None:
    import json

    import aebench

    train = "epochs = 6\nval_fraction = 0.2\nearly_stopping = { patience = 2 }\nrestore_best = true"
    text = SUITE.format(train=train).replace("epochs = 4\n", "")
    run = aebench.run_suite(write_suite(text), output=tmp_path / "out")
    [row] = run.rows
    assert row["status"] == "ok", row["reason"]
    assert 1 <= row["best_epoch"] <= row["stopped_epoch"] <= 6
    curves = json.loads((tmp_path / "out" / "trials" / row["trial_id"] / "curves.json").read_text())
    assert len(curves["val_loss"]) == row["stopped_epoch"]
    assert min(curves["val_loss"]) == pytest.approx(row["best_val_loss"])


def vae_run(anneal, epochs=6, validated=False):
    """A small VAE on digits, beta 2 (warmed up by ``anneal``); ``validated``: on the first 100
    training images."""
    plugins = load_plugins()
    data = plugins.datasets.get("digits").factory()
    torch.manual_seed(0)
    model = plugins.models.get("vae").factory(data.info, hidden=[16], latent_dim=2, beta=2.0)
    result = train_model(
        model,
        plugins.regularizers.get("none").factory(),
        data,
        # 3 steps per epoch over digits' 1,438 training images
        TrainSection(epochs=epochs, batch_size=512, lr=1e-3, anneal=anneal or {}),
        generator=torch.Generator().manual_seed(0),
        val=Split(data.train.x[:100]) if validated else None,
    )
    return result, model


def test_a_kl_warm_up_over_epochs_logs_the_weight_it_trained_with() -> None:
    result, model = vae_run({"beta": {"epochs": 4}})
    assert result.curves["beta"] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.0])
    assert model.beta == 2.0  # measured with the weight it was configured with


def test_a_kl_warm_up_over_steps_rises_within_epochs() -> None:
    result, _ = vae_run({"beta": {"steps": 12}})
    # The value of each epoch's last step (3 steps an epoch): 2, 5, 8, 11 then 12+ of 12 steps.
    expected = [2.0 * min(1.0, (3 * e - 1) / 12) for e in range(1, 7)]
    assert result.curves["beta"] == pytest.approx(expected)


def test_a_warm_up_changes_training_and_only_then(write_suite) -> None:
    warm, _ = vae_run({"beta": {"epochs": 4}})
    cold, _ = vae_run(None)
    assert "beta" not in cold.curves
    assert warm.curves["loss"][0] < cold.curves["loss"][0]  # no KL term weighed in epoch 1


def test_rate_and_distortion_curves_reflect_the_warm_up() -> None:
    warm, _ = vae_run({"beta": {"epochs": 4}})
    cold, _ = vae_run(None)
    for result in (warm, cold):
        assert len(result.curves["rate"]) == len(result.curves["distortion"]) == 6
    # Unweighted in its first epoch, the KL grows where it is weighed from the start it does not.
    assert warm.curves["rate"][0] > cold.curves["rate"][0]
    assert warm.curves["distortion"][0] < cold.curves["distortion"][0]


def test_the_held_out_pass_records_no_autograd_graph() -> None:
    from aebench.run.validation import held_out_losses

    grad_enabled: list[bool] = []

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> ModelOutput:
            grad_enabled.append(torch.is_grad_enabled())
            return ModelOutput(code=x, recon=self.linear(x))

        def loss(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
            return (out.recon - x).pow(2).sum(1)

    model, x = Probe(), torch.randn(10, 4)
    val_loss, _ = held_out_losses(model, x, seed=0)
    assert grad_enabled == [False]
    assert val_loss == pytest.approx((model.linear(x) - x).pow(2).sum(1).mean().item())


def test_training_validates_a_warm_up_at_its_target_weights(monkeypatch) -> None:
    import aebench.run.train as train_module

    seen = []
    real = train_module.held_out_losses

    def recording(model, *args, **kwargs):
        seen.append(model.beta)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "held_out_losses", recording)
    result, _ = vae_run({"beta": {"epochs": 3}}, epochs=3, validated=True)
    assert result.curves["beta"] == pytest.approx([0.0, 2 / 3, 4 / 3])  # trained warming up
    assert seen == [2.0, 2.0, 2.0]  # validated at the target
