"""A first `aebench list` (an empty cache) shows the listing aebench ships of its own plugins
(aebench.plugins.shipped): no torch, no plugin module imported, the same output as loading them;
the shipped listing is current (this fails until `python -m aebench.plugins.listing
--write-builtin` is run after a built-in plugin changes), and a stale one is never shown."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_plugins import fake_distribution
from repo import SUPPORT
from timing import scaled

from aebench.cli import main
from aebench.plugins import listing, shipped

REGENERATE = "run: python -m aebench.plugins.listing --write-builtin"


def python(code: str, **env: str) -> dict:
    """What ``code`` prints as JSON, run in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(done.stdout)


def test_the_shipped_listing_is_current() -> None:
    seen = python(
        """
        import json
        from aebench.plugins import listing, shipped
        live = listing.builtin_listing()  # loads aebench's own plugins, as a run would
        print(json.dumps({
            "live": live,
            "changes": shipped.changes(),
            "shipped": shipped.read(),
            "imported": shipped.imported_files(),
            "recorded": list(json.loads(shipped.SHIPPED.read_text())["files"]),
        }))
        """
    )
    assert seen["changes"] == [], f"the shipped listing is stale ({REGENERATE})"
    assert seen["shipped"] == seen["live"], f"the shipped listing is wrong ({REGENERATE})"
    # It records every file that loading the plugins runs: editing any of them makes it stale.
    assert set(seen["imported"]) <= set(seen["recorded"])


def cold(tmp_path: Path, *argv: str) -> dict:
    """``aebench ARGV`` in a fresh interpreter with an empty cache: its status, its output, and
    whether it imported torch or a built-in plugin's module."""
    cache = tmp_path / f"cache-{'-'.join(argv)}"
    return python(
        f"""
        import contextlib, io, json, sys
        from aebench.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                status = main({list(argv)!r})
            except SystemExit as exit:  # --help
                status = exit.code
        imported = [m for m in ("torch", "scipy", "pandas") if m in sys.modules]
        imported += [m for m in sys.modules if m.startswith("aebench_plugins.")]
        print(json.dumps({{"status": status, "out": out.getvalue(), "imported": imported}}))
        """,
        AEBENCH_CACHE=str(cache),
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["list", "--json"],
        ["list", "metrics", "--json"],
        ["plugins", "--json"],
        ["--help"],
    ],
)
def test_a_cold_list_imports_no_torch_and_shows_what_loading_the_plugins_shows(
    argv: list[str], tmp_path: Path, monkeypatch, capsys
) -> None:
    shown = cold(tmp_path, *argv)
    assert shown["imported"] == []
    monkeypatch.setattr(shipped, "read", lambda *a, **k: None)  # as before: every plugin loaded
    with pytest.raises(SystemExit) if argv == ["--help"] else contextlib.nullcontext():
        assert main(argv) == 0
    assert shown["status"] == 0
    assert shown["out"] == capsys.readouterr().out


def test_the_shipped_listing_stands_in_only_where_aebench_alone_is_installed(
    tmp_path: Path, monkeypatch
) -> None:
    shipped_one = {"plugins": [], "load_errors": [], "kinds": {"metrics": [], "models": []}}
    monkeypatch.setattr(shipped, "read", lambda *a, **k: shipped_one)
    assert listing.load_listing() == shipped_one  # an empty cache (this test's own)
    site = fake_distribution(tmp_path / "site", SUPPORT / "aebench_scores.py")
    monkeypatch.syspath_prepend(str(site))  # a third party's plugin installed: all are loaded
    loaded = listing.load_listing()
    assert {"code_spread", "elbo"} <= {metric["name"] for metric in loaded["kinds"]["metrics"]}


def test_a_stale_shipped_listing_is_not_used(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "cold_listing_probe"
    package.mkdir()
    (package / "__init__.py").write_text("NAME = 'probe'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = tmp_path / "builtin_listing.json"
    recorded = ["cold_listing_probe/__init__.py", "aebench/plugins/shipped.py"]
    shipped.write({"kinds": "probe"}, saved, files=recorded)
    assert shipped.read(saved) == {"kinds": "probe"}
    (package / "__init__.py").write_text("NAME = 'edited'\n")
    assert shipped.read(saved) is None  # a file it was built from changed
    assert shipped.changes(saved) == ["cold_listing_probe/__init__.py changed"]
    shipped.write({"kinds": "probe"}, saved, files=recorded)
    (package / "__init__.py").unlink()
    assert shipped.read(saved) is None  # ... or is gone
    saved.write_text("{not json")
    assert shipped.read(saved) is None


def test_a_listing_with_a_load_error_is_not_shipped(monkeypatch, capsys) -> None:
    error = {"plugin": "aebench.metrics", "error": "ImportError: no module named 'scipy'"}
    broken = {"load_errors": [error]}
    monkeypatch.setattr(listing, "builtin_listing", lambda: broken | {"load_warnings": []})
    monkeypatch.setattr(shipped, "write", lambda *a, **k: pytest.fail("shipped anyway"))
    assert listing.write_builtin() == 1
    shown = capsys.readouterr().err
    assert shown == f"aebench: error: not shipped: aebench.metrics: {error['error']}\n"
