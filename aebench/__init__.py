"""aebench: a benchmarking harness for autoencoders.

The public plugin API is what this module exports; plugins import nothing else from aebench.
"""

from aebench.contracts import (
    Autoencoder,
    Data,
    DataInfo,
    LatentVariableModel,
    Metric,
    MetricContext,
    ModelOutput,
    Regularizer,
    Split,
)
from aebench.hookspecs import hookimpl

__all__ = [
    "Autoencoder",
    "Data",
    "DataInfo",
    "LatentVariableModel",
    "Metric",
    "MetricContext",
    "ModelOutput",
    "Regularizer",
    "Split",
    "hookimpl",
]
