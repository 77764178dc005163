"""The groups of the report the built-in metrics' columns are shown in, and the group's place there:
likelihoods first, then reconstruction, the latent space, disentanglement and samples (the core's
own groups, speed and training, come after them, at 600 and 700). Each is a ``Column`` with its
group declared: ``likelihood_column("elbo", "higher", unit="nats")``.

A likelihood compares only between trials of one likelihood protocol (a log-likelihood of binarized
data is not one of grey levels, nor a Bernoulli one a Gaussian one): its columns say so.
"""

from __future__ import annotations

from functools import partial

from aebench import Column

likelihood_column = partial(Column, group="likelihood", group_order=100, per_protocol=True)
reconstruction_column = partial(Column, group="reconstruction", group_order=200)
latent_column = partial(Column, group="latent", group_order=300)
disentanglement_column = partial(Column, group="disentanglement", group_order=400)
samples_column = partial(Column, group="samples", group_order=500)
speed_column = partial(Column, group="speed")  # the core's group: the core declares its place
