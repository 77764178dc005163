"""The command line, end to end, in a subprocess as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


def aebench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aebench.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_writes_a_row_per_trial(tiny_suite, tmp_path):
    result = aebench("run", str(tiny_suite), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(tmp_path / "results" / "tiny" / "results.parquet")
    assert len(table) == 4 and set(table["status"]) == {"ok"}
    assert "4 trials run (4 ok)" in result.stdout


def test_output_and_device_options(tiny_suite, tmp_path):
    result = aebench(
        "run", str(tiny_suite), "--output", "elsewhere", "--device", "cpu", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert set(pd.read_parquet(tmp_path / "elsewhere" / "results.parquet")["device"]) == {"cpu"}


def test_dry_run_lists_trials_and_writes_nothing(tiny_suite, tmp_path):
    result = aebench("run", str(tiny_suite), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 trials" in result.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "text, where",
    [
        (
            '[suite]\nname = "x"\n[[datasets]]\nplugin = "digit"\n[[models]]\nplugin = "ae"\n',
            "datasets[0].plugin: unknown dataset 'digit'; did you mean 'digits'?",
        ),
        ("[suite\n", "invalid TOML"),
    ],
)
def test_a_bad_suite_is_one_line_exit_2_and_nothing_written(write_suite, tmp_path, text, where):
    path = write_suite(text)
    result = aebench("run", str(path), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and where in lines[0] and str(path) in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


def test_a_missing_suite_file(tmp_path):
    result = aebench("run", "nowhere.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "aebench: error: nowhere.toml: no such suite file"


def test_plugins_lists_distributions_and_what_they_register(tmp_path):
    result = aebench("plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plugins = {p["plugin"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["aebench.models"]["distribution"] == "aebench"
    assert "ae" in plugins["aebench.models"]["registers"]["models"]
    text = aebench("plugins", cwd=tmp_path).stdout
    assert "aebench.models" in text and "models: " in text


def test_list_shows_parameters_with_types_and_defaults(tmp_path):
    result = aebench("list", "models", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [ae] = [m for m in json.loads(result.stdout)["models"] if m["name"] == "ae"]
    params = {p["name"]: p for p in ae["params"]}
    assert params["latent_dim"]["type"] == "int >= 1"
    assert params["latent_dim"]["default"] == 16
    text = aebench("list", cwd=tmp_path).stdout
    for kind in ("models:", "regularizers:", "datasets:", "metrics:"):
        assert kind in text
