"""Faults: a diverging loss, off-contract plugins, Ctrl-C, SIGTERM, kill -9 and resume, crashes."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from builders import QUICK_AE, build_suite, entry, start_run
from fake_plugins import fake_distribution
from mlflow_runs import search_runs
from timing import scaled, wait_until

from aebench import ModelOutput, hookimpl
from aebench.plugins.manager import load_plugins
from aebench.results.table import read_results
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite


def trained(markers: Path) -> bool:
    """Whether the fragile model has started training (it leaves a marker file)."""
    return any(markers.iterdir())


@pytest.fixture
def slow_suite(write_suite, tmp_path):
    """A quick ``ae``, then the fragile model, sleeping ``delay`` in each of its 56 steps."""
    site = fake_distribution(tmp_path / "site")

    def make(
        delay: float = 0.05,
        kill: str = "none",
        isolate: bool = False,
        tracking: dict[str, Any] | None = None,
    ) -> tuple[Path, Path]:
        fragile = entry("fragile", delay=delay, kill=kill)
        built = build_suite(QUICK_AE, fragile, name="faults", isolate=isolate, tracking=tracking)
        return write_suite(built), site

    return make


def table(cwd: Path) -> pd.DataFrame:
    """The results as aebench reads them: after kill -9 the last rows are in the journal."""
    return read_results(cwd / "results" / "faults")


@pytest.mark.slow  # a run in a child process, signalled mid-trial: 7-8 s each
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_abandons_the_trial_and_keeps_what_finished(slow_suite, tmp_path, signum):
    suite, site = slow_suite(delay=0.2)
    markers = tmp_path / "markers"
    process = start_run(suite, site=site, cwd=tmp_path, markers=markers)
    wait_until(lambda: trained(markers), "the slow trial never started", process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=scaled(30))  # the slow trial abandoned: see the rows
    assert process.returncode == 128 + signum
    assert "interrupted" in stderr and "Traceback" not in stderr
    rows = table(tmp_path)
    assert list(rows["model"]) == ["ae"] and list(rows["status"]) == ["ok"]


@pytest.mark.slow
def test_an_interrupted_suite_leaves_its_mlflow_invocation_run_killed(slow_suite, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    suite, site = slow_suite(delay=0.2, tracking={"uri": uri})
    markers = tmp_path / "markers"
    process = start_run(suite, site=site, cwd=tmp_path, markers=markers)
    wait_until(lambda: trained(markers), "the slow trial never started", process)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=scaled(60))
    runs = search_runs(uri, experiment_names=["faults"])
    invocation = runs[runs["tags.aebench.trial_id"].isna()]
    trials = runs[runs["tags.aebench.trial_id"].notna()]
    assert list(invocation["status"]) == ["KILLED"]
    assert list(trials["tags.aebench.model"]) == ["ae"]  # the finished trial, and only it
    assert list(trials["status"]) == ["FINISHED"]
    assert list(trials["tags.aebench.invocation"]) == list(invocation["run_id"])


@pytest.mark.slow
def test_kill_9_mid_trial_then_a_rerun_finishes_without_repeating(slow_suite, tmp_path):
    suite, site = slow_suite(delay=0.2)
    markers = tmp_path / "markers"
    process = start_run(suite, site=site, cwd=tmp_path, markers=markers)
    wait_until(lambda: trained(markers), "the slow trial never started", process)
    process.kill()
    process.communicate(timeout=scaled(30))
    first = table(tmp_path)
    assert list(first["model"]) == ["ae"]
    assert not list((tmp_path / "results" / "faults").glob(".*.tmp"))

    suite, site = slow_suite(delay=0.2)  # the same suite; the ae trial must not run again
    rerun = start_run(suite, site=site, cwd=tmp_path)
    stdout, stderr = rerun.communicate(timeout=scaled(300))
    assert rerun.returncode == 0, stderr
    assert "1 trials were already finished" in stdout
    final = table(tmp_path)
    assert sorted(final["model"]) == ["ae", "fragile"]
    assert final["trial_id"].is_unique
    ae = final[final["model"] == "ae"].iloc[0]
    assert ae["train_s"] == first.iloc[0]["train_s"]  # the very row of the first run


@pytest.mark.slow  # an end-to-end run of 12-13 s
def test_an_isolated_trial_that_segfaults_is_failed_and_the_suite_goes_on(slow_suite, tmp_path):
    suite, site = slow_suite(kill="SIGSEGV", isolate=True)
    process = start_run(suite, site=site, cwd=tmp_path)
    _, stderr = process.communicate(timeout=scaled(300))
    assert process.returncode == 1  # a failed trial
    rows = table(tmp_path).set_index("model")
    assert rows.loc["ae", "status"] == "ok"
    assert rows.loc["fragile", "status"] == "failed"
    assert rows.loc["fragile", "reason"] == "trial process was killed by SIGSEGV"
    # The trial that finished in its child process is kept here, by the parent.
    folder = tmp_path / "results" / "faults" / "trials" / rows.loc["ae", "trial_id"]
    state = torch.load(folder / "model.pt", weights_only=True)
    assert state and all(torch.isfinite(t).all() for t in state.values())
    assert f'"trial_id": "{rows.loc["ae", "trial_id"]}"' in (folder / "config.json").read_text()


@pytest.mark.slow  # two end-to-end runs, one of them isolated
@pytest.mark.parametrize("isolate", [False, True])
def test_a_plugin_that_calls_sys_exit_fails_its_trial_and_the_suite_goes_on(
    slow_suite, tmp_path, isolate
):
    # before: in-process, the run ended there with status 2 and no word; isolated, the reason
    # read "killed by SIGKILL" (aebench's own kill, sent before the child's exit was read).
    # Now the trial's own process records it, naming the plugin, as any error it raises.
    suite, site = slow_suite(kill="exit", isolate=isolate)
    process = start_run(suite, site=site, cwd=tmp_path)
    process.communicate(timeout=scaled(300))
    assert process.returncode == 1  # a failed trial
    rows = table(tmp_path).set_index("model")
    assert rows.loc["ae", "status"] == "ok"
    assert rows.loc["fragile", "status"] == "failed"
    assert rows.loc["fragile", "reason"] == "SystemExit in model 'fragile' (aebench_fragile 0.1): 3"


class Diverging(torch.nn.Module):
    """A model whose loss turns NaN in its second epoch."""

    def __init__(self, info, latent_dim: int = 2):
        super().__init__()
        self.net = torch.nn.Linear(64, 64)
        self.steps = 0

    def encode(self, x):
        return x.flatten(1)[:, :2]

    def decode(self, z):
        return torch.zeros(len(z), 1, 8, 8)

    def forward(self, x):
        self.steps += 1
        recon = self.net(x.flatten(1)).view_as(x)
        return ModelOutput(code=self.encode(x), recon=recon)

    def loss(self, x, out):
        loss = (out.recon - x).pow(2).flatten(1).sum(1)
        return loss * float("nan") if self.steps > 30 else loss


def off_contract(
    recon_shape=None, loss_per_batch=False, event_shape_wrong=False, checked_support=False
):
    """A linear VAE-like model that breaks the contract in one chosen way."""

    class OffContract(torch.nn.Module):
        """Breaks the contract on purpose."""

        def __init__(self, info, latent_dim: int = 2):
            super().__init__()
            self.enc = torch.nn.Linear(64, latent_dim)
            self.dec = torch.nn.Linear(latent_dim, 64)

        def encode(self, x):
            return self.enc(x.flatten(1))

        def decode(self, z):
            recon = torch.sigmoid(self.dec(z))
            return recon if recon_shape else recon.view(-1, 1, 8, 8)

        def forward(self, x):
            code = self.encode(x)
            return ModelOutput(code=code, recon=self.decode(code))

        def loss(self, x, out):
            per_element = (out.recon.reshape(x.shape) - x).pow(2).flatten(1)
            return per_element if loss_per_batch else per_element.sum(1)

        def prior(self):
            return torch.distributions.Independent(
                torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1
            )

        def posterior(self, x):
            return torch.distributions.Independent(
                torch.distributions.Normal(self.encode(x), torch.ones(2)), 1
            )

        def likelihood(self, z):
            probs = torch.sigmoid(self.dec(z))
            if not event_shape_wrong:
                probs = probs.view(-1, 1, 8, 8)
                # digits are grey levels: no support check, as the built-in VAE's Bernoulli
                bernoulli = torch.distributions.Bernoulli(probs, validate_args=checked_support)
                return torch.distributions.Independent(bernoulli, 3)
            return torch.distributions.Independent(torch.distributions.Bernoulli(probs), 1)

    return OffContract


class FaultyModels:
    @hookimpl
    def aebench_register_models(self, register):
        register("diverging", Diverging)
        register("bad-recon", off_contract(recon_shape=True))
        register("bad-loss", off_contract(loss_per_batch=True))
        register("bad-likelihood", off_contract(event_shape_wrong=True))
        register("bad-support", off_contract(checked_support=True))


@pytest.fixture
def faulty(write_suite, tmp_path):
    plugins = load_plugins(extra=[FaultyModels()])

    def run(model: str) -> dict:
        path = write_suite(build_suite(entry(model), name="faults"), f"{model}.toml")
        run = run_trials(load_suite(path, plugins), plugins, output=tmp_path / model)
        [row] = run.rows
        return row

    return run


def test_a_loss_that_turns_nan_is_diverged_with_its_epoch(faulty):
    row = faulty("diverging")
    assert row["status"] == "diverged"
    assert row["reason"] == "loss is not finite at epoch 2"


@pytest.mark.parametrize(
    "model, expected",
    [
        ("bad-recon", "reconstruction has shape (64, 64); expected the input's (64, 1, 8, 8)"),
        ("bad-loss", "loss has shape (64, 64); expected one number per sample, shape (64,)"),
        (
            "bad-likelihood",
            "likelihood(z) Independent has event shape (64,); expected the data's (1, 8, 8)",
        ),
    ],
)
def test_an_off_contract_plugin_fails_its_trial_naming_plugin_and_expectation(
    faulty, model, expected
):
    row = faulty(model)
    assert row["status"] == "failed"
    assert row["reason"].startswith(f"ContractError: model '{model}' (")
    assert row["reason"].endswith(expected)


def test_a_likelihood_that_cannot_score_the_data_fails_before_the_models_loss_runs(faulty):
    # A Bernoulli that checks its support, on grey-level digits: met first in the model's own
    # loss it would be torch's bare ValueError; the contract check names the distribution.
    row = faulty("bad-support")
    assert row["status"] == "failed"
    assert row["reason"].startswith("ContractError: model 'bad-support' (")
    assert (
        "likelihood(z) Independent.log_prob cannot score the data of shape (64, 1, 8, 8)"
        in (row["reason"])
    )
    assert "support" in row["reason"]
