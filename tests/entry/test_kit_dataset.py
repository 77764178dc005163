"""check_dataset runs the data checks the core runs where data enters: log_density and render."""

from __future__ import annotations

import pytest
from aebench_kit_cases import squares

from aebench.testing import ContractError, check_dataset


def test_a_dataset_with_a_right_density_and_renderer_passes():
    check_dataset(squares)


@pytest.mark.parametrize(
    "case, message",
    [
        ("density-shape", r"log_density\(train.x\[:8\]\) has shape \(8, 1\); expected .*\(8,\)"),
        ("density-not-finite", r"log_density\(train.x\[:8\]\) is not finite"),
        ("density-train-only", r"log_density\(test.x\[:8\]\) is not finite"),
        ("render-shape", r"render\(train.factors\[:8\]\) has shape \(8, 64\)"),
        ("render-float64", r"render\(train.factors\[:8\]\) is torch.float64; expected .*float32"),
        ("render-noisy", r"differs between two calls"),
        ("render-swapped", r"disagrees with train.x\[:8\].*order of info.factor_names"),
    ],
)
def test_the_kit_rejects_a_broken_density_or_renderer(case, message):
    with pytest.raises(ContractError, match=message):
        check_dataset(squares, params={"case": case})
