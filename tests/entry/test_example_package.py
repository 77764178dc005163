"""The example third-party package: installed with pip (no network), found, run, and tested."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from builders import as_toml, build_suite, entry
from repo import REPO
from timing import scaled

# Every test here uses the pip-installed package (the `site` fixture): end to end, slow.
pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "aebench-plugin-example"

SUITE = build_suite(
    entry("tied-ae", latent_dim=16),
    name="example",
    epochs=2,
    batch_size=None,
    metrics=["recon_mse", "code_mean_abs"],
) | {"regularizers": [entry("code-l2"), entry("kl-sparsity")]}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example package pip-installed into a folder of its own, leaving the environment be."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
    )
    return target


def run(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=scaled(600)
    )


def test_aebench_plugins_lists_the_installed_package(site, tmp_path):
    result = run([sys.executable, "-m", "aebench.cli", "plugins", "--json"], site, tmp_path)
    assert result.returncode == 0, result.stderr
    [plugin] = [
        p
        for p in json.loads(result.stdout)["plugins"]
        if p["distribution"] == "aebench-plugin-example"
    ]
    assert plugin["version"] == "0.1.0"
    assert plugin["registers"] == {"models": ["tied-ae"], "regularizers": ["code-l2"]}


def test_a_suite_runs_the_third_party_model_and_regularizer(site, tmp_path):
    (tmp_path / "suite.toml").write_text(as_toml(SUITE))
    result = run([sys.executable, "-m", "aebench.cli", "run", "suite.toml"], site, tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(tmp_path / "results" / "example" / "results.parquet")
    assert set(table["status"]) == {"ok"}, table[["regularizer", "reason"]]
    assert set(table["regularizer"]) == {"code-l2", "kl-sparsity"}  # sigmoid code: KL accepts it
    assert set(table["version.aebench-plugin-example"]) == {"0.1.0"}


def test_the_package_passes_its_own_tests(site, tmp_path):
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        site,
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
