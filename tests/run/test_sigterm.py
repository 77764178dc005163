"""SIGTERM (and Ctrl-C) as a flag acted on between steps: never swallowed by a destructor or a
library's ``except``, whenever it comes; the run ends as on Ctrl-C, finished trials saved."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aebench_hangs
import pandas as pd
import pytest
from builders import as_toml, build_suite, entry, start_run
from fake_plugins import fake_distribution
from timing import scaled, slowdown

from aebench.run import stopping

HANGS = Path(aebench_hangs.__file__)
MESSAGE = "aebench: interrupted; finished trials are saved, run again to resume"


def sigterm_suite(del_s: float) -> dict[str, Any]:
    """Two quick trials, then one that spends its steps in a destructor, ``del_s`` each, where
    the exception a handler raises is swallowed ("Exception ignored in ..."): 84 steps."""
    quick = entry("ae", hidden=[8], grid={"latent_dim": [2, 3]})
    slow = entry("hangs", del_s=del_s)
    return build_suite(
        quick, slow, name="sigterm", epochs=3, metrics=["recon_mse", "code_mean_abs"]
    )


@pytest.fixture
def handlers() -> Iterator[None]:
    """aebench's handlers for this test's signals; pytest's own afterwards."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stopping.install()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])


def test_while_trials_run_a_signal_only_sets_the_flag_that_checks_act_on(handlers):
    with pytest.raises(stopping.Interrupted) as raised:
        with stopping.cooperative():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler has run: it raised nothing here
            assert stopping.requested() == signal.SIGTERM
            stopping.check()
            pytest.fail("check() went on after SIGTERM")
    assert raised.value.args == (signal.SIGTERM,)
    assert stopping.requested() is None  # the next run starts afresh
    stopping.check()


def test_a_second_signal_and_a_signal_outside_a_run_raise_at_once(handlers):
    with pytest.raises(stopping.Interrupted):  # the first, still standing, on leaving
        with stopping.cooperative():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
            with pytest.raises(stopping.Interrupted) as raised:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)  # not slept: the second signal raises here
            assert raised.value.args == (signal.SIGTERM,)
    with pytest.raises(stopping.Interrupted) as raised:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert raised.value.args == (signal.SIGTERM,)


def test_a_signal_no_check_acted_on_is_raised_when_the_run_ends(handlers):
    with pytest.raises(stopping.Interrupted):
        with stopping.cooperative():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)


def run_and_terminate(tmp_path: Path, delay: float) -> tuple[int, str, float]:
    """``aebench run`` of the suite above, SIGTERM ``delay`` seconds after its first trial
    finished; its status, stderr, and the seconds it took to exit after the signal. Every time
    is scaled to this machine's speed: the slow trial takes 17 s on an idle one."""
    site = fake_distribution(tmp_path / "site", HANGS)
    suite = tmp_path / "suite.toml"
    suite.write_text(as_toml(sigterm_suite(del_s=round(scaled(0.2), 2))))
    process = start_run(suite, site=site, cwd=tmp_path, stdout=subprocess.DEVNULL)
    assert process.stderr is not None
    first = ""
    while True:  # until "[1/3] digits/ae/none: ok (...)": the run is under way
        line = process.stderr.readline()
        first += line
        assert line, first + process.communicate()[1]  # it ended before its first trial did
        if line.startswith("[1/3]"):
            break
    time.sleep(scaled(delay))
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        rest = process.communicate(timeout=scaled(20))[1]
    except subprocess.TimeoutExpired:
        process.kill()
        rest = process.communicate()[1]
        return -1, first + rest, float("inf")  # swallowed: it ran on
    return process.returncode, first + rest, time.monotonic() - start


def assert_interrupted(tmp_path: Path, status: int, stderr: str, took: float) -> None:
    assert status == 128 + signal.SIGTERM, stderr
    assert MESSAGE in stderr and "Traceback" not in stderr and "Exception ignored" not in stderr
    # well before the slow trial would have ended
    assert took < scaled(8), f"exited {took:.1f} s after SIGTERM (slowdown {slowdown():.2f})"
    rows = pd.read_parquet(tmp_path / "results" / "sigterm" / "results.parquet")
    assert len(rows) >= 1 and set(rows["status"]) == {"ok"}  # what finished, and only that


@pytest.mark.slow
def test_sigterm_at_any_moment_ends_the_run_promptly(tmp_path):
    # Runs signalled at other moments: in the quick trials (training, metrics, the table, the
    # observers) and in the slow one's destructors. Two at a time, one per core: the time to
    # exit is mostly the report and the figures, written as on Ctrl-C.
    delays = [0.0, 0.7, 2.0, 4.0]  # on an idle machine: scaled to this one's speed
    folders = [tmp_path / f"run{i}" for i in range(len(delays))]
    for folder in folders:
        folder.mkdir()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run_and_terminate, folders, delays))
    took = ", ".join(f"{r[2]:.2f}" for r in results)
    print(f"exited after SIGTERM in {took} s (slowdown {slowdown():.2f})")
    for folder, (status, stderr, took) in zip(folders, results, strict=True):
        assert_interrupted(folder, status, stderr, took)
