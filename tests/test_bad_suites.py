"""The corpus of malformed suites: each is one clear line, exit status 2, and nothing written.

Every file in tests/bad_suites/ starts with ``# expect: TEXT``: the place and the complaint that
its error line must contain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aebench.cli import main

CORPUS = Path(__file__).parent / "bad_suites"
CASES = sorted(CORPUS.glob("*.toml"))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    }


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_a_malformed_suite_is_refused_cleanly(case, tmp_path, monkeypatch, capsys):
    expected = case.read_text().splitlines()[0].removeprefix("# expect: ")
    suite = tmp_path / case.name
    suite.write_text(case.read_text())
    output = tmp_path / "out"
    output.mkdir()
    (output / "results.csv").write_text("an earlier result\n")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    status = main(["run", case.name, "--output", "out"])

    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"aebench: error: {case.name}: "), lines[0]
    assert expected in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert snapshot(tmp_path) == before  # nothing written or changed, here or in the output
