"""Estimators that plugins call: ``likelihood`` (ELBO, IWAE, active units), ``quadrature`` (exact
log p(x) in one or two latent dimensions) and ``precision`` (fp32 or bf16 passes)."""
