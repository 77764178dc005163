"""Built-in metrics."""

from aebench_plugins.metrics.reconstruction import recon_bce, recon_mse

from aebench import hookimpl


@hookimpl
def aebench_register_metrics(register):
    register("recon_mse", recon_mse)
    register("recon_bce", recon_bce)
