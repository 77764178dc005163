"""The family trained on small data for a few epochs: sparsity lowers code activity, the VAE's
test ELBO improves, the conv models train on 28x28 images, denoising stays out of evaluation,
and the suites that show the family cover it."""

from __future__ import annotations

import math

import pytest
import torch
from builders import build_suite, entry
from repo import REPO
from torch.distributions import kl_divergence

from aebench import Data, DataInfo, ModelOutput, Split, hookimpl
from aebench.cli import main
from aebench.contract.metric import likelihood_support_problem
from aebench.plugins.manager import Plugins, load_plugins
from aebench.run.data import DataCache
from aebench.run.sections import TrainSection
from aebench.run.suite import load_suite
from aebench.run.train import train_model
from aebench.run.trial import run_trial

BENCHMARKS = REPO / "benchmarks"


def build(plugins: Plugins, kind: str, name: str, *first, **params):
    entry = plugins.registries[kind].get(name)
    return entry.factory(*first, **entry.params.model_validate(params).model_dump())


def train(model, regularizer, data: Data, epochs: int) -> list[float]:
    result = train_model(
        model,
        regularizer,
        data,
        TrainSection(epochs=epochs, batch_size=64, lr=2e-3),
        generator=torch.Generator().manual_seed(0),
    )
    return result.curves["model_loss"]


def mean_code_activation(plugins: Plugins, data: Data, code: str, regularizer: str) -> float:
    torch.manual_seed(0)
    params = {"latent_dim": 32, "hidden": [64], "code_activation": code}
    model = build(plugins, "models", "ae", data.info, **params)
    train(model, build(plugins, "regularizers", regularizer), data, epochs=3)
    with torch.no_grad():
        return model.eval()(data.test.x).activations.abs().mean().item()


def test_sparsity_penalties_lower_the_mean_code_activation_markedly(plugins):
    data = build(plugins, "datasets", "digits")
    for code, sparse in (("relu", "l1"), ("sigmoid", "kl-sparsity")):
        plain = mean_code_activation(plugins, data, code, "none")
        penalised = mean_code_activation(plugins, data, code, sparse)
        assert penalised < 0.5 * plain, (sparse, penalised, plain)


def test_elbo(model, x: torch.Tensor, samples: int = 20) -> float:
    """The mean test ELBO, E_q[log p(x|z)] - KL(q || p), from the model's distributions."""
    with torch.no_grad():
        q = model.posterior(x)
        z = q.sample((samples,))  # (S, N, latent)
        log_lik = torch.stack([model.likelihood(zs).log_prob(x) for zs in z]).mean(0)
        return (log_lik - kl_divergence(q, model.prior())).mean().item()


test_elbo.__test__ = False  # a helper, not a test


def test_vae_test_elbo_is_finite_and_improves_over_training(plugins):
    data = build(plugins, "datasets", "digits")
    torch.manual_seed(0)
    vae = build(plugins, "models", "vae", data.info, latent_dim=8, hidden=[128], beta=1.0)
    none = build(plugins, "regularizers", "none")
    elbos = [test_elbo(vae, data.test.x)]
    for epochs in (1, 4):
        losses = train(vae.train(), none, data, epochs)
        elbos.append(test_elbo(vae.eval(), data.test.x))
    assert all(math.isfinite(e) for e in elbos)
    assert elbos[0] < elbos[1] < elbos[2], elbos
    assert elbos[2] < 0  # a bound on log p(x) of [0, 1] intensities under a Bernoulli
    assert losses[-1] < losses[0]


