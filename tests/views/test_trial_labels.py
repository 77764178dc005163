"""Trials in the report's lists are named as the leaderboards name their configurations, and a
configuration none of whose seeds trained is said, not left out of every table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aebench.contract.columns import Column, Vocabulary
from aebench.views.blocks import Paragraph, Table
from aebench.views.layout import report_blocks
from aebench.views.trial_labels import configuration_labels, untrained


def _table() -> pd.DataFrame:
    rows = []
    for lr, status in ((2e-3, "ok"), (1e4, "diverged")):
        for seed in range(3):
            rows.append(
                {
                    "trial_id": f"{status}-{seed}",
                    "dataset": "digits",
                    "model": "vae",
                    "regularizer": "none",
                    "seed": seed,
                    "train.lr": lr,
                    "model.latent_dim": 2,
                    "status": status,
                    "reason": "" if status == "ok" else "loss is not finite at epoch 1",
                    "score": float(seed) if status == "ok" else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def test_a_trial_is_named_by_the_settings_that_tell_its_configuration_apart() -> None:
    table = _table()
    # before: "vae / none seed=0" for either rate; the latent size, the same for all, not shown
    name = configuration_labels(table)
    assert name(table.iloc[3]) == "vae / none lr=10000"
    assert name(table.iloc[0]) == "vae / none lr=0.002"


def test_a_configuration_whose_seeds_all_failed_is_said_beside_the_tables(tmp_path: Path) -> None:
    table = _table()
    assert untrained(table, "digits") == ["vae / none lr=10000 (0 of 3 seeds trained: 3 diverged)"]
    vocabulary = Vocabulary()
    vocabulary.add([Column("score", "higher", group="g", headline=True)])
    blocks = report_blocks(tmp_path, table, vocabulary)
    said = [b.text for b in blocks if isinstance(b, Paragraph) and "no seed trained" in b.text]
    assert said == [
        "Not in the tables, no seed trained: vae / none lr=10000 (0 of 3 seeds trained: 3"
        " diverged)."
    ]
    failed = next(b for b in blocks if isinstance(b, Table) and "status" in b.header)
    assert {row[2] for row in failed.rows} == {f"vae / none lr=10000 seed={s}" for s in range(3)}
