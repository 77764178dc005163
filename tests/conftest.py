"""Shared fixtures: a fresh plugin manager per test, tiny suite files (built with
builders.py, or written out as TOML text), and the command line run in-process (``aebench``)."""

from __future__ import annotations

import os

# Tests train tiny models, often with a subprocess beside them: one thread each is faster than
# two threads contending for the two cores (set before torch is imported; subprocesses inherit).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from builders import as_toml

from aebench.cli import main
from aebench.plugins.manager import Plugins, load_plugins
from aebench_plugins.metrics.feature_extractor import CACHE_SUBFOLDER


@pytest.fixture(scope="session")
def shared_feature_classifiers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classifiers that the sample-quality metrics train once per dataset, cached by the
    data's content: shared by the tests of a worker, so that digits' is trained once, not in
    every test that runs a suite's default metrics."""
    return tmp_path_factory.mktemp("feature-classifiers")


@pytest.fixture(autouse=True)
def own_listing_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch, shared_feature_classifiers: Path
) -> None:
    """`aebench list` and `aebench plugins` save their listing (aebench.listing): each test keeps
    its own, never the user's, and never one another's. Its feature classifiers are shared."""
    cache = tmp_path_factory.mktemp("cache")
    (cache / CACHE_SUBFOLDER).symlink_to(shared_feature_classifiers, target_is_directory=True)
    monkeypatch.setenv("AEBENCH_CACHE", str(cache))


@pytest.fixture
def plugins() -> Plugins:
    return load_plugins()


@pytest.fixture
def write_suite(tmp_path: Path):
    """Write a suite file from (dedented) TOML text or a suite built by builders.build_suite;
    returns its path."""

    def write(suite: str | dict[str, Any], name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(as_toml(suite) if isinstance(suite, dict) else textwrap.dedent(suite))
        return path

    return write


@pytest.fixture
def tiny_suite_text() -> str:
    """Two latent sizes x two seeds of a small `ae` on digits, two epochs: 4 trials."""
    return TINY_SUITE


TINY_SUITE = """
[suite]
name = "tiny"
seeds = [0, 1]
device = "cpu"

[train]
epochs = 2
batch_size = 64

[[datasets]]
plugin = "digits"

[[models]]
plugin = "ae"
params = { hidden = [16] }
grid = { latent_dim = [2, 4] }
"""


@pytest.fixture
def tiny_suite(write_suite, tiny_suite_text) -> Path:
    return write_suite(tiny_suite_text)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def aebench(tmp_path, monkeypatch, capsys):
    """``aebench ARGS`` run in-process in tmp_path: its exit status and what it printed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store, under tmp_path

    def run(*args: str) -> Result:
        capsys.readouterr()  # what came before is not this command's
        status = main(list(args))
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return run
