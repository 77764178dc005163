"""The vocabulary of the results table: which columns configure a trial, which are measured,
and which way each measurement improves. The report, MLflow tracking and ``aebench compare``
read the table through these, so they agree on it.
"""

from __future__ import annotations

IDENTITY = ("dataset", "model", "regularizer")
PARAM_PREFIXES = ("dataset.", "model.", "regularizer.", "train.", "eval.")
NOT_METRICS = frozenset({"trial_id", "status", "reason", "device"})

HIGHER_IS_BETTER = frozenset(
    {
        "elbo",
        "log_px_iwae",
        "log_px_prior_mc",
        "kmeans_nmi",
        "kmeans_ari",
        "silhouette",
        "knn_acc",
        "probe_acc",
        "recon_psnr",
        "recon_ssim",
        "train_samples_per_s",
        "infer_samples_per_s",
    }
)
LOWER_IS_BETTER = frozenset(
    {
        "recon_mse",
        "recon_bce",
        "recon_mae",
        "distortion",
        "bits_per_dim",
        "final_loss",
        "train_s",
        "eval_s",
        "peak_mem_mb",
        "kl_gap",
    }
)


def is_param_column(name: str) -> bool:
    """A column of the trial's configuration: plugin names, flattened params, the seed."""
    return name in IDENTITY or name == "seed" or name.startswith(PARAM_PREFIXES)


def is_config_column(name: str) -> bool:
    """A configuration column other than the seed: what configurations are matched on."""
    return is_param_column(name) and name != "seed"


def is_metric_column(name: str) -> bool:
    """A column of measured numbers (not configuration, not bookkeeping, not versions)."""
    return not (is_param_column(name) or name in NOT_METRICS or name.startswith("version."))


def direction(metric: str) -> int:
    """+1 when higher is better, -1 when lower is, 0 when neither is known (rate, ...)."""
    if metric in HIGHER_IS_BETTER or metric.endswith(("_acc", "_nmi", "_ari", "_psnr", "_per_s")):
        return 1
    if metric in LOWER_IS_BETTER or metric.endswith(("_mse", "_bce", "_mae", "_s")):
        return -1
    return 0
