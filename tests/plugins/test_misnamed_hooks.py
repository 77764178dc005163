"""A hook implementation under a name that is no hook is a load error naming the hook it was
likely meant to be: pluggy keeps it and never calls it, so what it registers would be missing
without a word (and ``--strict`` could not catch it)."""

from __future__ import annotations

import types

from aebench import hookimpl
from aebench.plugins.manager import load_plugins


def test_a_misspelled_hook_is_a_load_error_with_the_hook_it_meant() -> None:
    plugin = types.ModuleType("typo_plugin")

    @hookimpl
    def aebench_register_model(register):  # singular: the hook is aebench_register_models
        register("never", object)

    plugin.aebench_register_model = aebench_register_model
    plugins = load_plugins(entry_points=False, extra=[plugin])
    assert [(e.plugin, e.error) for e in plugins.errors] == [
        (
            "typo_plugin",
            "implements aebench_register_model, which is no aebench hook: it is never called;"
            " did you mean aebench_register_models?",
        )
    ]
    assert "never" not in plugins.models.names()


def test_the_built_in_plugins_implement_hooks_only() -> None:
    assert not [e for e in load_plugins().errors if "no aebench hook" in e.error]
