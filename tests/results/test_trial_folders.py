"""Trials as artifacts: kept weights, evaluation apart from training, checkpoints and resume,
reloading, and the bad input around them."""

from __future__ import annotations

import hashlib
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from builders import as_toml, build_suite, entry, start_run
from fake_plugins import fake_distribution
from timing import scaled, wait_until

import aebench
from aebench.cli import main
from aebench.results.table import PARQUET
from aebench.results.trials import CHECKPOINT, CONFIG, CURVES, WEIGHTS, trial_folder


def suite_text(samples: int = 10, **settings: Any) -> str:
    """A VAE and an autoencoder on digits, one seed, the default metrics: ``samples`` for the
    IWAE estimates; ``settings`` of the ``[suite]`` table."""
    models = [entry(plugin, hidden=[16], latent_dim=2) for plugin in ("vae", "ae")]
    # log_px_exact by quadrature: about 1e5 decoder points per input
    eval = {"iwae_samples": samples, "log_px_exact": {"inputs": 5}}
    built = build_suite(
        *models,
        name="kept",
        seeds=[0],
        epochs=3,
        batch_size=128,
        metrics=None,
        eval=eval,
        **settings,
    )
    return as_toml(built)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder of one VAE and one autoencoder trial, their weights kept."""
    folder = tmp_path_factory.mktemp("kept")
    (folder / "suite.toml").write_text(suite_text())
    run = aebench.run_suite(folder / "suite.toml", output=folder / "results")
    assert [row["status"] for row in run.rows] == ["ok", "ok"]
    return folder / "results"


@pytest.fixture
def results(kept: Path, tmp_path: Path) -> Path:
    """A copy of the kept results, for a test that changes them."""
    return Path(shutil.copytree(kept, tmp_path / "results"))


def rows_by_model(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / PARQUET).set_index("model")


def test_a_trial_folder_holds_its_config_curves_and_weights(kept: Path, plugins) -> None:
    table = rows_by_model(kept)
    trial_id = table.loc["vae", "trial_id"]
    folder = trial_folder(kept, trial_id)
    assert {CONFIG, CURVES, WEIGHTS} <= {p.name for p in folder.iterdir()}
    assert not (folder / CHECKPOINT).exists()  # gone once the trial finished
    state = torch.load(folder / WEIGHTS, weights_only=True)
    data = plugins.datasets.get("digits").factory()
    model = plugins.models.get("vae").factory(data.info, hidden=[16], latent_dim=2)
    model.load_state_dict(state)  # a plain state_dict of the model the suite describes
    config = aebench.Trial.from_config(__import__("json").loads((folder / CONFIG).read_text()))
    assert config.id == trial_id


def test_kept_weights_reload_to_identical_test_metrics(results: Path, plugins) -> None:
    before = rows_by_model(results)
    run = aebench.evaluate(results, trial_ids=list(before["trial_id"]))
    after = pd.DataFrame(run.rows).set_index("model")
    steady = [
        c.name
        for metric in plugins.metrics
        for c in metric.factory.columns
        if not c.noisy and c.name in before.columns
    ]
    for model in ("vae", "ae"):
        for column in steady:
            old, new = before.loc[model, column], after.loc[model, column]
            assert old == new or (math.isnan(old) and math.isnan(new)), (model, column)


def test_a_larger_iwae_samples_trains_nothing_and_changes_only_the_likelihoods(results: Path):
    before = rows_by_model(results)
    weights = {
        m: sha(trial_folder(results, before.loc[m, "trial_id"]) / WEIGHTS) for m in before.index
    }
    suite = results.parent / "suite.toml"
    suite.write_text(suite_text(samples=40))
    run = aebench.run_suite(suite, output=results)
    assert run.evaluated == 2 and len(run.rows) == 2  # measured again, not trained
    after = rows_by_model(results)
    for model in ("vae", "ae"):
        assert after.loc[model, "train_s"] == before.loc[model, "train_s"]
        assert sha(trial_folder(results, after.loc[model, "trial_id"]) / WEIGHTS) == weights[model]
    allowed = {"log_px_iwae", "log_px_iwae_mc_se", "log_px_iwae_test_se", "log_px_prior_mc"}
    allowed |= {"log_px_iwae_ess_mean", "log_px_iwae_ess_min", "log_px_iwae_convergence"}
    allowed |= {"log_px_exact_iwae_gap", "eval.log_px_exact.samples"}  # IWAE at K, beside it
    allowed |= {"eval_id", "eval_s", "notes"}  # notes: the convergence flag's value moves with K
    allowed |= {"eval.log_px_iwae.samples", "eval.log_px_prior_mc.samples"}
    allowed |= {"infer_samples_per_s"}  # a timing: never the same twice
    allowed |= {c for c in before.columns if c.startswith("eval_s_")}  # the metrics' timings
    changed = {
        column
        for column in before.columns
        for model in ("vae", "ae")
        if not (
            before.loc[model, column] == after.loc[model, column]
            or (pd.isna(before.loc[model, column]) and pd.isna(after.loc[model, column]))
        )
    }
    assert "log_px_iwae" in changed and changed <= allowed, changed - allowed
    assert after.loc["vae", "eval.log_px_iwae.samples"] == 40


@pytest.mark.slow  # two real runs, end to end
def test_without_kept_weights_a_changed_evaluation_trains_again(tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(suite_text(keep_models=False))
    aebench.run_suite(suite, output=tmp_path / "out")
    assert not list((tmp_path / "out").rglob(WEIGHTS))
    suite.write_text(suite_text(samples=20, keep_models=False))
    run = aebench.run_suite(suite, output=tmp_path / "out")
    assert run.evaluated == 0 and len(run.rows) == 2  # trained again


def test_load_trial_gives_the_model_in_eval_mode_and_its_data(kept: Path) -> None:
    trial_id = rows_by_model(kept).loc["vae", "trial_id"]
    trial = aebench.load_trial(kept, trial_id)
    assert not trial.model.training
    assert trial.data.info.shape == (1, 8, 8)
    assert trial.row["trial_id"] == trial_id and trial.trial.id == trial_id
    with torch.no_grad():
        mse = trial.model.decode(trial.model.encode(trial.data.test.x)) - trial.data.test.x
    assert mse.pow(2).mean().item() == pytest.approx(trial.row["recon_mse"], rel=1e-6)


@pytest.mark.parametrize("command", ["sample", "reconstruct"])
def test_sample_and_reconstruct_write_a_png(kept: Path, tmp_path: Path, command: str) -> None:
    trial_id = rows_by_model(kept).loc["vae", "trial_id"]
    out = tmp_path / f"{command}.png"
    assert main([command, str(kept), trial_id, "-n", "8", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loading_results_from_python(kept: Path) -> None:
    table = aebench.load_results(kept)
    assert sorted(table["model"]) == ["ae", "vae"]


@pytest.mark.parametrize(
    "damage, arguments, message",
    [
        (None, ["--trial", "0123456789abcdef"], "no trial '0123456789abcdef' in its results"),
        ("truncate", [], "unreadable weights"),
        ("remove", ["--trial", "{vae}"], "no kept weights"),
        ("format", [], "a trial folder of format 0"),
        ("suite", [], "not a results folder of this aebench"),
        (None, ["--trial", "{ae}", "--metrics", "log_px_iwae"], "cannot measure it"),
        (None, ["--set", "log_px_iwae.samples=0"], "eval.log_px_iwae.samples"),
        (None, ["--set", "samples"], "expected METRIC.PARAMETER=VALUE"),
    ],
)
def test_bad_input_to_evaluate_is_one_line_and_changes_nothing(
    results: Path, capsys, damage: str | None, arguments: list[str], message: str
) -> None:
    ids = rows_by_model(results)["trial_id"].to_dict()
    vae = trial_folder(results, ids["vae"])
    if damage == "truncate":
        (vae / WEIGHTS).write_bytes((vae / WEIGHTS).read_bytes()[:100])
    elif damage == "remove":
        (vae / WEIGHTS).unlink()
    elif damage == "format":
        (vae / CONFIG).write_text((vae / CONFIG).read_text().replace('"format": 1', '"format": 0'))
    elif damage == "suite":
        (results / "suite.json").unlink()
    table = sha(results / PARQUET)
    arguments = [a.format(**ids) for a in arguments]
    assert main(["evaluate", str(results), *arguments]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("aebench: error: ") and message in line, line
    assert sha(results / PARQUET) == table


# --- checkpoints ---------------------------------------------------------------------------


def resumable(tmp_path: Path, delay: float) -> tuple[Path, Path]:
    """A suite of the fragile model, ``delay`` s a step, 10 epochs, a checkpoint after each."""
    fragile = entry("fragile", delay=delay, noise=0.1)
    metrics = ["recon_mse", "code_mean_abs"]
    train = {"checkpoint_every": 1}
    built = build_suite(
        fragile, name="resumable", epochs=10, batch_size=256, metrics=metrics, train=train
    )
    suite = tmp_path / f"resumable-{delay}.toml"
    suite.write_text(as_toml(built))
    return suite, fake_distribution(tmp_path / "site")


def start(suite: Path, site: Path, output: Path) -> subprocess.Popen:
    return start_run(suite, "--output", str(output), site=site)


def checkpointed_epoch(output: Path) -> int:
    for path in output.glob(f"trials/*/{CHECKPOINT}"):
        try:
            return torch.load(path, weights_only=True)["epoch"]
        except Exception:  # caught between write and rename: try again
            return 0
    return 0


@pytest.mark.slow
def test_a_trial_killed_mid_way_resumes_from_its_checkpoint_and_ends_identical(tmp_path):
    # 6 steps of 60 ms: ~0.4 s per epoch on an idle machine, and as much longer as this one is
    # slower, so that the test kills it before the trial ends
    suite, site = resumable(tmp_path, delay=round(scaled(0.06), 3))
    process = start(suite, site, tmp_path / "killed")
    wait_until(
        lambda: checkpointed_epoch(tmp_path / "killed") >= 5, "no checkpoint of epoch 5", process
    )
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=scaled(30))
    assert not (tmp_path / "killed" / PARQUET).exists()  # it died mid-trial

    resumed = start(suite, site, tmp_path / "killed")
    _, stderr = resumed.communicate(timeout=scaled(300))
    assert resumed.returncode == 0, stderr
    epoch = int(stderr.split("resumed from its checkpoint after epoch ")[1].split()[0])
    assert epoch >= 5

    whole = start(suite, site, tmp_path / "whole")
    assert whole.communicate(timeout=scaled(300)) and whole.returncode == 0
    first = pd.read_parquet(tmp_path / "killed" / PARQUET).iloc[0]
    second = pd.read_parquet(tmp_path / "whole" / PARQUET).iloc[0]
    for column in ("final_loss", "recon_mse", "code_mean_abs"):
        assert first[column] == second[column], column  # bit for bit, on the CPU
    curves = [
        (p / CURVES).read_text()
        for p in (trial_folder(tmp_path / o, first["trial_id"]) for o in ("killed", "whole"))
    ]
    assert curves[0] == curves[1]


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_or_foreign_checkpoint_is_ignored_and_the_trial_starts_over(
    tmp_path, monkeypatch, capsys, damage
) -> None:
    suite, site = resumable(tmp_path, delay=0.0)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "aebench_fragile", raising=False)
    plugins = aebench.load_plugins()
    whole = aebench.run_suite(suite, output=tmp_path / "whole", plugins=plugins).rows[0]
    checkpoint = trial_folder(tmp_path / "damaged", whole["trial_id"]) / CHECKPOINT
    checkpoint.parent.mkdir(parents=True)
    if damage == "truncated":
        checkpoint.write_bytes(b"PK\x03\x04 not a whole zip")
    else:
        torch.save({"format": 1, "trial_id": "another", "epoch": 9}, checkpoint)
    capsys.readouterr()
    row = aebench.run_suite(suite, output=tmp_path / "damaged", plugins=plugins).rows[0]
    warning = capsys.readouterr().err
    assert "checkpoint ignored" in warning and "starts over" in warning
    assert row["status"] == "ok" and row["final_loss"] == whole["final_loss"]


def test_a_metric_that_fails_keeps_the_weights_and_the_trial(results: Path) -> None:
    def boom(context):
        """Always fails."""
        raise RuntimeError("boom")

    class Boom:
        @aebench.hookimpl
        def aebench_register_metrics(self, register):
            register("boom", aebench.Metric(boom, columns=[aebench.Column("boom")]))

    before = rows_by_model(results)
    weights = trial_folder(results, before.loc["vae", "trial_id"]) / WEIGHTS
    kept = sha(weights)
    plugins = aebench.load_plugins(extra=[Boom()])
    run = aebench.evaluate(results, metrics=["boom"], plugins=plugins)
    # A metric's failure is its own: NaN and an entry naming it, the trial still measured.
    assert {row["status"] for row in run.rows} == {"ok"}
    assert run.rows[0]["metric_errors"] == "metric 'boom' (Boom): RuntimeError: boom"
    assert math.isnan(run.rows[0]["boom"])
    assert sha(weights) == kept  # a failed measurement loses nothing
    after = rows_by_model(results)
    assert after.loc["vae", "train_s"] == before.loc["vae", "train_s"]
