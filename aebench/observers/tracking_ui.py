"""``aebench ui``: MLflow's own server on a results folder's SQLite store, on 127.0.0.1 only,
with a link to each aebench experiment's runs.

The server is MLflow's (``mlflow server``), run quiet in a process group of its own so that Ctrl-C
or SIGTERM stops its workers too. This process imports neither torch nor MLflow: ``aebench ui``
starts at once.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from aebench.observers.tracking_store import ARTIFACTS, TrackingError, sqlite_uri

# A UI with a "GenAI / Model training" switch (MLflow 3.17) follows the switch, not the
# experiment's kind, and the switch starts on GenAI: a link sets it with this URL parameter,
# whatever the browser chose before.
UI_WORKFLOW = "workflowType=machine_learning"
# The server's own output, but for errors: no line per request, no INFO lines, and none of the
# warnings its libraries address to MLflow's developers (a Starlette deprecation, say).
QUIET_UVICORN = "--no-access-log --log-level warning"
# The server's job runner serves GenAI features aebench does not use; it costs seconds.
SERVER_DEFAULTS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
# Its startup notice about serving other hosts: `aebench ui` serves 127.0.0.1 only.
SERVER_NOTICE = re.compile(r"\[MLflow\] Security middleware enabled with default settings")
LISTED_EXPERIMENTS = 10  # links printed by `aebench ui`, newest first


def ui_command(database: Path, port: int) -> list[str]:
    """``mlflow server`` on a SQLite store, on 127.0.0.1 only, quiet."""
    database = Path(database).resolve()
    uri = sqlite_uri(database)
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--registry-store-uri",  # given, so that the server does not say it chose it
        uri,
        "--default-artifact-root",
        (database.parent / ARTIFACTS).as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",  # one person browsing: one worker starts fastest
        "1",
        "--uvicorn-opts",
        QUIET_UVICORN,
    ]


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table, on the UI's machine-learning pages."""
    return f"{base}/#/experiments/{experiment_id}/runs?{UI_WORKFLOW}"


def _serving(base: str, server: subprocess.Popen[str], timeout_s: float = 300) -> bool:
    """Wait until the server answers (True) or exits (False)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as reply:
                if reply.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return server.poll() is None


def aebench_experiments(base: str) -> list[tuple[str, str]]:
    """(name, id) of the experiments aebench wrote, newest first; none when the server says no."""
    import json
    import urllib.request

    body = json.dumps({"max_results": 1000, "order_by": ["last_update_time DESC"]}).encode()
    request = urllib.request.Request(
        f"{base}/ajax-api/2.0/mlflow/experiments/search",
        body,
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            experiments = json.load(reply).get("experiments", [])
    except (OSError, ValueError):
        return []
    out = []
    for experiment in experiments:
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        if "aebench.suite" in tags:
            out.append((experiment["name"], experiment["experiment_id"]))
    return out


def stored_experiments(database: Path) -> list[tuple[str, str]] | None:
    """(name, id) of the experiments aebench wrote, newest first, read from the SQLite store
    itself (read-only): known in milliseconds, while the server takes seconds to start. None
    where the store cannot be read so (another MLflow's schema): the server is asked instead."""
    import contextlib
    import sqlite3

    query = (
        "SELECT e.name, e.experiment_id FROM experiments e WHERE e.lifecycle_stage = 'active'"
        " AND EXISTS (SELECT 1 FROM experiment_tags t"
        " WHERE t.experiment_id = e.experiment_id AND t.key = 'aebench.suite')"
        " ORDER BY e.last_update_time DESC"
    )
    try:
        uri = f"{Path(database).resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute(query).fetchall()
    except sqlite3.Error:
        return None
    return [(str(name), str(experiment_id)) for name, experiment_id in rows]


def _print_links(base: str, experiments: list[tuple[str, str]]) -> None:
    experiments = experiments[:LISTED_EXPERIMENTS]
    if experiments:
        print("the runs of each experiment, newest first:", flush=True)
    width = max((len(name) for name, _ in experiments), default=0)
    for name, experiment_id in experiments:
        print(f"  {name:<{width}}  {runs_url(base, experiment_id)}", flush=True)


def _forward(stream: IO[str]) -> None:
    """The server's output to stderr, but for its startup notice."""
    for line in stream:
        if not SERVER_NOTICE.match(line):
            sys.stderr.write(line)
            sys.stderr.flush()


def serve_ui(database: Path, port: int) -> int:
    """Run the MLflow UI until Ctrl-C (or SIGTERM); returns the server's exit status.

    Prints the UI's address and a link to each aebench experiment's runs at once, read from the
    store (the server takes seconds to start: a line says when it answers); from the server once
    it answers where the store cannot be read so.
    """
    import signal
    import threading

    if not Path(database).is_file():
        raise TrackingError(f"{database}: no MLflow store here; run a suite first (aebench run)")
    database = Path(database).resolve()
    # Its own process group, so that stopping it stops the web server's workers too.
    server = subprocess.Popen(
        ui_command(database, port),
        env={**SERVER_DEFAULTS, **os.environ, "PYTHONWARNINGS": "ignore"},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    threading.Thread(target=_forward, args=(server.stdout,), daemon=True).start()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    base = f"http://127.0.0.1:{port}"
    try:
        # The experiments' own links: the UI's start page is its GenAI one.
        stored = stored_experiments(database)
        if stored is not None:
            print(f"MLflow UI: {base}  (store {database}; Ctrl-C stops it)", flush=True)
            _print_links(base, stored)
        if _serving(base, server):
            if stored is None:
                print(f"MLflow UI: {base}  (store {database}; Ctrl-C stops it)", flush=True)
                _print_links(base, aebench_experiments(base))
            else:
                print(f"MLflow UI ready at {base}", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        return 0


# --- the command: `aebench ui`, registered by the MLflow plugin (aebench.observers.mlflow) ----

UI_HELP = "the MLflow UI on the store aebench wrote (127.0.0.1)"


def ui_arguments(parser: argparse.ArgumentParser) -> None:
    """``aebench ui``'s arguments: the port, and the folder of the store."""
    parser.add_argument("--port", type=int, default=5000, help="default: 5000")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("results"),
        help="folder of mlflow.db (default: results)",
    )


def run_ui(args: argparse.Namespace) -> int:
    """``aebench ui``: the server until Ctrl-C; a folder without a store is one line, status 2."""
    try:
        return serve_ui(args.output / "mlflow.db", args.port)
    except TrackingError as exc:
        print(f"aebench: error: {exc}", file=sys.stderr)
        return 2
