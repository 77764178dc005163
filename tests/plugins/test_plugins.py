"""Plugin discovery: built-ins through entry points, third parties, broken and clashing plugins."""

import importlib.metadata
import math
import sys
import types

import torch

from aebench import ModelOutput, hookimpl
from aebench.plugins.manager import load_plugins
from aebench.run.data import DataCache
from aebench.run.suite import load_suite
from aebench.run.trial import run_trial


def test_builtins_load_through_the_aebench_entry_points(plugins):
    assert "ae" in plugins.models and "digits" in plugins.datasets
    assert "none" in plugins.regularizers and "recon_mse" in plugins.metrics
    entry = plugins.models.get("ae")
    assert entry.distribution == "aebench"
    assert entry.version == importlib.metadata.version("aebench")
    assert entry.plugin == "aebench.models"
    assert not plugins.errors


def test_every_call_builds_a_fresh_manager():
    assert load_plugins().manager is not load_plugins().manager


class ThirdParty:
    """A plugin object as a third-party package's module would be."""

    class Tiny(torch.nn.Module):
        """A linear autoencoder written outside aebench."""

        def __init__(self, info, latent_dim: int = 3, hidden: list[int] = ()):
            super().__init__()
            size = math.prod(info.shape)
            self.encoder = torch.nn.Linear(size, latent_dim)
            self.decoder = torch.nn.Linear(latent_dim, size)
            self.shape = info.shape

        def encode(self, x):
            return self.encoder(x.flatten(1))

        def decode(self, z):
            return torch.sigmoid(self.decoder(z)).view(-1, *self.shape)

        def forward(self, x):
            code = self.encode(x)
            return ModelOutput(code=code, recon=self.decode(code))

        def loss(self, x, out):
            return (out.recon - x).pow(2).flatten(1).sum(1)

    @hookimpl
    def aebench_register_models(self, register):
        register("tiny", ThirdParty.Tiny)


def test_a_third_party_plugin_object_runs_a_trial(tiny_suite_text, write_suite):
    plugins = load_plugins(extra=[ThirdParty()])
    assert "tiny" in plugins.models
    suite = load_suite(write_suite(tiny_suite_text.replace('"ae"', '"tiny"')), plugins)
    row, _ = run_trial(suite.trials[0], plugins, torch.device("cpu"), DataCache(plugins))
    assert row["status"] == "ok", row["reason"]
    assert row["model"] == "tiny" and row["model.latent_dim"] == 2


class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint of an installed third-party distribution."""

    def __init__(self, name, load):
        self.name = name
        self._load = load
        self.dist = types.SimpleNamespace(name="aebench-thirdparty", version="9.9")

    def load(self):
        return self._load()


def _with_fake_entry_points(monkeypatch, *fakes):
    real = importlib.metadata.entry_points

    def entry_points(**kw):
        return [*real(**kw), *fakes] if kw.get("group") == "aebench" else real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_a_fake_entry_point_is_discovered_with_its_distribution(monkeypatch):
    module = types.ModuleType("thirdparty_plugin")
    module.aebench_register_models = hookimpl(lambda register: register("tiny", ThirdParty.Tiny))
    monkeypatch.setitem(sys.modules, "thirdparty_plugin", module)
    _with_fake_entry_points(monkeypatch, FakeEntryPoint("models", lambda: module))
    plugins = load_plugins()
    entry = plugins.models.get("tiny")
    assert (entry.distribution, entry.version) == ("aebench-thirdparty", "9.9")
    assert entry.plugin == "aebench-thirdparty.models"


def test_a_plugin_that_fails_to_import_is_reported_not_fatal(monkeypatch):
    def broken():
        raise ImportError("No module named 'missing_dependency'")

    _with_fake_entry_points(monkeypatch, FakeEntryPoint("broken", broken))
    plugins = load_plugins()
    assert "ae" in plugins.models  # everything else still loads
    [error] = plugins.errors
    assert error.distribution == "aebench-thirdparty"
    assert "missing_dependency" in error.error


def test_a_blocked_plugin_is_not_even_imported(monkeypatch):
    imported = []

    def broken():
        imported.append(True)
        raise ImportError("No module named 'missing_dependency'")

    _with_fake_entry_points(monkeypatch, FakeEntryPoint("broken", broken))
    plugins = load_plugins(blocked=["aebench-thirdparty.broken"])
    assert not imported
    assert not [e for e in plugins.errors if e.distribution == "aebench-thirdparty"]


def test_a_duplicate_name_names_both_plugins_and_the_built_in_is_kept():
    class Clash:
        @hookimpl
        def aebench_register_models(self, register):
            register("ae", ThirdParty.Tiny)

    plugins = load_plugins(extra=[Clash()])
    [error] = plugins.errors
    assert (error.plugin, error.problem) == ("Clash", "collision")
    assert "'aebench.models' and 'Clash': dropped from 'Clash'" in error.error
    assert plugins.models.get("ae").plugin == "aebench.models"
