"""Trials trained together (``[train] stack = "auto"``, aebench.run.stacked): which trials group,
that each keeps its own model, curves and row, that stacked and separate runs of the same seeds
give the same distribution of results, and that a group that cannot train together trains alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from builders import build_suite, entry
from scipy import stats

from aebench import DataInfo
from aebench.plugins.manager import Plugins
from aebench.run import stacked
from aebench.run.data import DataCache
from aebench.run.executors import LocalExecutor, Workload
from aebench.run.observing import Row, TrialOutcome
from aebench.run.stacked_rows import RowBlocks, StackedLinear, rows_engine
from aebench.run.suite import SuiteError, Trial, load_suite

DIGITS = entry("digits", binarize="dynamic")  # a batch_transform drawn from each trial's stream
SMALL_VAE = entry("vae", latent_dim=4, hidden=[32])


def trials(
    plugins: Plugins,
    *models: dict[str, Any],
    seeds: list[int],
    train: dict[str, Any] | None = None,
    epochs: int = 2,
    regularizers: list[dict[str, Any]] | None = None,
    **settings: Any,
) -> list[Trial]:
    suite = build_suite(
        *(models or (SMALL_VAE,)),
        datasets=[DIGITS],
        seeds=seeds,
        epochs=epochs,
        train={"stack": "auto"} | (train or {}),
        **settings,
    )
    if regularizers is not None:
        suite["regularizers"] = regularizers
    return load_suite(suite, plugins).trials


def workload(plugins: Plugins, found: list[Trial], **changes: Any) -> Workload:
    return Workload(found, plugins, torch.device("cpu"), DataCache(plugins), **changes)


def run(work: Workload) -> dict[int, tuple[Row, TrialOutcome]]:
    """Each trial's row and outcome by seed, through the local executor."""
    return {t.seed: (row, out) for t, row, out in LocalExecutor().run(work, lambda t: None)}


def test_stack_is_not_part_of_the_trial_id(plugins: Plugins) -> None:
    (trial,) = trials(plugins, seeds=[0])
    assert trial.train["stack"] == "auto"
    (alone,) = trials(plugins, seeds=[0], train={"stack": False})
    assert alone.train["stack"] == "off"  # one type in the table's column: parquet needs it
    assert alone.id == trial.id


def test_stack_is_auto_or_false(plugins: Plugins) -> None:
    with pytest.raises(SuiteError, match=r"train\.stack"):
        trials(plugins, seeds=[0], train={"stack": True})


def test_the_seeds_of_one_configuration_train_together(plugins: Plugins) -> None:
    grid = entry("vae", latent_dim=4, grid={"hidden": [[16], [32]]})
    found = trials(plugins, grid, entry("vq-vae"), seeds=[0, 1, 2])
    groups = stacked.groups(workload(plugins, found))
    shapes = sorted((g[0].model.plugin, len(g), len({t.seed for t in g})) for g in groups)
    # vq-vae does not declare itself stackable: its seeds train alone
    assert shapes == [("vae", 3, 3), ("vae", 3, 3), ("vq-vae", 1, 1)] + [("vq-vae", 1, 1)] * 2


@pytest.mark.parametrize(
    ("train", "settings", "changes"),
    [
        ({"stack": False}, {}, {}),
        ({"early_stopping": {"patience": 2}}, {}, {}),
        ({"clip_norm": 1.0}, {}, {}),
        ({"checkpoint_every": 1}, {}, {}),
        ({"schedule": {"kind": "plateau"}}, {}, {}),
        ({}, {}, {"isolate": True}),
        ({}, {}, {"timeout": 60.0}),
        ({"compile": True}, {}, {}),
    ],
    ids=[
        *("off", "early-stopping", "clip", "checkpoints", "plateau", "isolate", "timeout"),
        "compile",
    ],
)
def test_what_stacking_does_not_do_trains_alone(
    plugins: Plugins, train: dict[str, Any], settings: dict[str, Any], changes: dict[str, Any]
) -> None:
    found = trials(plugins, seeds=[0, 1, 2], train=train, **settings)
    groups = stacked.groups(workload(plugins, found, **changes))
    assert [len(g) for g in groups] == [1, 1, 1]


def test_compile_auto_gives_way_to_stacking(plugins: Plugins) -> None:
    """``compile = "auto"`` compiles long trials alone (1.10x on the Burda VAE); stacked, its
    seeds train faster still (2.2-2.3x), uncompiled."""
    found = trials(plugins, seeds=[0, 1, 2], train={"compile": "auto"}, epochs=100_000)
    assert found[0].settings().compiles(1_000)  # alone, it would compile
    assert [len(g) for g in stacked.groups(workload(plugins, found))] == [3]


