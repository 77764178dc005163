"""aebench: a benchmarking harness for autoencoders.

The public API is what this module exports, and plugins and scripts import nothing else from
aebench (besides ``aebench.testing``, the conformance checks for plugin authors' tests):

- writing plugins: ``hookimpl``; ``DataInfo``, ``Split``, ``Data`` (datasets); ``ModelOutput``,
  ``Autoencoder``, ``LatentVariableModel``, ``latent_layer_slices`` (models; the last reads a
  model's latent hierarchy, ``latent_layers``, as slices of its code); ``Regularizer``;
  ``Metric``, ``Column``, ``MetricContext``, ``NotApplicable``, ``Measurement`` (metrics);
  ``SuiteObserver`` (observers of a run); ``Executor`` and the ``Workload`` it runs (where
  trials run); ``Command`` (a subcommand of the ``aebench`` program); ``likelihood``, the
  estimators (ELBO, importance-weighted log p(x) and its diagnostics, ...) that metrics build on,
  and ``quadrature``, exact log p(x) for latents of at most 2 dimensions;
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

from aebench.contract.hookspecs import hookimpl

if TYPE_CHECKING:
    from aebench.contract.columns import Column
    from aebench.contract.command import Command
    from aebench.contract.data import Data, DataInfo, DataKind, Split
    from aebench.contract.executor import Executor
    from aebench.contract.metric import (
        Measurement,
        Metric,
        MetricContext,
        NotApplicable,
        Requirement,
    )
    from aebench.contract.model import (
        Autoencoder,
        LatentVariableModel,
        ModelOutput,
        Regularizer,
        latent_layer_slices,
    )
    from aebench.estimators import likelihood, quadrature
    from aebench.measure_again import evaluate
    from aebench.plugins.manager import Plugins, load_plugins
    from aebench.results import paths
    from aebench.run.executors import Workload
    from aebench.run.kept import KeptTrial, KeptTrialError, load_results, load_trial
    from aebench.run.observing import SuiteObserver, SuiteRun, TrialOutcome
    from aebench.run.suite import Suite, SuiteError, Trial, load_suite
    from aebench.session import run_suite

# name -> the module that defines it
_EXPORTS = {
    "Autoencoder": "aebench.contract.model",
    "Data": "aebench.contract.data",
    "DataInfo": "aebench.contract.data",
    "DataKind": "aebench.contract.data",
    "LatentVariableModel": "aebench.contract.model",
    "Measurement": "aebench.contract.metric",
    "Metric": "aebench.contract.metric",
    "MetricContext": "aebench.contract.metric",
    "ModelOutput": "aebench.contract.model",
    "NotApplicable": "aebench.contract.metric",
    "Regularizer": "aebench.contract.model",
    "Requirement": "aebench.contract.metric",
    "Split": "aebench.contract.data",
    "latent_layer_slices": "aebench.contract.model",
    "Column": "aebench.contract.columns",
    "Command": "aebench.contract.command",
    "Executor": "aebench.contract.executor",
    "Workload": "aebench.run.executors",
    "Plugins": "aebench.plugins.manager",
    "load_plugins": "aebench.plugins.manager",
    "Suite": "aebench.run.suite",
    "SuiteError": "aebench.run.suite",
    "Trial": "aebench.run.suite",
    "load_suite": "aebench.run.suite",
    "SuiteObserver": "aebench.run.observing",
    "SuiteRun": "aebench.run.observing",
    "TrialOutcome": "aebench.run.observing",
    "run_suite": "aebench.session",
    "KeptTrial": "aebench.run.kept",
    "KeptTrialError": "aebench.run.kept",
    "evaluate": "aebench.measure_again",
    "load_results": "aebench.run.kept",
    "load_trial": "aebench.run.kept",
}
_MODULES = {
    "likelihood": "aebench.estimators.likelihood",
    "paths": "aebench.results.paths",
    "quadrature": "aebench.estimators.quadrature",
}

__all__ = [  # the names above, spelled out for readers and linters
    "Autoencoder",
    "Column",
    "Command",
    "Data",
    "DataInfo",
    "DataKind",
    "Executor",
    "KeptTrial",
    "KeptTrialError",
    "LatentVariableModel",
    "Measurement",
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
    "Workload",
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
