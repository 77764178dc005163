"""The training loop's options and bookkeeping: bf16 autocast, torch.compile, sample-weighted epoch
means, penalties only where a regularizer has one, fused Adam, and the suite's [train] keys."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import aebench.run.trial
from aebench import Data, DataInfo, ModelOutput, Regularizer, Split
from aebench.plugins.manager import Plugins
from aebench.run.data import DataCache
from aebench.run.optim import make_optimizer
from aebench.run.sections import TrainSection
from aebench.run.suite import SuiteError, load_suite
from aebench.run.train import has_penalty, train_model
from aebench.run.trial import run_trial

INFO = DataInfo(shape=(16,), kind="unit")


def small_data(n: int = 96, seed: int = 0) -> Data:
    generator = torch.Generator().manual_seed(seed)
    return Data(INFO, Split(torch.rand(n, 16, generator=generator)), Split(torch.rand(8, 16)))


def small_ae(plugins: Plugins) -> nn.Module:
    torch.manual_seed(0)
    return plugins.models.get("ae").factory(INFO, latent_dim=3, hidden=[8], code_activation="relu")


def train(model: nn.Module, regularizer: Regularizer, data: Data, **options) -> dict:
    result = train_model(
        model,
        regularizer,
        data,
        TrainSection(epochs=3, batch_size=32, lr=1e-2, **options),
        generator=torch.Generator().manual_seed(0),
    )
    return result.curves


class MeanOfInput(nn.Module):
    """A model whose per-sample loss is the sample's mean value, whatever its weights."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> ModelOutput:
        return ModelOutput(code=x, recon=x + self.weight)

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return x.mean(1) + 0 * out.recon.sum()


def test_epoch_means_weight_each_batch_by_its_samples() -> None:
    # 10 samples in batches of 4: 4, 4, 2. An unweighted mean of batch means would differ.
    x = torch.arange(10, dtype=torch.float32).unsqueeze(1).expand(10, 16).contiguous() ** 2
    data = Data(INFO, Split(x), Split(x))
    result = train_model(
        MeanOfInput(),
        Regularizer(),
        data,
        TrainSection(epochs=2, batch_size=4, lr=0.1),
        generator=torch.Generator().manual_seed(0),
    )
    expected = x.mean().item()
    assert result.curves["loss"] == pytest.approx([expected, expected])
    assert result.curves["model_loss"] == pytest.approx([expected, expected])
    assert result.curves["penalty"] == [0.0, 0.0]


def test_a_penalty_enters_the_loss_and_its_curve(plugins) -> None:
    l1 = plugins.regularizers.get("l1").factory(weight=0.01)
    none = plugins.regularizers.get("none").factory()
    assert has_penalty(l1) and not has_penalty(none)
    curves = train(small_ae(plugins), l1, small_data())
    assert all(p > 0 for p in curves["penalty"])
    losses = (curves[name] for name in ("loss", "model_loss", "penalty"))
    for loss, model_loss, penalty in zip(*losses, strict=True):
        assert loss == pytest.approx(model_loss + penalty, rel=1e-6)


def test_bf16_runs_the_forward_pass_in_bfloat16_and_still_learns(plugins) -> None:
    seen: dict[str, set[torch.dtype]] = {}
    for precision in ("fp32", "bf16"):
        model = small_ae(plugins)
        dtypes = seen.setdefault(precision, set())
        first_linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
        first_linear.register_forward_hook(lambda m, i, out, d=dtypes: d.add(out.dtype))
        curves = train(
            model,
            plugins.regularizers.get("none").factory(),
            small_data(256),
            **{"precision": precision},
        )
        assert curves["loss"][-1] < curves["loss"][0]
        # The weights stay float32: autocast changes the computation, not the parameters.
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert seen == {"fp32": {torch.float32}, "bf16": {torch.bfloat16}}


def test_an_unknown_precision_is_refused(plugins) -> None:
    # [train] refuses it (below); so does the trainer, given settings built past that check.
    settings = TrainSection().model_copy(update={"precision": "fp16"})
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        train_model(small_ae(plugins), Regularizer(), small_data(), settings, generator=None)


def test_compile_goes_through_torch_compile_with_the_same_result(monkeypatch, plugins) -> None:
    l1 = plugins.regularizers.get("l1").factory(weight=0.1)
    eager = train(small_ae(plugins), l1, small_data())

    compiled_functions = []
    real_compile = torch.compile

    def compile_quickly(fn, **kwargs):
        compiled_functions.append(fn)
        # Dynamo traces as it would; aot_eager skips inductor's C++ build (about 40 s here).
        return real_compile(fn, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_quickly)
    compiled = train(small_ae(plugins), l1, small_data(), compile=True)
    assert len(compiled_functions) == 1
    for name in eager:
        assert compiled[name] == pytest.approx(eager[name], rel=1e-5)


def test_adam_is_fused_on_the_cpu(plugins) -> None:
    optimizer = make_optimizer(small_ae(plugins), TrainSection(lr=1e-3))
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["fused"] is True


def test_the_suite_takes_precision_and_compile_and_the_runner_passes_them(
    write_suite, monkeypatch, plugins
) -> None:
    text = """
        [suite]
        name = "options"
        device = "cpu"
        [train]
        epochs = 1
        batch_size = 64
        precision = "{precision}"
        [eval]
        metrics = ["recon_mse"]
        [[datasets]]
        plugin = "digits"
        [[models]]
        plugin = "ae"
        params = {{ hidden = [8], latent_dim = 2 }}
    """
    with pytest.raises(SuiteError, match=r"train\.precision"):
        load_suite(write_suite(text.format(precision="fp16")), plugins)
    suite = load_suite(write_suite(text.format(precision="bf16")), plugins)
    (trial,) = suite.trials
    assert trial.train["precision"] == "bf16" and trial.train["compile"] is False

    dtypes: set[torch.dtype] = set()
    real_train_model = train_model

    def spying_train_model(model, *args, **kwargs):
        linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
        linear.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
        return real_train_model(model, *args, **kwargs)

    monkeypatch.setattr(aebench.run.trial, "train_model", spying_train_model)
    row, _ = run_trial(trial, plugins, torch.device("cpu"), DataCache(plugins))
    assert row["status"] == "ok", row["reason"]
    assert torch.bfloat16 in dtypes
