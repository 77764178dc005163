"""What a search tunes: each configuration of a suite (a dataset, a model, a regularizer and a
grid point, without its seed) with the parameters searched in it, and the name of its Optuna
study, which says what the study's trials are samples of."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from aebench.plugins.manager import Plugins
from aebench.run.search_checks import VALIDATION_OBJECTIVE, spaces
from aebench.run.search_section import SearchSection
from aebench.run.search_space import Dimension
from aebench.run.suite import Component, Suite, TrainSection, Trial


@dataclass(frozen=True)
class Configuration:
    """One configuration to tune: its trial at the first seed, what is searched in it
    (``model.latent_dim``, ``regularizer.weight``, ``train.lr`` -> its space), and how (the
    ``[search]`` section: its objective, sampler, pruner, seeds and budget)."""

    base: Trial
    dimensions: dict[str, Dimension]
    section: SearchSection  # how every configuration is searched

    @property
    def study_name(self) -> str:
        """``digits/vae/none/<hash>``: what it tunes, over which spaces, and how: the objective
        (and its metric's settings), the sampler, the pruner and the seeds; not the budget, which
        a larger one goes on with. Reopened under an old name, a study kept its old objective's
        direction, and pooled two objectives' values: the worst new value could win."""
        config = self.base.config()
        del config["seed"]  # a study's trials are all at the search's own seed
        if self.section.objective == VALIDATION_OBJECTIVE:  # no metric's settings in it
            del config["eval"]
        config["spaces"] = {k: repr(d.distribution) for k, d in sorted(self.dimensions.items())}
        config["search"] = self.section.model_dump(exclude={"trials", "budget_s", "train"})
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
        parts = (self.base.dataset.plugin, self.base.model.plugin, self.base.regularizer.plugin)
        return "/".join(parts) + f"/{digest.hexdigest()[:12]}"

    def trial(self, params: dict[str, Any], plugins: Plugins, evaluation: dict, seed: int) -> Trial:
        """The trial with ``params`` (``model.latent_dim`` -> value) set, each part validated
        again by its plugin's schema (``ValueError`` where one refuses it)."""
        parts: dict[str, dict[str, Any]] = {
            "model": dict(self.base.model.params),
            "regularizer": dict(self.base.regularizer.params),
            "train": dict(self.base.train),
        }
        for key, value in params.items():
            part, name = key.split(".", 1)
            parts[part][name] = value

        def component(old: Component, kind: str) -> Component:
            schema = plugins.registries[f"{kind}s"].get(old.plugin).params
            return replace(old, params=schema.model_validate(parts[kind]).model_dump())

        train = TrainSection.model_validate(parts["train"]).model_dump(exclude={"grid"})
        model, regularizer = (
            component(self.base.model, "model"),
            component(self.base.regularizer, "regularizer"),
        )
        return Trial(self.base.dataset, model, regularizer, train, evaluation, seed)


def configurations(suite: Suite) -> list[Configuration]:
    """Each configuration of the suite, at its first seed, with what is searched in it."""
    assert suite.spec.search is not None
    first = suite.spec.suite.seeds[0]
    found = spaces(suite)
    out = []
    for trial in suite.trials:
        if trial.seed != first:
            continue
        dimensions: dict[str, Dimension] = {}
        for kind, component in (("model", trial.model), ("regularizer", trial.regularizer)):
            for name, dimension in found.get(component.source, {}).items():
                dimensions[f"{kind}.{name}"] = dimension
        for name, dimension in found.get("train", {}).items():
            dimensions[f"train.{name}"] = dimension
        out.append(Configuration(trial, dimensions, suite.spec.search))
    return out
