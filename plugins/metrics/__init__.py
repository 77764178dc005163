"""Built-in metrics. A metric may return several columns; its docstring names them."""

from aebench import hookimpl
from aebench_plugins.metrics.latent import kmeans, knn_acc, probe_acc, silhouette
from aebench_plugins.metrics.likelihood import active_units, elbo, log_px_iwae, log_px_prior_mc
from aebench_plugins.metrics.reconstruction import recon_bce, recon_mse, recon_psnr
from aebench_plugins.metrics.sparsity import code_frac_active, code_mean_abs
from aebench_plugins.metrics.speed import infer_samples_per_s, n_params

METRICS = (
    recon_mse,
    recon_bce,
    recon_psnr,
    elbo,
    log_px_iwae,
    log_px_prior_mc,
    active_units,
    kmeans,
    silhouette,
    knn_acc,
    probe_acc,
    code_mean_abs,
    code_frac_active,
    infer_samples_per_s,
    n_params,
)


@hookimpl
def aebench_register_metrics(register):
    for metric in METRICS:
        register(metric.__name__, metric)
