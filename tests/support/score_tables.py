"""Results tables of one ``score`` column, for the views' tests: one ``ok`` row per
(configuration, seed), as a run would write it."""

from __future__ import annotations

import pandas as pd


def score_table(samples: dict[str, dict[int, float]], dataset: str = "d", **extra) -> pd.DataFrame:
    """One row per (configuration, seed) of ``dataset``: ``samples`` is model -> seed -> score;
    ``extra`` columns are added as given."""
    rows = [
        {
            "dataset": dataset,
            "model": model,
            "regularizer": "none",
            "seed": seed,
            "status": "ok",
            "trial_id": f"{dataset}-{model}-{seed}",
            "warnings": "",
            "score": value,
        }
        for model, by_seed in samples.items()
        for seed, value in by_seed.items()
    ]
    table = pd.DataFrame(rows)
    for column, values in extra.items():
        table[column] = values
    return table
