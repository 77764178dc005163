"""The command line, in-process: ``aebench.cli.main`` with the arguments a user types.

Malformed suites are in test_bad_suites.py; the exit status as a shell sees it, signals and a
fresh interpreter's imports are tested in subprocesses where they are the point (test_compare.py,
test_faults.py, test_fixed_costs.py, test_tracking.py).
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch
from builders import build_suite, build_tiny_suite, entry
from repo import REPO
from timing import scaled


def test_run_writes_a_row_per_trial(aebench, tiny_suite, tmp_path):
    result = aebench("run", str(tiny_suite))
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(tmp_path / "results" / "tiny" / "results.parquet")
    assert len(table) == 4 and set(table["status"]) == {"ok"}
    assert "4 trials run (4 ok)" in result.stdout
    assert "trial folders: " in result.stdout and "MB in results/tiny/trials" in result.stdout
    # The summary names the best configuration: here the lower recon_mse over seeds (an `ae`
    # has no likelihood, the first headline), with its mean.
    means = table.groupby("model.latent_dim")["recon_mse"].mean()
    best = int(means.idxmin())
    line = next(x for x in result.stdout.splitlines() if x.startswith("top on digits: "))
    assert line.startswith(f"top on digits: ae / none latent_dim={best}: recon_mse ")
    assert f"{means[best]:.4g}" in line
    other = f"ae / none latent_dim={int(means.idxmax())}"  # best only where a test says so
    assert "↓, best (better than the other, at 95%" in line or f"↓, tied with {other} (" in line


def test_output_and_device_options(aebench, tiny_suite, tmp_path):
    result = aebench("run", str(tiny_suite), "--output", "elsewhere", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert set(pd.read_parquet(tmp_path / "elsewhere" / "results.parquet")["device"]) == {"cpu"}


def test_a_device_that_is_not_here_is_one_line_naming_the_option(aebench, tiny_suite, tmp_path):
    # before: torch's RuntimeError with a traceback ("gpu"); the dataset blamed for "cuda"
    absent = "cuda:7" if torch.cuda.is_available() else "cuda"
    for device, why in (
        ("gpu", "'gpu' is not one of cpu, cuda, cuda:N, mps or auto"),
        (absent, f"{absent}: this machine has "),
    ):
        result = aebench("run", str(tiny_suite), "--output", "out", "--device", device)
        assert result.returncode == 2
        assert result.stderr.startswith(f"aebench: error: --device: {why}"), result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    suite = tiny_suite.read_text().replace('device = "cpu"', 'device = "gpu"')
    assert 'device = "gpu"' in suite  # the suite's own device is checked where the file says it
    tiny_suite.write_text(suite)
    result = aebench("run", str(tiny_suite))
    assert result.returncode == 2 and "suite.device" in result.stderr, result.stderr


def test_evaluate_with_metrics_that_name_none_changes_nothing(aebench, tiny_suite, tmp_path):
    # before: "--metrics ' , '" measured no metric, every column NaN, exit 0
    assert aebench("run", str(tiny_suite), "--output", "out").returncode == 0
    before = pd.read_parquet(tmp_path / "out" / "results.parquet")
    result = aebench("evaluate", "out", "--metrics", " , ")
    assert result.returncode == 2
    assert result.stderr.strip() == "aebench: error: --metrics ' , ': names no metric"
    assert pd.read_parquet(tmp_path / "out" / "results.parquet").equals(before)


def test_evaluate_names_the_trained_trials_it_has_no_model_of(aebench, tiny_suite, tmp_path):
    # before: measured the others and exited 0 without a word of the one left as it was
    assert aebench("run", str(tiny_suite), "--output", "out").returncode == 0
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    lost = table["trial_id"].iloc[0]
    (tmp_path / "out" / "trials" / lost / "model.pt").unlink()
    result = aebench("evaluate", "out", "--metrics", "recon_mse")
    assert result.returncode == 0, result.stderr
    assert "3 kept trials measured again (3 ok)" in result.stdout
    said = f"1 trained trial left as recorded, no model kept (model.pt missing): {lost}"
    assert said in result.stdout


def test_dry_run_lists_trials_and_writes_nothing(aebench, tiny_suite, tmp_path):
    result = aebench("run", str(tiny_suite), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "4 trials" in result.stdout and "(4 to train, 0 to measure again" in result.stdout
    assert result.stdout.count("  pending ") == 4
    assert not (tmp_path / "results").exists()


def test_dry_run_marks_what_is_done_and_what_is_pending(aebench, tiny_suite, tmp_path):
    assert aebench("run", str(tiny_suite), "--output", "out").returncode == 0
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    failed = table["trial_id"].iloc[0]
    table.loc[table["trial_id"] == failed, "status"] = "failed"  # failed trials run again
    table.to_parquet(tmp_path / "out" / "results.parquet")
    listed = aebench("run", str(tiny_suite), "--output", "out", "--dry-run").stdout
    states = {line.split()[1]: line.split()[0] for line in listed.splitlines()[1:]}
    assert states == {tid: "pending" if tid == failed else "done" for tid in table["trial_id"]}
    assert "(1 to train, 0 to measure again from their kept models, 3 done;" in listed
    rerun = aebench("run", str(tiny_suite), "--output", "out", "--dry-run", "--rerun").stdout
    assert rerun.count("  pending ") == 4
    # Measured otherwise now: the kept models are measured again, not trained.
    remeasured = tiny_suite.with_name("remeasured.toml")
    remeasured.write_text(tiny_suite.read_text() + '\n[eval]\nmetrics = ["recon_mse"]\n')
    listed = aebench("run", str(remeasured), "--output", "out", "--dry-run").stdout
    assert listed.count("  measure ") == 3 and listed.count("  pending ") == 1


def test_report_on_a_file_says_it_is_no_results_folder(aebench, tmp_path):
    # before: "afile/results.journal.jsonl: unreadable: [Errno 20] Not a directory"
    (tmp_path / "afile").write_text("")
    result = aebench("report", "afile")
    assert result.returncode == 2
    assert result.stderr.strip() == "aebench: error: afile: a file, not a results folder"


def test_a_missing_suite_file(aebench):
    result = aebench("run", "nowhere.toml")
    assert result.returncode == 2
    assert result.stderr.strip() == "aebench: error: nowhere.toml: no such suite file"


def test_plugins_lists_distributions_and_what_they_register(aebench):
    result = aebench("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["plugin"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["aebench.models"]["distribution"] == "aebench"
    assert "ae" in plugins["aebench.models"]["registers"]["models"]
    text = aebench("plugins").stdout
    assert "aebench.models" in text and "models: " in text


def test_list_shows_parameters_with_types_and_defaults(aebench):
    result = aebench("list", "models", "--json")
    assert result.returncode == 0, result.stderr
    [ae] = [m for m in json.loads(result.stdout)["models"] if m["name"] == "ae"]
    params = {p["name"]: p for p in ae["params"]}
    assert params["latent_dim"]["type"] == "int >= 1"
    assert params["latent_dim"]["default"] == 16
    text = aebench("list").stdout
    for kind in ("models:", "regularizers:", "datasets:", "metrics:"):
        assert kind in text


@pytest.mark.slow  # `aebench run` in a fresh interpreter: 7 s
def test_piped_output_of_run_is_one_line_per_finished_trial(write_suite, tmp_path):
    suite = write_suite(build_tiny_suite(metrics=["recon_mse"]))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [sys.executable, "-m", "aebench.cli", "run", str(suite), "--output", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env | {"OMP_NUM_THREADS": "1"},
        timeout=scaled(300),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 4, done.stderr
    for i, line in enumerate(lines, start=1):
        assert re.fullmatch(
            rf"\[{i}/4\] digits/ae/none seed=[01]: ok \(\d+\.\d s, \d:\d\d:\d\d\)", line
        )
    assert "━" not in done.stderr  # no bar drawn into a pipe


@pytest.mark.slow  # fresh interpreters: 5 s
def test_compare_into_a_closed_pipe_ends_quietly(tmp_path):
    rows = [
        {
            "trial_id": str(i),
            "dataset": "a-dataset-with-a-name-long-enough-to-fill-the-pipe-in-few-rows",
            "model": "ae",
            "regularizer": "none",
            "seed": 0,
            "status": "ok",
            "reason": "",
            "model.latent_dim": i,
            "recon_mse": 0.1,
        }
        for i in range(1000)
    ]  # 1000 lines of 140 characters: twice what a pipe's buffer holds
    pd.DataFrame(rows).to_parquet(tmp_path / "results.parquet")
    table = str(tmp_path / "results.parquet")
    compare = subprocess.Popen(
        [sys.executable, "-m", "aebench.cli", "compare", table, table, "--all"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert compare.stdout.readline().startswith("verdict")  # like `| head -1`
    compare.stdout.close()
    stderr = compare.stderr.read()
    assert compare.wait(timeout=scaled(120)) == 128 + signal.SIGPIPE
    assert stderr == ""  # no BrokenPipeError traceback


KL_ON_A_LINEAR_CODE = build_suite(
    entry("ae", latent_dim=4, hidden=[16], code_activation="linear"),
    entry("ae", latent_dim=4, hidden=[16], code_activation="sigmoid"),
    name="declined",
    seeds=[0, 1],
    epochs=1,
    batch_size=None,
) | {"regularizers": [entry("kl-sparsity")]}


def test_a_regularizer_that_declines_a_model_is_announced_once_before_the_run(
    aebench, write_suite, tmp_path
):
    suite = write_suite(KL_ON_A_LINEAR_CODE)
    result = aebench("run", str(suite), "--output", "out")
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("aebench: 2 trials will be skipped: kl-sparsity needs code activations")
    assert first.endswith(": digits/ae/kl-sparsity (models[0], regularizers[0])")
    assert result.stderr.count("needs code activations in (0, 1)") == 1  # not again per trial
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    skipped = table[table["status"] == "skipped"]
    assert len(skipped) == 2 and set(skipped["model.code_activation"]) == {"linear"}
    assert skipped["reason"].str.contains("needs code activations in").all()
    assert (table[table["status"] != "skipped"]["status"] == "ok").all()
    # Run again: nothing left to run, nothing announced.
    again = aebench("run", str(suite), "--output", "out")
    assert "will be skipped" not in again.stderr


def test_declines_found_before_the_run_are_those_found_when_trials_run(write_suite, plugins):
    from aebench import load_suite
    from aebench.run.data import DataCache
    from aebench.run.plan import declined
    from aebench.run.trial import run_trial

    suite = load_suite(write_suite(KL_ON_A_LINEAR_CODE), plugins)
    cache = DataCache(plugins)
    found = declined(suite, plugins, cache, torch.device("cpu"))
    assert len(found) == 2
    for trial in suite.trials:
        if trial.id in found:  # the run-time check agrees, reason and all
            row, _ = run_trial(trial, plugins, torch.device("cpu"), cache)
            assert (row["status"], row["reason"]) == ("skipped", found[trial.id])


def test_declines_are_announced_one_line_per_reason(capsys, plugins):

    from aebench import load_suite
    from aebench.commands import SHOWN_CONFIGURATIONS, announce_declined

    zoo = load_suite(REPO / "benchmarks" / "zoo.toml", plugins)
    skipped = [t for t in zoo.trials if t.regularizer.plugin == "kl-sparsity"]
    reasons = {t.id: "needs a code in (0, 1)" for t in skipped}
    assert announce_declined(zoo, reasons) == {"needs a code in (0, 1)"}
    (line,) = capsys.readouterr().err.splitlines()
    # Configurations by their place in the suite (a grid's points share theirs).
    places = {(t.dataset.plugin, t.model.source, t.regularizer.source) for t in skipped}
    more = len(places) - SHOWN_CONFIGURATIONS
    assert line.startswith(
        f"aebench: {len(skipped)} trials will be skipped: needs a code in (0, 1): "
    )
    assert line.endswith(f" and {more} more")


def test_a_log_file_that_cannot_be_written_prints_no_traceback(capsys):
    # before: logging's "--- Logging error ---" and a traceback on stderr for every record, when
    # the disk holding aebench.log was full (/dev/full: every write fails with ENOSPC)
    import logging

    import pytest

    from aebench.results.log_file import QuietFileHandler

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    logger = logging.getLogger("aebench.test.full")
    logger.propagate = False  # pytest's own capture of the records is not the point here
    for kind in (QuietFileHandler, logging.StreamHandler):
        full = open("/dev/full", "w")  # noqa: SIM115 (closed below, its last flush failing)
        handler = kind(full)
        logger.addHandler(handler)
        logger.error("a failed trial's traceback")
        logger.removeHandler(handler)
        with contextlib.suppress(OSError):
            full.close()
        shown = capsys.readouterr().err
        assert ("Logging error" in shown) == (kind is logging.StreamHandler), shown
