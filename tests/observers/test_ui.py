"""End to end: aebench run writes results/mlflow.db, aebench ui serves it, a browser sees it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from builders import as_toml, build_suite, entry
from timing import scaled

from aebench.cli import main
from aebench.results.table import read_results

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SERVER_START_S = 180  # the MLflow server imports a lot; a busy 2-core CI machine is slow
SUITE = build_suite(
    entry("ae", hidden=[8], latent_dim=2),
    name="watched",
    seeds=[0],
    epochs=1,
    batch_size=256,
    tracking={"enabled": True},
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    with urllib.request.urlopen(
        urllib.request.Request(url, data, headers), timeout=scaled(10)
    ) as reply:
        return json.load(reply)


def wait_until_serving(base: Path | str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + scaled(SERVER_START_S)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"aebench ui exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=scaled(2)) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    pytest.fail(f"the MLflow UI did not start in {SERVER_START_S} s:\n{log.read_text()}")


def browse(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=False,
    )
    return done.stdout


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def printed_links(base: str, log: Path) -> dict[str, str]:
    """Experiment name -> the runs link that ``aebench ui`` printed for it (it prints them once
    the server answers: wait for them)."""
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        links = re.findall(rf"^  (.+?)\s+({re.escape(base)}/\S+)$", log.read_text(), re.M)
        if links:
            return dict(links)
        time.sleep(0.5)
    pytest.fail(f"aebench ui printed no links:\n{log.read_text()}")


REQUEST_LINE = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) /|HTTP/1\.[01]"')


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get)")
def test_the_ui_lists_the_trial_runs_and_says_nothing_per_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "suite.toml").write_text(as_toml(SUITE))
    assert main(["run", "suite.toml"]) == 0
    assert (tmp_path / "results" / "mlflow.db").is_file()  # the default store
    trial_ids = set(read_results(tmp_path / "results" / "watched")["trial_id"])

    port = free_port()
    log = tmp_path / "ui.log"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with log.open("w") as out:
        ui = subprocess.Popen(
            [sys.executable, "-m", "aebench.cli", "ui", "--port", str(port)],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, ui, log)
        links = printed_links(base, log)
        assert f"MLflow UI: {base}" in log.read_text()

        api = f"{base}/ajax-api/2.0/mlflow"
        experiment = get_json(f"{api}/experiments/get-by-name?experiment_name=watched")
        experiment_id = experiment["experiment"]["experiment_id"]
        runs = get_json(f"{api}/runs/search", {"experiment_ids": [experiment_id]})["runs"]
        tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
        trials = [r for r, t in zip(runs, tags, strict=True) if "aebench.trial_id" in t]
        assert {t["aebench.trial_id"] for t in tags if "aebench.trial_id" in t} == trial_ids
        assert not any("mlflow.parentRunId" in t for t in tags)  # none folded in the table

        # The printed link opens the experiment's runs table, every trial run a row of it.
        runs_page = links["watched"]
        assert runs_page.startswith(f"{base}/#/experiments/{experiment_id}/runs")
        page = browse(runs_page, tmp_path / "profile")
        for trial in trials:
            assert trial["info"]["run_name"] in page
        assert "Detect Issues" not in page  # not the GenAI overview

        # The chart view: a section of the headline metrics.
        charts = browse(f"{runs_page}&compareRunsMode=CHART", tmp_path / "profile")
        assert "headline/recon_mse" in charts
    finally:
        os.kill(ui.pid, signal.SIGTERM)  # aebench ui stops its server's process group
        try:
            ui.wait(timeout=scaled(30))
        except subprocess.TimeoutExpired:
            os.kill(ui.pid, signal.SIGKILL)
            raise
    deadline = time.monotonic() + scaled(10)
    while not port_is_closed(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert port_is_closed(port)
    # The browser made hundreds of requests: none of them is in the output, nor any warning.
    output = log.read_text()
    assert not REQUEST_LINE.search(output), output
    assert "Warning" not in output, output


def test_ui_without_a_store_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["ui", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no MLflow store" in err
