"""Built-in metrics, each declared with its columns: which way is better, the change ``aebench
compare`` tolerates (its floor, in the column's unit), what it needs of a trial."""

from aebench import Metric, hookimpl
from aebench_plugins.metrics.disentanglement import DISENTANGLEMENT_METRICS
from aebench_plugins.metrics.groups import (
    latent_column,
    likelihood_column,
    reconstruction_column,
    speed_column,
)
from aebench_plugins.metrics.latent import kmeans, knn_acc, probe_acc, silhouette
from aebench_plugins.metrics.likelihood import (
    active_units,
    active_units_by_layer,
    elbo,
    log_px_exact,
    log_px_iwae,
    log_px_prior_mc,
    log_px_true,
)
from aebench_plugins.metrics.reconstruction import recon_bce, recon_mse, recon_psnr
from aebench_plugins.metrics.sample_quality import SAMPLE_QUALITY_METRICS
from aebench_plugins.metrics.sparsity import code_frac_active, code_mean_abs
from aebench_plugins.metrics.speed import infer_samples_per_s, n_params

LATENT = ("latent-variable model",)
DENSITY = ("likelihood of the data",)  # a latent-variable model whose p(x|z) holds the test data
CONVERGED = 0.1  # nats from K/10 to K draws: the IWAE estimate above it has not converged
LABELLED = ("labelled data",)
IWAE_SAMPLES = {"iwae_samples": "samples"}  # the [eval] key of suites before metric parameters
SHARE = {"at_least": 0.0, "at_most": 1.0}  # an accuracy, a fraction: what its interval can hold

