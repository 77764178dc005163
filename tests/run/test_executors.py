"""Executors: a suite on a real Dask cluster (scheduler and workers as processes on 127.0.0.1)
gives the local executor's table; a worker killed mid-trial costs nothing; dask is optional."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from builders import Entry, build_tiny_suite, entry
from fake_plugins import fake_distribution
from timing import scaled, wait_until

from aebench.cli import main
from aebench.run.executors import WORKER_DIED
from aebench.run.loop import run_trials
from aebench.run.suite import load_suite

pytest.importorskip("distributed")


def suite(name: str, *more_models: Entry) -> dict[str, Any]:
    """The tiny suite (builders.py) named ``name``, with one seed (two ae trials) and two
    metrics, then ``more_models``."""
    metrics = ["recon_mse", "recon_bce"]
    return build_tiny_suite(*more_models, name=name, seeds=[0], metrics=metrics)


def fragile(delay: float, kill: str = "none") -> Entry:
    """A suite entry of the fragile model (tests/support/aebench_fragile.py)."""
    return entry("fragile", delay=delay, kill=kill)


@dataclass
class Cluster:
    address: str
    env: dict[str, str]  # what the workers have: the fault plugin on PYTHONPATH, MARKERS
    markers: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(processes: list[subprocess.Popen]) -> None:
    """Each process and its children (its own process group), by id: SIGTERM, then SIGKILL."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# Three: while the slow trial holds one worker, the killer trial and its retry each find an idle
# one. Dask charges a worker's death to every task it holds, queued ones too, so a retry queued
# behind the killer on a busy worker would die with it, whatever the executor does.
WORKERS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """``dask scheduler`` and three ``dask worker`` processes (each a nanny and its worker)."""
    from distributed import Client

    root = tmp_path_factory.mktemp("cluster")
    markers = root / "markers"
    markers.mkdir()
    site = fake_distribution(root / "site")
    env = {
        **os.environ,
        "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "MARKERS": str(markers),
    }
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": root}
    processes = [
        subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env,
            start_new_session=True,
            **quiet,
        )
    ]
    try:
        worker = [*dask, "worker", address, "--nthreads", "1", "--nworkers", "1"]
        worker += ["--no-dashboard", "--memory-limit", "0"]
        for _ in range(WORKERS):
            processes.append(subprocess.Popen(worker, env=env, start_new_session=True, **quiet))
        with Client(address, timeout=f"{scaled(60):.0f}s") as client:
            client.wait_for_workers(WORKERS, timeout=scaled(120))
        yield Cluster(address, env, markers)
    finally:
        _stop(processes)


def table(folder: Path) -> pd.DataFrame:
    rows = pd.read_parquet(folder / "results.parquet")
    return rows.sort_values("trial_id").reset_index(drop=True)


@pytest.mark.slow
def test_a_suite_on_a_dask_cluster_gives_the_local_table(cluster, write_suite, tmp_path, plugins):
    path = write_suite(suite("same"))
    command = ["run", str(path), "--executor", "dask", "--scheduler", cluster.address]
    assert main([*command, "--output", str(tmp_path / "dask")]) == 0
    on_cluster = table(tmp_path / "dask")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as fast as the workers on a busy machine; results do not change
    try:
        run_trials(load_suite(path, plugins), plugins, output=tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    local = table(tmp_path / "local")

    assert len(local) == 2 and list(on_cluster["status"]) == ["ok", "ok"]
    assert list(on_cluster["trial_id"]) == list(local["trial_id"])
    for column in ("recon_mse", "recon_bce", "final_loss"):
        assert list(on_cluster[column]) == list(local[column]), column
    # The figures were drawn here, from each model rebuilt out of the weights the worker sent.
    for trial_id in on_cluster["trial_id"]:
        assert (tmp_path / "dask" / "trials" / trial_id / "latent.png").is_file()
        # The trial folder, weights included, is written here too, from what the worker sent.
        kept, here = (
            torch.load(tmp_path / side / "trials" / trial_id / "model.pt", weights_only=True)
            for side in ("dask", "local")
        )
        assert kept.keys() == here.keys()
        assert all(torch.equal(kept[name], here[name]) for name in kept)


def _started(markers: Path, kind: str) -> list[int]:
    """The ids of the worker processes that have started training a ``kind`` fragile model."""
    return sorted(int(p.name.removeprefix(f"{kind}-")) for p in markers.glob(f"{kind}-*"))


@pytest.mark.slow
def test_dead_workers_cost_one_retry_then_the_trial_and_the_suite_goes_on(
    cluster, write_suite, tmp_path
):
    """The killer trial kills every worker it runs on: tried twice, then failed. Then the test
    kills the worker of the sleepy trial once: it is trained again, elsewhere. ae is untouched."""
    # The sleepy trial sleeps 0.3 s a step (17 s on an idle machine, as much longer as this one
    # is slower): still under way when the killer has been tried twice.
    sleepy = fragile(delay=round(scaled(0.3), 2))
    path = write_suite(suite("faults", sleepy, fragile(delay=0.0, kill="SIGKILL")))
    command = [sys.executable, "-m", "aebench.cli", "run", str(path)]
    command += ["--executor", "dask", "--scheduler", cluster.address]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        markers = cluster.markers
        workers = wait_until(lambda: _started(markers, "sleepy"), "no sleepy trial", process)
        # the killer is done with: tried twice
        wait_until(lambda: len(_started(markers, "killer")) >= 2, "no killer retried", process)
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=scaled(300))
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, stderr  # 1: a failed trial, and no crash
    rows = table(tmp_path / "results" / "faults")
    assert len(rows) == 4 and rows["trial_id"].is_unique
    ae = rows[rows["model"] == "ae"]
    sleepy = rows[(rows["model"] == "fragile") & (rows["model.kill"] == "none")]
    killer = rows[(rows["model"] == "fragile") & (rows["model.kill"] == "SIGKILL")]
    assert list(ae["status"]) == ["ok", "ok"], list(ae["reason"])
    assert list(sleepy["status"]) == ["ok"], list(sleepy["reason"])
    assert list(killer["status"]) == ["failed"], list(killer["reason"])
    assert list(killer["reason"]) == [WORKER_DIED]
    assert len(list(cluster.markers.glob("sleepy-*"))) == 2  # killed once, trained again
    assert len(list(cluster.markers.glob("killer-*"))) == 2  # tried once more, not again


def test_without_dask_the_dask_executor_says_how_to_install_it(
    monkeypatch, capsys, tiny_suite, tmp_path
):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    output = tmp_path / "out"
    status = main(["run", str(tiny_suite), "--executor", "dask", "--output", str(output)])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == 'aebench: error: --executor dask needs dask.distributed: pip install "aebench[dask]"'
    )
    assert not output.exists()


def test_a_dask_worker_trains_on_the_threads_the_suite_sets() -> None:
    # before: a local cluster's share of the cores whatever --threads said (the threads column
    # showed 2 where the suite asked for 1)
    from aebench.run.executors import DaskExecutor
    from aebench.run.threads import available_cores

    local, remote = DaskExecutor(workers=2), DaskExecutor(scheduler="tcp://127.0.0.1:1")
    assert local._torch_threads(1) == 1 and remote._torch_threads(3) == 3
    assert local._torch_threads("auto") == max(1, available_cores() // 2)
    assert remote._torch_threads("auto") is None and remote._torch_threads(None) is None
