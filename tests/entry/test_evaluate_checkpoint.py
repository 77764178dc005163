"""``aebench evaluate --checkpoint``: a trial's last checkpoint measured while a run holds its
folder, as its row would be measured, the folder left as it was; bad input one line and exit 2."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from builders import as_toml, build_suite, entry

from aebench.cli import main
from aebench.results.lock import folder_lock
from aebench.results.table import PARQUET
from aebench.results.trials import CHECKPOINT, WEIGHTS, trial_folder
from aebench.run.checkpoint import Checkpoints

SMALL_VAE = entry("vae", latent_dim=4, hidden=[32])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A results folder of one finished VAE trial (its weights kept), and its row."""
    root = tmp_path_factory.mktemp("checkpointed")
    suite = root / "suite.toml"
    suite.write_text(as_toml(build_suite(SMALL_VAE, metrics=["elbo"], epochs=1)))
    assert main(["run", str(suite), "--output", str(root / "out")]) == 0
    [row] = pd.read_parquet(root / "out" / PARQUET).to_dict("records")
    return root / "out", row


def checkpoint_of_kept_weights(folder: Path, trial_id: str) -> Path:
    """A checkpoint after epoch 1 holding the kept model's weights; the optimizer's and random
    states as training's."""
    weights = torch.load(trial_folder(folder, trial_id) / WEIGHTS, weights_only=True)
    path = trial_folder(folder, trial_id) / CHECKPOINT
    state = {
        "model": weights,
        "optimizer": {},
        "scheduler": {},
        "watch": {},
        "generator": torch.Generator().get_state(),
        "torch_rng": torch.get_rng_state(),
        "epoch": 1,
        "train_s": 2.5,
        "curves": {},
        "timed_s": 2.0,
        "timed_samples": 1000,
    }
    Checkpoints(path, trial_id).save(state)
    return path


@pytest.fixture
def held(finished: tuple[Path, dict]) -> Iterator[None]:
    """The folder's lock, held by another thread, as a running ``aebench run`` holds it."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with folder_lock(finished[0]):
            taken.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(timeout=60)
    yield
    release.set()
    holder.join()


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_checkpoint_is_measured_as_its_row_was_while_a_run_holds_the_folder(
    finished: tuple[Path, dict], held: None, capsys
) -> None:
    folder, row = finished
    path = checkpoint_of_kept_weights(folder, row["trial_id"])
    before = snapshot(folder)
    try:
        assert main(["evaluate", str(folder), "--checkpoint", "--trial", row["trial_id"]]) == 0
        after = snapshot(folder)
    finally:
        path.unlink()
    out = capsys.readouterr().out
    assert f"({row['trial_id']}): its checkpoint after epoch 1 of 1 (2 s trained)" in out
    printed = {
        name.strip(): value.strip()
        for name, _, value in (line.partition("=") for line in out.splitlines()[1:])
        if value
    }
    # the same weights and the trial's seeded evaluation: the row's own numbers
    for column in ("elbo", "rate", "distortion"):
        assert float(printed[column]) == pytest.approx(row[column], rel=1e-5), column
    assert after == before  # nothing written


def test_another_metric_setting_applies(finished: tuple[Path, dict], capsys) -> None:
    folder, row = finished
    path = checkpoint_of_kept_weights(folder, row["trial_id"])
    try:
        arguments = ["--metrics", "log_px_iwae", "--set", "log_px_iwae.samples=3"]
        assert (
            main(["evaluate", str(folder), "--checkpoint", "--trial", row["trial_id"], *arguments])
            == 0
        )
    finally:
        path.unlink()
    out = capsys.readouterr().out
    assert "log_px_iwae = " in out and "elbo = " not in out


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--checkpoint"], "--checkpoint measures one trial: name it with --trial ID"),
        (["--checkpoint", "--trial", "0123456789abcdef"], "no trial '0123456789abcdef' in its"),
        (["--checkpoint", "--trial", "{id}"], f"no {CHECKPOINT}: the trial has not saved one"),
    ],
    ids=["no-trial", "unknown-trial", "no-checkpoint"],
)
def test_bad_input_is_one_line_and_exit_2(
    finished: tuple[Path, dict], capsys, arguments: list[str], says: str
) -> None:
    folder, row = finished
    before = snapshot(folder)
    arguments = [a.replace("{id}", row["trial_id"]) for a in arguments]
    assert main(["evaluate", str(folder), *arguments]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("aebench: error: ") and says in line, line
    assert snapshot(folder) == before


def test_another_trials_checkpoint_is_one_line_and_nothing_starts_over(
    finished: tuple[Path, dict], capsys
) -> None:
    folder, row = finished
    path = checkpoint_of_kept_weights(folder, row["trial_id"])
    state = torch.load(path, weights_only=True)
    del state["trial_id"], state["format"]  # saved again, under another trial's id
    Checkpoints(path, "0123456789abcdef").save(state)
    try:
        assert main(["evaluate", str(folder), "--checkpoint", "--trial", row["trial_id"]]) == 2
    finally:
        path.unlink()
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(": cannot be measured: a checkpoint of trial 0123456789abcdef"), line
