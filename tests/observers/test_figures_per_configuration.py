"""The figures observer draws one seed per configuration unless asked for every seed, and the
report shows that seed's figures where the median seed has none."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from builders import build_suite, entry

import aebench
from aebench.results.trials import trial_folder
from aebench.views.drawing import ARRAYS
from aebench.views.report import REPORT_MD, build_report


def figured_suite(per_seed: bool | None = None, seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Two configurations of a small ``ae``, on ``seeds``; ``[observers.figures] per_seed`` when
    given."""
    ae = entry("ae", grid={"latent_dim": [2, 3]}, hidden=[8])
    built = build_suite(ae, name="figured", seeds=list(seeds), epochs=1, batch_size=256)
    if per_seed is not None:
        built["observers"]["figures"] = {"per_seed": per_seed}
    return built


def _figured(output: Path) -> pd.DataFrame:
    """The trials of the results table, with whether their figures were drawn."""
    table = pd.read_parquet(output / "results.parquet")
    drawn = [(trial_folder(output, t) / ARRAYS).is_file() for t in table["trial_id"]]
    return table.assign(drawn=drawn)


def test_three_seeds_draw_the_figures_of_one_trial_per_configuration(write_suite, tmp_path):
    output = tmp_path / "out"
    aebench.run_suite(write_suite(figured_suite()), output=output)

    table = _figured(output)
    assert len(table) == 6
    assert table.groupby("model.latent_dim")["drawn"].sum().to_dict() == {2: 1, 3: 1}
    report = (output / REPORT_MD).read_text()
    assert "No figures were saved" not in report
    for _, trial in table[table["drawn"]].iterrows():  # each configuration shows its drawn seed
        assert f"trials/{trial['trial_id']}/" in report


def test_per_seed_draws_every_trial(write_suite, tmp_path):
    output = tmp_path / "out"
    aebench.run_suite(write_suite(figured_suite(per_seed=True)), output=output)

    assert _figured(output)["drawn"].all()


def test_a_seed_added_later_draws_nothing_when_its_configuration_has_figures(write_suite, tmp_path):
    output = tmp_path / "out"
    aebench.run_suite(write_suite(figured_suite(seeds=(0,))), output=output)
    aebench.run_suite(write_suite(figured_suite()), output=output)

    table = _figured(output)
    assert table.groupby("model.latent_dim")["drawn"].sum().to_dict() == {2: 1, 3: 1}
    assert table[table["drawn"]]["seed"].tolist() == [0, 0]


def test_the_report_shows_another_seeds_figures_where_the_median_seed_has_none(
    write_suite, tmp_path
):
    output = tmp_path / "out"
    aebench.run_suite(write_suite(figured_suite(per_seed=True)), output=output)
    text = (output / REPORT_MD).read_text()
    medians = set(re.findall(r"^Seed \d+ \((\w+)\): the median", text, flags=re.M))
    table = _figured(output)
    assert len(medians) == 2
    kept = []
    for _, trials in table.groupby("model.latent_dim"):  # one seed other than the median keeps
        other = trials[~trials["trial_id"].isin(medians)].iloc[0]["trial_id"]
        kept.append(other)
        for trial_id in trials["trial_id"]:
            if trial_id != other:
                for path in trial_folder(output, trial_id).glob("*.*"):
                    if path.suffix in (".png", ".npz"):
                        path.unlink()

    build_report(output)

    text = (output / REPORT_MD).read_text()
    assert "No figures were saved" not in text
    assert all(f"trials/{trial_id}/" in text for trial_id in kept)
    # before: "each configuration's median seed", of panels that were none of the medians
    assert "median seed where its figures were drawn, else its first seed drawn" in text
