"""What a configuration's figures cost to draw (the figures worker draws one seed's per
configuration while the next trials train, on the same two cores): ``render_trial`` on a digits
VAE's arrays (latent scatter, reconstructions, prior samples, two kinds of traversal,
interpolations, loss curves), against one plain figure (a line plot saved as a PNG) drawn in the
same rounds, alternating."""

from __future__ import annotations

import statistics
from pathlib import Path

from workloads import SMOKE, SUMMARY, build_model, timed

from aebench.observers.trial_figures import save_trial_figures
from aebench.views.drawing import render_trial
from aebench_plugins.datasets.digits import digits

ROUNDS = 1 if SMOKE else 7


def _plain_figure(path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.6), dpi=100)
    fig.subplots().plot(range(10), range(10))
    fig.savefig(path, format="png")


def test_a_configurations_figures_against_one_plain_figure(benchmark, plugins, tmp_path) -> None:
    data = digits()
    model = build_model(plugins, "vae", data.info, latent_dim=8, hidden=[128])
    curves = {"loss": [3.0, 2.0, 1.5], "model_loss": [3.0, 2.1, 1.6]}
    save_trial_figures(tmp_path, model, data, curves, render=lambda folder, title: [])
    title = "digits/vae/none seed=0\nlatent_dim=8 hidden=[128]"
    _plain_figure(tmp_path / "warm.png")  # matplotlib's imports and font cache, outside the rounds

    figures: list[float] = []
    plain: list[float] = []

    def draw() -> list[Path]:
        plain.append(timed(lambda: _plain_figure(tmp_path / "plain.png")))
        figures.append(timed(lambda: render_trial(tmp_path, title)))
        return sorted(tmp_path.glob("*.png"))

    pngs = benchmark.pedantic(draw, rounds=ROUNDS, iterations=1)
    assert len(pngs) == 9  # seven figures, the warm-up and the plain one
    drawn, one = statistics.median(figures), statistics.median(plain)
    SUMMARY.append(
        f"a digits VAE configuration's figures: {len(pngs) - 2} PNGs in {drawn * 1000:.0f} ms,"
        f" {drawn / one:.1f}x one plain figure ({one * 1000:.0f} ms)"
    )
