"""check_observer sends what real runs send: NaN, skipped, failed, a re-measure; settings."""

from __future__ import annotations

import math

import aebench_kit_cases as cases
import pydantic
import pytest

from aebench import SuiteObserver
from aebench.testing import check_observer


def test_the_kit_sends_every_kind_of_row_and_a_re_measure():
    heard = []

    class Recording(SuiteObserver):
        def suite_started(self, suite, output, trials):
            heard.append(f"started {len(trials)}")

        def trial_finished(self, trial, row, outcome):
            nan = any(isinstance(v, float) and math.isnan(v) for k, v in row.items() if "kit" in k)
            model = "model" if outcome.model is not None else "no model"
            heard.append(f"{row['status']} {model}{' NaN' if nan else ''}")
            if row["status"] == "failed":
                heard.append(f"traceback {bool(outcome.traceback)}, reason {bool(row['reason'])}")
            if row["status"] == "ok" and not nan:
                heard.append(f"curves {outcome.curves['loss']}, train_s {row['train_s']}")

        def suite_finished(self, run):
            heard.append(f"finished interrupted={run.interrupted} evaluated={run.evaluated}")

    check_observer(lambda suite: Recording())
    assert heard == [
        "started 4",
        "ok model",
        "curves [2.0, 1.0], train_s 0.1",
        "ok model NaN",
        "skipped no model",
        "failed no model",
        "traceback True, reason True",
        "finished interrupted=True evaluated=0",
        "started 1",  # a second run: the kept ok trial measured again, read back from its folder
        "ok model",
        "curves [2.0, 1.0], train_s 0.1",
        "finished interrupted=False evaluated=1",
    ]


@pytest.mark.parametrize(
    "observer, expected",
    [
        (cases.NumbersOnly, "an observer must accept a row with NaN in a metric column"),
        (cases.CountsParameters, "an observer must accept a skipped row: a reason, no model"),
        (cases.FinalLoss, "an observer must accept a failed row: a reason, no model"),
        (cases.OnceEach, "an observer must accept a trial measured again from its kept weights"),
    ],
)
def test_the_kit_says_what_an_observer_must_accept(observer, expected):
    with pytest.raises(AssertionError, match=expected) as caught:
        check_observer(lambda suite: observer())
    assert caught.value.__cause__ is not None  # the observer's own error, with its traceback


def test_the_kit_passes_settings_to_the_factory_validated():
    cases.WRITTEN.clear()
    check_observer(cases.status_log, filename="trials.csv", statuses=["ok"])
    assert cases.WRITTEN == [("trials.csv", ["ok"])] * 2  # one observer per run

    with pytest.raises(pydantic.ValidationError, match="filename"):
        check_observer(cases.status_log, filename="../trials.txt")
    with pytest.raises(pydantic.ValidationError, match="colour"):
        check_observer(cases.status_log, colour="red")
