"""`aebench list` and `aebench plugins` show a saved listing while nothing it depends on changed
(aebench.listing): the same output as a fresh one, without importing torch, and a new or changed
plugin shows at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fake_plugins import fake_distribution
from repo import SUPPORT
from timing import scaled

SCORES = SUPPORT / "aebench_scores.py"


def aebench(*argv: str, site: Path | None = None) -> str:
    """``aebench ARGV``'s output, in a fresh interpreter (this test's AEBENCH_CACHE)."""
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    done = subprocess.run(
        [sys.executable, "-m", "aebench.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=scaled(120),
        check=True,
    )
    return done.stdout


def test_a_saved_listing_is_what_a_fresh_one_shows_and_imports_no_torch() -> None:
    commands = [["list"], ["list", "metrics", "--json"], ["plugins"], ["plugins", "--json"]]
    fresh = [aebench(*argv) for argv in commands]  # the first one saved the listing
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        from aebench.cli import main
        outputs = []
        for argv in {commands!r}:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                assert main(argv) == 0
            outputs.append(out.getvalue())
        print(json.dumps({{"outputs": outputs, "torch": "torch" in sys.modules}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=True,
    )
    saved = json.loads(done.stdout)
    assert saved["torch"] is False
    assert saved["outputs"] == fresh
    assert "vae" in fresh[0] and "log_px_iwae" in fresh[1]


def metric_columns(site: Path) -> set[str]:
    listed = json.loads(aebench("list", "metrics", "--json", site=site))
    return {c["name"] for metric in listed["metrics"] for c in metric["columns"]}


def test_a_new_plugin_and_a_changed_plugin_file_are_listed_at_once(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    assert "code_spread" not in metric_columns(site)
    fake_distribution(site, SCORES)  # installed: a new entry point
    assert "code_spread" in metric_columns(site)
    plugin = site / SCORES.name
    plugin.write_text(plugin.read_text().replace('"code_spread"', '"code_spread_v2"'))
    assert "code_spread_v2" in metric_columns(site)  # edited in place: its file changed


def test_an_unwritable_cache_only_costs_time(tmp_path: Path, monkeypatch) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("AEBENCH_CACHE", str(blocked / "cache"))
    assert "vae" in aebench("list", "models")


def test_a_new_plugin_folder_is_listed_from_the_saved_listing_the_second_time(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # as most users run Python
    site = fake_distribution(tmp_path / "site", SCORES)
    assert "code_spread" in metric_columns(site)  # loaded, saved; its import wrote __pycache__
    code = textwrap.dedent(
        """
        import contextlib, io, json, sys
        from aebench.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["list", "metrics"]) == 0
        loaded = {name: name in sys.modules for name in ("torch", "pandas")}
        print(json.dumps({"loaded": loaded, "listed": "code_spread" in out.getvalue()}))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=scaled(120),
        check=True,
    )
    shown = json.loads(done.stdout)
    assert shown == {"loaded": {"torch": False, "pandas": False}, "listed": True}
