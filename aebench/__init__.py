"""aebench: a benchmarking harness for autoencoders.

The public API is what this module exports, and plugins and scripts import nothing else from
aebench (besides ``aebench.testing``, the conformance checks for plugin authors' tests):

- writing plugins: ``hookimpl``; ``DataInfo``, ``Split``, ``Data`` (datasets); ``ModelOutput``,
  ``Autoencoder``, ``LatentVariableModel``, ``latent_layer_slices`` (models; the last reads a
  model's latent hierarchy, ``latent_layers``, as slices of its code); ``Regularizer``;
  ``Metric``, ``Column``, ``MetricContext``, ``NotApplicable`` (metrics); ``SuiteObserver``
  (observers of a run); ``likelihood``, the estimators (ELBO, importance-weighted log p(x) and
  its diagnostics, ...) that metrics build on, and ``quadrature``, exact log p(x) for latents of
  at most 2 dimensions;
  ``paths``, where aebench and its plugins may write (never into the system's folders), the
  folder they cache in (``paths.cache_folder``) and ``paths.write_atomically``;
- running and reading: ``load_plugins``, ``load_suite``, ``run_suite``, ``SuiteRun``, ``Suite``,
  ``Trial``, ``TrialOutcome``; ``load_results``, ``load_trial`` (a kept model and its data,
  ``KeptTrial``) and ``evaluate`` (kept models measured again) for a results folder.

Names are imported when first used, so that ``import aebench`` (and ``aebench --help``) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aebench.hookspecs import hookimpl

if TYPE_CHECKING:
    from aebench import likelihood, paths, quadrature
    from aebench.api import run_suite
    from aebench.columns import Column
    from aebench.contracts import (
        Autoencoder,
        Data,
        DataInfo,
        DataKind,
        LatentVariableModel,
        Metric,
        MetricContext,
        ModelOutput,
        NotApplicable,
        Regularizer,
        Requirement,
        Split,
        latent_layer_slices,
    )
    from aebench.kept import KeptTrial, KeptTrialError, evaluate, load_results, load_trial
    from aebench.observing import SuiteObserver, SuiteRun, TrialOutcome
    from aebench.plugins import Plugins, load_plugins
    from aebench.suite import Suite, SuiteError, Trial, load_suite

# name -> the module that defines it
_EXPORTS = {
    "Autoencoder": "aebench.contracts",
    "Data": "aebench.contracts",
    "DataInfo": "aebench.contracts",
    "DataKind": "aebench.contracts",
    "LatentVariableModel": "aebench.contracts",
    "Metric": "aebench.contracts",
    "MetricContext": "aebench.contracts",
    "ModelOutput": "aebench.contracts",
    "NotApplicable": "aebench.contracts",
    "Regularizer": "aebench.contracts",
    "Requirement": "aebench.contracts",
    "Split": "aebench.contracts",
    "latent_layer_slices": "aebench.contracts",
    "Column": "aebench.columns",
    "Plugins": "aebench.plugins",
    "load_plugins": "aebench.plugins",
    "Suite": "aebench.suite",
    "SuiteError": "aebench.suite",
    "Trial": "aebench.suite",
    "load_suite": "aebench.suite",
    "SuiteObserver": "aebench.observing",
    "SuiteRun": "aebench.observing",
    "TrialOutcome": "aebench.observing",
    "run_suite": "aebench.api",
    "KeptTrial": "aebench.kept",
    "KeptTrialError": "aebench.kept",
    "evaluate": "aebench.kept",
    "load_results": "aebench.kept",
    "load_trial": "aebench.kept",
}
_MODULES = {
    "likelihood": "aebench.likelihood",
    "paths": "aebench.paths",
    "quadrature": "aebench.quadrature",
}

__all__ = [  # the names above, spelled out for readers and linters
    "Autoencoder",
    "Column",
    "Data",
    "DataInfo",
    "DataKind",
    "KeptTrial",
    "KeptTrialError",
    "LatentVariableModel",
    "Metric",
    "MetricContext",
    "ModelOutput",
    "NotApplicable",
    "Plugins",
    "Regularizer",
    "Requirement",
    "Split",
    "Suite",
    "SuiteError",
    "SuiteObserver",
    "SuiteRun",
    "Trial",
    "TrialOutcome",
    "evaluate",
    "hookimpl",
    "latent_layer_slices",
    "likelihood",
    "load_plugins",
    "load_results",
    "load_suite",
    "load_trial",
    "paths",
    "quadrature",
    "run_suite",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aebench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