METRICS = {
    "recon_mse": Metric(
        recon_mse,
        columns=[
            reconstruction_column(
                "recon_mse",
                "lower",
                floor=1e-3,
                description="per element",
                headline=True,
                at_least=0.0,
            )
        ],
    ),
    "recon_bce": Metric(
        recon_bce, columns=[reconstruction_column("recon_bce", "lower", floor=0.5, unit="nats")]
    ),
    "recon_psnr": Metric(
        recon_psnr, columns=[reconstruction_column("recon_psnr", "higher", floor=0.2, unit="dB")]
    ),
    "elbo": Metric(
        elbo,
        columns=[
            likelihood_column("elbo", "higher", floor=0.5, unit="nats"),
            likelihood_column("rate", unit="nats", description="KL(q(z|x) || p(z))", at_least=0.0),
            likelihood_column("distortion", "lower", unit="nats", description="-E_q log p(x|z)"),
            # -elbo / (D ln 2): compare checks elbo, at its floor; one of its own (0.005 bits/dim)
            # agreed with elbo's only where D is 144, and a 1-nat regression of a 784-pixel ELBO
            # read "unchanged" here while elbo read "regressed".
            likelihood_column("bits_per_dim", "lower", unit="bits/dim"),
        ],
        requires=DENSITY,
        planes=[("rate", "distortion")],
        aliases={"elbo_samples": "samples"},
    ),
    "log_px_iwae": Metric(
        log_px_iwae,
        columns=[
            likelihood_column(
                "log_px_iwae",
                "higher",
                floor=0.5,
                unit="nats",
                # the bound it is at any K, an estimate of log p(x) only once K has converged
                description=f"IWAE bound at K samples; log p(x) once converged (< {CONVERGED:g})",
                headline=True,
            ),
            likelihood_column(
                "log_px_iwae_test_se",
                unit="nats",
                description="spread over test inputs",
            ),
            likelihood_column(
                "log_px_iwae_mc_se",
                unit="nats",
                description="Monte-Carlo standard error",
            ),
            likelihood_column(
                "log_px_iwae_ess_mean",
                description="effective sample size, mean over inputs",
            ),
            likelihood_column(
                "log_px_iwae_ess_min",
                description="effective sample size, worst input",
            ),
            likelihood_column(
                "log_px_iwae_convergence",
                unit="nats",
                description="estimate at K minus at K/10 (at 1 below K = 10); large: K too small",
                flag_above=CONVERGED,
            ),
            likelihood_column(
                "log_px_true_gap",
                "lower",
                unit="nats",  # log_px_iwae from a constant: compare checks that one, at its floor
                description="log_px_true - log_px_iwae: KL(p_data || p_model) plus the bound's gap",
            ),
            likelihood_column(
                "log_px_iwae_precision_error",
                "lower",
                unit="nats",
                description="|bf16 - fp32| estimate per input, same draws (bf16 evaluation only)",
            ),
        ],
        requires=DENSITY,
        aliases=IWAE_SAMPLES | {"precision": "precision"},
    ),
    "log_px_true": Metric(
        log_px_true,
        columns=[
            likelihood_column(
                "log_px_true",
                unit="nats",
                description="the data's exact log-density",
            )
        ],
        requires=("known data density",),
    ),
    "log_px_exact": Metric(
        log_px_exact,
        columns=[
            likelihood_column(
                "log_px_exact",
                "higher",
                floor=0.5,
                unit="nats",
                description="on the first [eval.log_px_exact] inputs of the test split",
            ),
            likelihood_column(
                "log_px_exact_error",
                unit="nats",
                description="estimated quadrature error",
            ),
            likelihood_column("log_px_exact_inputs", description="test inputs integrated"),
            likelihood_column(
                "log_px_exact_iwae_gap",
                unit="nats",
                description="log_px_exact minus the IWAE estimate on the same inputs: its bias",
            ),
        ],
        requires=DENSITY,
        aliases=IWAE_SAMPLES,
        cost="expensive",  # 24 s on digits, a VAE of 2 latents: quadrature of 100 inputs
    ),
    "log_px_prior_mc": Metric(
        log_px_prior_mc,
        columns=[likelihood_column("log_px_prior_mc", "higher", floor=0.5, unit="nats")],
        requires=DENSITY,
        aliases=IWAE_SAMPLES,
    ),
    "active_units": Metric(active_units, columns=[latent_column("active_units")], requires=LATENT),
    "active_units_by_layer": Metric(
        active_units_by_layer,
        columns=[
            latent_column(
                "active_units_layer1",
                description="in the latent layer nearest the data (z1)",
            ),
            latent_column(
                "active_units_layer2",
                description="in the second latent layer (z2)",
            ),
        ],
        requires=LATENT,
    ),
    "kmeans": Metric(
        kmeans,
        columns=[
            latent_column("kmeans_nmi", "higher", floor=0.02, at_least=0.0, at_most=1.0),
            latent_column("kmeans_ari", "higher", floor=0.02, at_most=1.0),
        ],
        requires=LABELLED,
    ),
    "silhouette": Metric(
        silhouette,
        columns=[latent_column("silhouette", "higher", floor=0.02, at_least=-1.0, at_most=1.0)],
        requires=LABELLED,
    ),
    "knn_acc": Metric(
        knn_acc,
        columns=[latent_column("knn_acc", "higher", floor=0.01, headline=True, **SHARE)],
        requires=LABELLED,
    ),
    "probe_acc": Metric(
        probe_acc,
        columns=[latent_column("probe_acc", "higher", floor=0.01, **SHARE)],
        requires=LABELLED,
    ),
    "code_mean_abs": Metric(code_mean_abs, columns=[latent_column("code_mean_abs")]),
    "code_frac_active": Metric(
        code_frac_active, columns=[latent_column("code_frac_active", **SHARE)]
    ),
    "infer_samples_per_s": Metric(
        infer_samples_per_s,
        columns=[
            speed_column(
                "infer_samples_per_s", "higher", noisy=True, unit="samples/s", at_least=0.0
            )
        ],
    ),
    "n_params": Metric(n_params, columns=[speed_column("n_params")]),
}
METRICS.update(SAMPLE_QUALITY_METRICS)  # fid, sample_pr, sample_is: declared there
METRICS.update(DISENTANGLEMENT_METRICS)  # beta_vae_score, mig, dci, ...: declared there


@hookimpl
def aebench_register_metrics(register):
    for name, metric in METRICS.items():
        register(name, metric)
