"""The parameter types that the built-in models' signatures share.

A model's signature is its schema: aebench reads each parameter's name, type, constraints and
default from it (``aebench list models`` shows them, suites are checked against them). The types
are named once here so that ``latent_dim`` or ``hidden`` means the same in every model. The
signatures themselves are spelled out in each model, though many begin alike (``info``,
``latent_dim``, ``hidden``, ``likelihood``, ``sigma``): declared boilerplate, so that a model's
parameters read where its code is. Only the conv variants derive theirs (conv_variants.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

LatentDim = Annotated[int, Field(ge=1)]
# Layer widths; a tuple default because a list default would be shared between calls.
Widths = list[Annotated[int, Field(ge=1)]]
Channels = Annotated[Widths, Field(min_length=1)]  # a conv network's widths: at least one layer
Sigma = Annotated[float, Field(gt=0)]
Beta = Annotated[float, Field(ge=0)]  # the KL's weight
Weight = Annotated[float, Field(ge=0)]  # any other term's weight
Samples = Annotated[int, Field(ge=1)]

# "auto" follows the data's kind: binary -> "bernoulli"; unit data on a grid of ``levels`` values
# (8-bit images, digits) -> "discretized-logistic" over those levels; unit data not known to be
# quantised -> "continuous-bernoulli"; real -> "gaussian-learned" (sigma starting at ``sigma``).
# "gaussian" keeps sigma fixed; "gaussian-learned" has the decoder give a sigma per element
# (log sigma = log ``sigma`` + the decoder's second output). A shared learned sigma, moving one
# Adam step of the learning rate at a time, was still 0.48 after the 790 default steps on ppca
# (true: 0.1), 8.7 nats from the true density; from the decoder, 0.52 nats (measured).
# "bernoulli" may be chosen for any data in [0, 1]; on grey levels it is not a likelihood.
LikelihoodName = Literal[
    "auto",
    "bernoulli",
    "continuous-bernoulli",
    "discretized-logistic",
    "gaussian",
    "gaussian-learned",
]
