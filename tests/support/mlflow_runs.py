"""Reading an MLflow store in a test without leaving mlflow's global state changed."""

from __future__ import annotations

import os

import pandas as pd


def search_runs(uri: str, **kwargs) -> pd.DataFrame:
    """``mlflow.search_runs`` on the store at ``uri``, as a DataFrame.

    ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI``, which every later run in this
    process would then log to (restoring mlflow's "previous" default points it at ./mlflow.db):
    so the global URI is cleared and the variable put back as it was.
    """
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(**kwargs)
    finally:
        mlflow.set_tracking_uri(None)
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before


def listed(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that the UI's runs table lists as rows of their own: it folds a run whose
    ``mlflow.parentRunId`` names a run of the table under that run, collapsed."""
    if "tags.mlflow.parentRunId" not in runs:
        return runs
    return runs[~runs["tags.mlflow.parentRunId"].isin(runs["run_id"])]
