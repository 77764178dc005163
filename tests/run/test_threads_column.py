"""A row's ``threads`` is what its last epoch trained on, not what the trial started with: under
``threads = "auto"`` the count follows the machine's load epoch by epoch (README)."""

from __future__ import annotations

import types

import torch
from builders import build_suite, entry

import aebench
from aebench import hookimpl
from aebench.plugins.manager import load_plugins


def test_the_threads_column_is_the_last_epochs(tmp_path) -> None:
    start = torch.get_num_threads()
    plugin = types.ModuleType("retuned")
    built = load_plugins().models.get("ae").factory

    class Retuned(torch.nn.Module):
        """The built-in ae, whose training sets torch's threads, as "auto" does under a load
        that changed since the trial started."""

        def __init__(self, info):
            super().__init__()
            self.inner = built(info, hidden=[8], latent_dim=2)

        def forward(self, x):
            if self.training:
                torch.set_num_threads(start + 1)
            return self.inner(x)

        def encode(self, x):
            return self.inner.encode(x)

        def decode(self, z):
            return self.inner.decode(z)

        def loss(self, x, out):
            return self.inner.loss(x, out)

    @hookimpl
    def aebench_register_models(register):
        register("retuned", Retuned)

    plugin.aebench_register_models = aebench_register_models
    plugins = load_plugins(extra=[plugin])
    suite = build_suite(entry("retuned"), epochs=1, threads=start)
    try:
        run = aebench.run_suite(suite, output=tmp_path / "out", plugins=plugins)
    finally:
        torch.set_num_threads(start)
    (row,) = run.rows
    assert row["status"] == "ok", row["reason"]
    assert row["threads"] == start + 1  # before: start, read as the trial began
