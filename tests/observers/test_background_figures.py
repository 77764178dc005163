"""The figures observer draws in a worker process while the next trial trains: the figures are
all there when a run returns (and nothing is drawn after), the report waits for them, and a
drawing that fails in the worker is named on stderr as one drawn in the run's process was."""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path

import pytest
from builders import build_suite, entry

import aebench
from aebench.plugins.manager import load_plugins
from aebench.results.trials import trial_folder
from aebench.run.suite import load_suite
from aebench.views import background, drawing, ranking
from aebench.views.report import REPORT_HTML, build_report


def _write_after(path: str, seconds: float) -> None:
    """A drawing that takes ``seconds`` (run in the worker: pickled by name)."""
    time.sleep(seconds)
    Path(path).write_text("drawn")


def _fail(message: str) -> None:
    raise ValueError(message)


def _two_configurations() -> dict:
    return build_suite(
        entry("ae", grid={"latent_dim": [2, 3]}, hidden=[8]),
        name="drawn",
        seeds=[0],
        epochs=1,
        batch_size=256,
    )


def test_every_figure_is_drawn_in_the_worker_before_the_run_returns(
    write_suite, tmp_path, monkeypatch
):
    saved_here: list[Path] = []  # what this process drew (the worker's drawing is its own)
    real_save = drawing._save
    monkeypatch.setattr(drawing, "_save", lambda fig, p: (saved_here.append(p), real_save(fig, p)))
    output = tmp_path / "out"
    aebench.run_suite(write_suite(_two_configurations()), output=output)

    assert not saved_here
    assert background.drawings_done(timeout=0)  # nothing left to draw once the run returned
    trials = sorted((output / "trials").iterdir())
    assert len(trials) == 2
    page = output / REPORT_HTML
    for folder in trials:  # each configuration's figures, drawn before the report was built
        pngs = list(folder.glob("*.png"))
        assert {drawing.LATENT_PNG, drawing.RECON_PNG, drawing.CURVES_PNG} <= {p.name for p in pngs}
        assert all(p.stat().st_mtime_ns <= page.stat().st_mtime_ns for p in pngs)
    [grid] = (output / "figures").glob("latent_*.png")  # the report's own, beside its tables
    assert base64.b64encode(grid.read_bytes()).decode("ascii") in page.read_text()


def test_the_report_works_out_each_configurations_label_once(write_suite, tmp_path, monkeypatch):
    output = tmp_path / "out"
    aebench.run_suite(write_suite(_two_configurations()), output=output)
    labelled: list[object] = []
    real_label = ranking.label
    monkeypatch.setattr(
        ranking, "label", lambda row, *a, **k: (labelled.append(row), real_label(row, *a, **k))[1]
    )
    build_report(output)
    assert 0 < len(labelled) <= 2 * 2  # its leaderboard's and the ranks across datasets'


def test_a_relative_output_is_drawn_where_the_run_is_not_where_the_worker_started(
    write_suite, tmp_path, monkeypatch, capsys
):
    background.start()  # as an earlier run in this process left it, elsewhere
    path = write_suite(_two_configurations())
    monkeypatch.chdir(tmp_path)
    aebench.run_suite(path, output="out")

    assert "failed" not in capsys.readouterr().err
    assert len(list(Path("out/trials").glob("*/latent.png"))) == 2
    assert len(list(Path("out/figures").glob("latent_*.png"))) == 1


def test_a_drawing_that_fails_in_the_worker_is_named_and_the_run_goes_on(
    write_suite, tmp_path, capsys
):
    path = write_suite(_two_configurations())
    output = tmp_path / "out"
    broken, fine = load_suite(path, load_plugins()).trials
    (trial_folder(output, broken.id) / drawing.LATENT_PNG).mkdir(parents=True)  # cannot be written

    run = aebench.run_suite(path, output=output)

    assert run.counts == {"ok": 2}
    err = capsys.readouterr().err
    assert err.count(f"aebench: figures of {broken.label()} failed:") == 1  # not the other's
    assert (trial_folder(output, fine.id) / drawing.LATENT_PNG).is_file()


def test_a_workers_failure_is_reported_once_with_its_traceback_in_the_log(tmp_path, capsys, caplog):
    with caplog.at_level(logging.ERROR, logger="aebench"):
        background.draw(tmp_path, "vae / none seed=0", _fail, "no axes")
        assert background.drawings_done()
        background.collect()

    err = capsys.readouterr().err
    assert err.count("aebench: figures of vae / none seed=0 failed: no axes") == 1
    assert "_fail" in caplog.text  # the worker's own frames


def test_a_worker_that_dies_is_named_and_the_next_drawing_gets_a_fresh_one(tmp_path, capsys):
    background.draw(tmp_path / "a", "vae / l1 seed=1", os._exit, 1)  # as if killed
    assert background.drawings_done()
    assert "aebench: figures of vae / l1 seed=1 failed: " in capsys.readouterr().err

    drawn = tmp_path / "latent.png"
    background.draw(tmp_path, "t", _write_after, str(drawn), 0)
    assert background.figures_ready(tmp_path)
    assert drawn.read_text() == "drawn"


def test_a_folders_figures_are_ready_when_waited_for(tmp_path):
    drawn = tmp_path / "latent.png"
    background.draw(tmp_path, "t", _write_after, str(drawn), 0.3)
    assert background.figures_ready(tmp_path)
    assert drawn.read_text() == "drawn"


def test_an_interrupted_run_drops_the_drawings_not_yet_started(tmp_path):
    folders = [tmp_path / str(i) for i in range(5)]
    for folder in folders:  # the worker holds two at most: the rest wait in this process
        folder.mkdir()
        background.draw(folder, folder.name, _write_after, str(folder / "x.png"), 0.4)
    background.drop_queued()

    assert background.drawings_done(timeout=0)
    last = tmp_path / "after"
    last.mkdir()
    background.draw(last, "after", _write_after, str(last / "x.png"), 0)  # behind any queued
    assert background.figures_ready(last)
    drawn = [(folder / "x.png").is_file() for folder in folders]
    assert not drawn[-1]  # the worker and its queue took three at most


@pytest.fixture(autouse=True)
def _no_drawing_left_behind():
    yield
    assert background.drawings_done(timeout=0)
