"""Results tables of one ``score`` column, for the views' tests: one ``ok`` row per
(configuration, seed), as a run would write it."""

from __future__ import annotations

import pandas as pd


def score_table(
    samples: dict[str, dict[int, float]],
    dataset: str = "d",
    starts: str | None = "seed",
    **extra,
) -> pd.DataFrame:
    """One row per (configuration, seed) of ``dataset``: ``samples`` is model -> seed -> score.
    ``starts``: what a trial's ``start_digest`` follows: ``"seed"``, every model of a seed started
    alike (one architecture); ``"model"``, each model's own (other shapes); None, no column (a
    table older than it). ``extra`` columns are added as given."""
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
        | (
            {}
            if starts is None
            else {"start_digest": f"{model if starts == 'model' else ''}{seed}"}
        )
        for model, by_seed in samples.items()
        for seed, value in by_seed.items()
    ]
    table = pd.DataFrame(rows)
    for column, values in extra.items():
        table[column] = values
    return table