def test_each_stacked_trial_has_its_own_model_curves_and_row(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    together = stacked.train_together

    def spy(group: list[stacked.Prepared], settings: Any) -> Any:
        calls.append(len(group))
        return together(group, settings)

    monkeypatch.setattr(stacked, "train_together", spy)
    found = trials(plugins, seeds=[0, 1, 2], epochs=3)
    done = run(workload(plugins, found))
    assert calls == [3]  # one stacked training of the three seeds
    assert sorted(done) == [0, 1, 2]
    weights = []
    for seed, (row, outcome) in done.items():
        assert row["status"] == "ok", row["reason"]
        assert row["seed"] == seed and row["trial_id"] == found[seed].id
        assert len(outcome.curves["loss"]) == 3 and len(outcome.curves["lr"]) == 3
        assert row["final_loss"] == outcome.curves["loss"][-1]
        assert np.isfinite(row["recon_mse"]) and row["train_s"] > 0
        assert outcome.model is not None and not outcome.model.training  # measured in eval mode
        weights.append(outcome.model.encoder.net[0].weight.detach())
        # its curves are its own: its model's loss terms, not another trial's
        assert "rate" in outcome.curves
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    losses = [done[s][0]["final_loss"] for s in range(3)]
    assert len(set(losses)) == 3
    # One measurement of speed for the group, copied to each row, which says so (compare counts
    # it once): one stack_group for the three.
    groups = {done[s][0]["stack_group"] for s in range(3)}
    assert len(groups) == 1 and len(groups.pop()) == 16
    assert len({done[s][0]["train_samples_per_s"] for s in range(3)}) == 1


@pytest.mark.parametrize(("regularizer", "together"), [("l1", False), ("denoising", True)])
def test_a_penalty_trains_alone_and_a_corruption_is_drawn_per_trial(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch, regularizer: str, together: bool
) -> None:
    """A penalty is not vmapped: its trials train alone; a corruption is drawn per trial, from
    the trial's own generator, outside the mapped forward pass, so it trains together."""
    calls: list[int] = []
    spied = stacked.train_together
    monkeypatch.setattr(stacked, "train_together", lambda g, s: calls.append(len(g)) or spied(g, s))
    found = trials(plugins, seeds=[0, 1], regularizers=[entry(regularizer)])
    assert [len(g) for g in stacked.groups(workload(plugins, found))] == [2]
    done = run(workload(plugins, found))
    assert [done[s][0]["status"] for s in (0, 1)] == ["ok", "ok"]
    assert done[0][0]["regularizer"] == regularizer
    assert calls == ([2] if together else [])


def test_a_group_that_cannot_train_together_trains_alone(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: stacked.StackedTraining) -> None:
        raise RuntimeError("vmap: data-dependent control flow")

    monkeypatch.setattr(stacked.StackedTraining, "run", broken)
    found = trials(plugins, seeds=[0, 1])
    done = run(workload(plugins, found))
    assert [done[s][0]["status"] for s in (0, 1)] == ["ok", "ok"]
    assert "could not train together" in caplog.text


def test_stacked_and_separate_runs_agree_in_distribution(plugins: Plugins) -> None:
    """Eight seeds stacked and the same eight alone: not the same numbers (the VAE's noise is
    drawn for the group at once), the same distribution of final losses: Welch's t on the means
    and Levene's test on the spreads, at a loose level (a real difference, such as trials
    sharing their batches or their optimizer state, moves the mean by far more)."""
    seeds = list(range(8))
    found = trials(plugins, seeds=seeds, epochs=3)
    together = run(workload(plugins, found))
    alone = run(workload(plugins, [replace(t, train={**t.train, "stack": False}) for t in found]))
    a = np.array([together[s][0]["final_loss"] for s in seeds])
    b = np.array([alone[s][0]["final_loss"] for s in seeds])
    assert not np.array_equal(a, b)  # the stacked path ran
    assert stats.ttest_ind(a, b, equal_var=False).pvalue > 1e-3, (a, b)
    assert stats.levene(a, b).pvalue > 1e-3, (a, b)
    # within 5% of each other's mean, as a sanity bound on what the tests above allow
    assert abs(a.mean() - b.mean()) < 0.05 * abs(b.mean())


def test_a_stacked_linear_multiplies_each_trials_rows_by_its_own_weights() -> None:
    """Rows laid out as k copies of the batch, each the S trials' rows one after another (a
    VAE's Monte Carlo samples): each row goes through its own trial's layer, forward and
    backward, the weight gradients written into each stacked parameter's ``.grad``."""
    torch.manual_seed(0)
    trials, batch, copies = 3, 4, 2
    layers = [torch.nn.Linear(5, 2) for _ in range(trials)]
    blocks = RowBlocks(trials)
    stacked_layer = StackedLinear(layers, blocks)
    blocks.batch, blocks.step = batch, 1
    x = torch.randn(copies, trials * batch, 5, requires_grad=True)
    y = stacked_layer(x)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    x_alone = x.detach().clone().requires_grad_()
    rows = x_alone.view(copies, trials, batch, 5)
    y_alone = torch.stack([layers[t](rows[:, t]) for t in range(trials)], dim=1)
    (y_alone * weights.view(copies, trials, batch, 2)).sum().backward()
    assert torch.allclose(y, y_alone.view_as(y), atol=1e-6)
    assert x.grad is not None and torch.allclose(x.grad, x_alone.grad, atol=1e-6)
    for t, layer in enumerate(layers):
        assert torch.allclose(stacked_layer.weight.grad[t].t(), layer.weight.grad, atol=1e-5)
        assert torch.allclose(stacked_layer.bias.grad[t], layer.bias.grad, atol=1e-5)


def test_a_layer_used_twice_in_a_step_adds_and_the_next_step_writes_over() -> None:
    """A step's first backward through a layer writes its gradient, a later one in the same step
    adds to it, and the next step starts afresh (nothing to zero between steps)."""
    blocks = RowBlocks(2)
    blocks.batch = 3
    layer = StackedLinear([torch.nn.Linear(4, 4) for _ in range(2)], blocks)
    x = torch.randn(6, 4)

    def step(twice: bool) -> torch.Tensor:
        blocks.step += 1
        y = layer(layer(x)) if twice else layer(x)
        y.sum().backward()
        assert layer.weight.grad is not None
        return layer.weight.grad.clone()

    once = step(twice=False)
    buffer = layer.weight.grad
    assert torch.allclose(step(twice=False), once)  # written over, not added to the last step's
    twice = step(twice=True)
    assert not torch.allclose(twice, once) and layer.weight.grad is buffer  # one buffer, reused
    bias = layer.bias.detach()[:, None]

    def through_twice(w: torch.Tensor) -> torch.Tensor:  # the same two steps, by hand
        once = torch.baddbmm(bias, x.view(2, 3, 4), w)
        return torch.baddbmm(bias, once, w).sum()

    manual = torch.func.grad(through_twice)(layer.weight.detach())
    assert torch.allclose(twice, manual, atol=1e-5)


def test_the_vae_stacks_as_one_batch_without_vmap(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The built-in VAE declares ``independent_samples``: its group trains through batched
    GEMMs (no vmap), its weight gradients in the same memory every step."""

    def no_vmap(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("vmapped")

    monkeypatch.setattr(stacked.torch, "vmap", no_vmap)
    buffers: list[set[int]] = []
    step = stacked.StackedTraining._train_epoch

    def spy(self: stacked.StackedTraining) -> list[float]:
        means = step(self)
        buffers.append({p.grad.data_ptr() for p in self.engine.parameters() if p.grad is not None})
        return means

    monkeypatch.setattr(stacked.StackedTraining, "_train_epoch", spy)
    found = trials(plugins, entry("vae", latent_dim=4, hidden=[32], mc_samples=2), seeds=[0, 1])
    done = run(workload(plugins, found))
    assert [done[s][0]["status"] for s in (0, 1)] == ["ok", "ok"], done[0][0]["reason"]
    assert len(buffers) == 2 and buffers[0] == buffers[1] and len(buffers[0]) == 8  # 4 layers


def test_an_aes_stacked_seeds_end_where_each_ends_alone(plugins: Plugins) -> None:
    """An autoencoder has no noise of its own: stacked, each trial draws its batches from its
    own stream and steps its own Adam state, so it ends where it ends alone, up to rounding."""
    found = trials(plugins, entry("ae", latent_dim=4, hidden=[32]), seeds=[0, 1, 2])
    together = run(workload(plugins, found))
    alone = run(workload(plugins, [replace(t, train={**t.train, "stack": False}) for t in found]))
    for seed in (0, 1, 2):
        a, b = together[seed][0]["final_loss"], alone[seed][0]["final_loss"]
        assert a == pytest.approx(b, rel=1e-4), seed


class _Scaled(torch.nn.Module):
    """A model that says its samples are independent but keeps a parameter outside a Linear."""

    independent_samples = True

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3, 3)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.register_buffer("offset", torch.zeros(3))


def test_what_cannot_train_as_one_batch_is_vmapped() -> None:
    """No ``independent_samples``, a trainable parameter outside a Linear, or buffers that
    differ between the trials: no rows engine (the group is vmapped, as any stackable model)."""
    torch.manual_seed(0)
    assert rows_engine([torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)]) is None
    assert rows_engine([_Scaled(), _Scaled()]) is None
    plain = [_Scaled(), _Scaled()]
    for model in plain:
        model.scale.requires_grad_(False)
    assert rows_engine(plain) is not None
    plain[1].offset.fill_(1.0)
    assert rows_engine(plain) is None


class _Switch(torch.nn.Module):
    """Two layers, the second used only while ``use_second``: per-sample squared error."""

    independent_samples = True

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
        self.use_second = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        return self.second(h) if self.use_second else h

    def loss(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return (out - x).pow(2).sum(1)


def test_a_layer_a_step_did_not_reach_has_no_gradient() -> None:
    """The rows engine does not clear gradients between steps (each step writes over them): a
    layer the step did not use must not keep the last step's, which Adam would apply again."""
    torch.manual_seed(0)
    engine = rows_engine([_Switch(), _Switch()])
    assert engine is not None
    x = torch.randn(2, 4, 3)
    engine.backward(engine.losses(x, x))
    second = engine.layers["second"]
    assert second.weight.grad is not None
    engine.template.use_second = False
    engine.backward(engine.losses(x, x))
    assert second.weight.grad is None and second.bias.grad is None
    assert engine.layers["first"].weight.grad is not None


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ae", {}),
        ("vae", {"mc_samples": 2}),  # a decoder on k copies of the batch
        ("iwae", {"k": 3}),
        ("piwae", {"m": 2, "k": 2}),  # its decoder also runs on parameters passed detached
    ],
)
def test_one_trial_through_the_rows_engine_is_the_model_alone(
    plugins: Plugins, name: str, params: dict[str, Any]
) -> None:
    """A group of one draws the model's noise as the model alone does: the same loss and the
    same gradients, for each built-in family that declares ``independent_samples``."""
    entry_ = plugins.models.get(name)
    info = DataInfo(shape=(1, 6, 6), kind="binary")
    torch.manual_seed(0)
    model = entry_.factory(
        info, **entry_.params.model_validate({"latent_dim": 3, "hidden": [8]} | params).model_dump()
    )
    engine = rows_engine([model])
    assert engine is not None
    x = torch.rand(1, 5, 1, 6, 6).round()
    torch.manual_seed(1)
    losses = engine.losses(x, x)
    engine.backward(losses)
    torch.manual_seed(1)
    alone = model.loss(x[0], model(x[0])).float().mean()
    alone.backward()
    assert losses.item() == pytest.approx(alone.item(), rel=1e-5)
    for layer_name, layer in engine.layers.items():
        linear = model.get_submodule(layer_name)
        assert layer.weight.grad is not None and linear.weight.grad is not None
        assert torch.allclose(layer.weight.grad[0].t(), linear.weight.grad, atol=1e-5)
        assert torch.allclose(layer.bias.grad[0], linear.bias.grad, atol=1e-5)


def test_a_vmapped_group_with_a_bernoulli_likelihood_trains_together(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A group vmapped rather than run as one batch (here: the rows engine declined) scores its
    binary data with the Bernoulli log-mass under vmap, which must not branch on the data."""
    monkeypatch.setattr(stacked, "rows_engine", lambda *args, **kwargs: None)
    engines: list[str] = []
    init = stacked.VmapEngine.__init__

    def spy(self: stacked.VmapEngine, *args: Any, **kwargs: Any) -> None:
        engines.append("vmap")
        init(self, *args, **kwargs)

    monkeypatch.setattr(stacked.VmapEngine, "__init__", spy)
    found = trials(plugins, seeds=[0, 1])
    assert found[0].dataset.plugin == "digits"  # binarised: a Bernoulli likelihood
    done = run(workload(plugins, found))
    assert [done[s][0]["status"] for s in (0, 1)] == ["ok", "ok"]
    assert engines == ["vmap"] and "could not train together" not in caplog.text
