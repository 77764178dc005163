"""Figures drawn from saved results (aebench.drawing), at the sizes real suites reach."""

from __future__ import annotations

import warnings

from PIL import Image

from aebench.contract.columns import Column
from aebench.views.drawing import plane


def test_a_plane_of_a_hundred_configurations_keeps_its_axes_and_every_label(tmp_path) -> None:
    points = [(f"model-{i} / none", float(i), float(i % 7)) for i in range(100)]
    path = tmp_path / "plane.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when the legend squeezes the axes out
        plane(path, points, Column("rate", unit="nats"), Column("distortion", unit="nats"))
    width, height = Image.open(path).size
    assert width > height  # the legend's columns sit beside the axes, not on them
