"""The corpus of malformed suites: each is one clear line, exit status 2, and nothing written.

Every file in tests/support/bad_suites/ starts with ``# expect: TEXT``: the place and the complaint
that its error line must contain.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from repo import SUPPORT

from aebench.cli import main

CORPUS = SUPPORT / "bad_suites"
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


def test_every_mistake_of_a_suite_is_reported_at_once_each_with_its_place(
    tmp_path, monkeypatch, capsys
):
    suite = tmp_path / "many-mistakes.toml"
    suite.write_text((CORPUS / "several" / "many-mistakes.toml").read_text())
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    assert main(["run", suite.name, "--output", "out"]) == 2

    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    expected = [
        "eval.metrics[1]: unknown metric 'no_such_metric'",
        "suite.seeds: a seed is listed twice",
        "models[0].grid.latent_dim[1] = 0: model 'ae': Input should be greater than or equal to 1",
        "models[0].grid.latent_dim[2] = -3: model 'ae': Input should be greater than or equal",
        "models[1].plugin: unknown model 'vea'; did you mean 'vae'?",
        "regularizers[0].params.weight: regularizer 'l1': Input should be greater than or equal",
        "train.grid.lr[1] = -1.0: Input should be greater than 0",
    ]
    assert len(lines) == len(expected), captured.err  # each once, though met at many grid points
    for line, text in zip(lines, expected, strict=True):
        assert line.startswith(f"aebench: error: {suite.name}: {text}"), line
    assert "Traceback" not in captured.err + captured.out
    assert snapshot(tmp_path) == before


def test_every_structural_mistake_is_reported_at_once(tmp_path, monkeypatch, capsys):
    (tmp_path / "s.toml").write_text(
        '[suite]\nname = "x"\nseeds = "0"\n[train]\nepochs = 0\nbatchsize = 3\n'
        '[[datasets]]\nplugin = "digits"\n[[models]]\nplugin = "ae"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "s.toml", "--dry-run"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    places = [line.split(": ")[3] for line in lines]
    assert places == ["suite.seeds", "train.epochs", "train.batchsize"], lines
