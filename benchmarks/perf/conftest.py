"""Fixtures of the performance benchmarks, and the ratios printed at the end of the run."""

from __future__ import annotations

import pytest
from workloads import SIZES, SMOKE, SUMMARY, matmul_flops_per_s

from aebench.plugins.manager import Plugins, load_plugins


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # pyproject's addopts skip benchmarks in a plain `pytest`; asking for them here with
    # --benchmark-disable means "run each once" (CI's smoke run), so that skip is lifted.
    if config.getoption("benchmark_disable", False):
        config.option.benchmark_skip = False


@pytest.fixture(scope="session")
def plugins() -> Plugins:
    return load_plugins()


@pytest.fixture(scope="session")
def calibration_flops() -> float:
    """FLOP/s of the calibration matmul on this machine, now: what training FLOP/s is divided by."""
    return matmul_flops_per_s(SIZES.calibration_n)


def pytest_terminal_summary(terminalreporter) -> None:
    if SUMMARY:
        title = "aebench performance" + (" (smoke sizes: not measurements)" if SMOKE else "")
        terminalreporter.write_sep("=", title)
        for line in SUMMARY:
            terminalreporter.write_line(line)
