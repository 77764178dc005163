"""check_metric refuses a metric whose columns an installed metric already writes."""

from __future__ import annotations

import pytest
from aebench_kit_cases import COLLIDING

from aebench import Column, Metric, load_plugins
from aebench.testing import check_metric, check_no_collision


def test_the_kit_rejects_a_column_an_installed_metric_writes(plugins):
    with pytest.raises(
        AssertionError, match="recon_mse is already written by the installed metric"
    ):
        check_metric(COLLIDING, plugins=plugins)


def test_the_installed_metric_is_no_collision_with_itself(plugins):
    check_no_collision(plugins.metrics.get("recon_mse").factory, plugins)


def test_a_metric_of_new_columns_passes_beside_the_installed_ones(plugins):
    fresh = Metric(lambda context: {"kit_fresh": 1.0}, columns=[Column("kit_fresh")])
    check_metric(fresh, plugins=plugins)
    check_metric(COLLIDING, plugins=load_plugins(entry_points=False))  # nothing installed