def blobs(n: int, side: int = 28, seed: int = 0) -> torch.Tensor:
    """Gaussian blobs at random places: (n, 1, side, side) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 2, 1, 1, generator=g) * side
    grid = torch.arange(side, dtype=torch.float32)
    rows = (grid.view(1, side, 1) - centres[:, :1]) ** 2
    d2 = rows + (grid.view(1, 1, side) - centres[:, 1:]) ** 2
    return torch.exp(-d2 / 18.0)  # (n, 1, side, side): the centres carry the channel axis


def test_conv_models_train_on_28_by_28_images(plugins):
    x = blobs(384)
    data = Data(DataInfo((1, 28, 28), "unit"), Split(x[:320]), Split(x[320:]))
    none = build(plugins, "regularizers", "none")
    for name in ("conv-ae", "conv-vae"):
        torch.manual_seed(0)
        model = build(plugins, "models", name, data.info, latent_dim=4, channels=[8, 16])
        losses = train(model, none, data, epochs=4)
        assert all(math.isfinite(v) for v in losses)
        assert losses[-1] < 0.9 * losses[0], (name, losses)
        with torch.no_grad():
            assert model.eval().decode(model.encode(data.test.x)).shape == (64, 1, 28, 28)


class InputProbe:
    """A plugin with a tiny model that records the inputs it sees, in training and in evaluation."""

    seen: dict[str, list[torch.Tensor]]

    def __init__(self) -> None:
        self.seen = {"train": [], "loss_target": [], "eval": []}
        probe = self

        class Probe(torch.nn.Module):
            """Records its inputs."""

            def __init__(self, info: DataInfo) -> None:
                super().__init__()
                self.net = torch.nn.Linear(math.prod(info.shape), math.prod(info.shape))
                self.shape = info.shape

            def encode(self, x):
                probe.seen["train" if self.training else "eval"].append(x.detach().clone())
                return self.net(x.flatten(1))

            def decode(self, z):
                return torch.sigmoid(z).view(-1, *self.shape)

            def forward(self, x):
                code = self.encode(x)
                return ModelOutput(code=code, recon=self.decode(code))

            def loss(self, x, out):
                probe.seen["loss_target"].append(x.detach().clone())
                return (out.recon - x).pow(2).flatten(1).sum(1)

        self.model = Probe

    @hookimpl
    def aebench_register_models(self, register):
        register("probe", self.model)


def test_denoising_corrupts_training_inputs_only(write_suite):
    probe = InputProbe()
    plugins = load_plugins(extra=[probe])
    built = build_suite(
        entry("probe"),
        name="probe",
        epochs=1,
        batch_size=512,
        tracking={"enabled": True},
    )
    suite = write_suite(built | {"regularizers": [entry("denoising", kind="masking", p=1.0)]})
    trial = load_suite(suite, plugins).trials[0]
    row, outcome = run_trial(trial, plugins, torch.device("cpu"), DataCache(plugins))
    assert row["status"] == "ok", row["reason"]
    # Every training batch was fully masked (the runner may also probe the model on clean data
    # before training, which is not a training step).
    masked = sum(bool((x == 0).all()) for x in probe.seen["train"])
    assert masked == math.ceil(len(outcome.data.train) / 512)
    assert all(x.sum() > 0 for x in probe.seen["loss_target"])  # scored against clean inputs
    seen_in_eval = torch.cat(probe.seen["eval"])
    # Clean inputs: the test split, once, shared by the training-health check and the metric.
    torch.testing.assert_close(seen_in_eval, outcome.data.test.x)


def test_the_zoo_pairs_every_model_with_every_regularizer(plugins):
    suite = load_suite(BENCHMARKS / "zoo.toml", plugins)
    pairs = {(t.model.plugin, t.regularizer.plugin) for t in suite.trials}
    models, regularizers = plugins.models.names(), plugins.regularizers.names()
    assert pairs == {(m, r) for m in models for r in regularizers}
    assert {t.dataset.plugin for t in suite.trials} == {"digits", "mnist"}


def test_the_quick_suite_shows_the_family(plugins):
    suite = load_suite(BENCHMARKS / "quick.toml", plugins)
    pairs = {(t.model.plugin, t.regularizer.plugin) for t in suite.trials}
    assert {"ae", "vae"} <= {m for m, _ in pairs}
    assert {("ae", "denoising")} <= pairs
    assert any(r in ("l1", "kl-sparsity") for _, r in pairs)
    assert suite.spec.suite.seeds == [0, 1, 2]  # 3: the fewest with an interval


@pytest.mark.slow
def test_the_quick_suite_trains_every_autoencoder_on_every_seed(tmp_path, monkeypatch):
    """No dead code: at least half of every AE's code units active on the test split (|a| > 0.05
    for some input), and its codes good enough for 5-NN (accuracy >= 0.8), on every seed."""
    import aebench

    monkeypatch.chdir(tmp_path)  # its MLflow store too
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = aebench.run_suite(BENCHMARKS / "quick.toml", output=tmp_path / "quick", device="cpu")
    autoencoders = [row for row in run.rows if row["model"] == "ae"]
    assert len(autoencoders) == 9 and {row["status"] for row in run.rows} == {"ok"}
    for row in autoencoders:
        kept = aebench.load_trial(tmp_path / "quick", row["trial_id"])
        with torch.no_grad():
            codes = kept.model.encode(kept.data.test.x)
        alive = (codes.abs() > 0.05).any(dim=0).float().mean().item()
        label = f"{row['regularizer']} seed {row['seed']}"
        assert alive >= 0.5, f"{label}: {alive:.0%} of its code units active"
        assert row["knn_acc"] >= 0.8, f"{label}: kNN accuracy {row['knn_acc']:.3f}"
        assert "elbo" in row["nan_reasons"] and row["likelihood"] == ""
    # The VAEs' likelihoods are mass functions of the 17 grey levels of digits, not Bernoullis.
    for row in (row for row in run.rows if row["model"] == "vae"):
        assert row["likelihood"] == "discretized-logistic-17" and row["binarize"] == "none"
        kept = aebench.load_trial(tmp_path / "quick", row["trial_id"])
        with torch.no_grad():
            assert likelihood_support_problem(kept.model, kept.data.test.x) is None
        for column in ("elbo", "log_px_iwae", "bits_per_dim"):
            assert math.isfinite(row[column]), column
        assert row["elbo"] <= row["log_px_iwae"] + 3 * row["log_px_iwae_mc_se"] < 0
    # The README's CI recipe can pass: the suite's table against itself is unchanged, exit 0.
    assert main(["compare", str(tmp_path / "quick"), str(tmp_path / "quick")]) == 0
