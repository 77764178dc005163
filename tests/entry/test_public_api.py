"""The public API holds: plugins and the example import nothing but it, every export is
documented, and the core names no built-in metric."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
from repo import REPO

import aebench
import aebench.testing

ROOT = REPO
PLUGIN_SOURCES = sorted(
    [*(ROOT / "aebench_plugins").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]
)
CORE_SOURCES = sorted((ROOT / "aebench").rglob("*.py"))
PUBLIC = {"aebench": set(aebench.__all__), "aebench.testing": set(aebench.testing.__all__)}


def aebench_imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) of every import of aebench in a file; name None for ``import module``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "aebench"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "aebench":
            found += [(node.module, a.name) for a in node.names]
    return found


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_and_the_example_import_only_the_public_api(path: Path) -> None:
    for module, name in aebench_imports(path):
        assert module in PUBLIC, f"{path.name} imports {module}, which is not public"
        assert name is None or name in PUBLIC[module], f"{path.name}: {module}.{name} is private"


@pytest.mark.parametrize("name", aebench.__all__)
def test_every_export_resolves_and_is_documented(name: str) -> None:
    value = getattr(aebench, name)
    if inspect.isclass(value) or inspect.isfunction(value) or inspect.ismodule(value):
        assert (inspect.getdoc(value) or "").strip(), f"aebench.{name} has no docstring"


def test_the_contract_types_document_their_fields() -> None:
    for cls, fields in [
        (aebench.Metric, ("columns", "requires", "planes", "aliases")),
        (aebench.Column, ("better", "floor", "noisy", "speed")),
        (aebench.MetricContext, ("settings", "training", "generator")),
        (aebench.ModelOutput, ("hidden", "extras", "activations")),
        (aebench.Data, ("batch_transform", "log_density")),
        (aebench.SuiteObserver, ("trial_finished", "suite_finished")),
    ]:
        doc = inspect.getdoc(cls)
        for field in fields:
            assert field in doc, f"help(aebench.{cls.__name__}) does not explain {field}"


def test_the_core_names_no_built_in_metric(plugins) -> None:
    names = set(plugins.metrics.names())
    for entry in plugins.metrics:
        names |= {c for c in entry.factory.column_names if "_" in c}  # "rate" is also English
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names))) + r")\b")
    for path in CORE_SOURCES:
        found = pattern.findall(path.read_text())
        assert not found, f"{path.relative_to(ROOT)} names built-in metrics {sorted(set(found))}"


def test_importing_aebench_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, aebench; print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
