"""Data flows one way: files -> processors -> feature tables -> models -> analysis. A model takes arrays and
imports nothing from analysis/, processors/ or commands/ (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "anomalyhunt"
ABOVE_MODELS = ("analysis", "processors", "commands", "demo", "cli")


def imported_modules(source: str, package: tuple[str, ...] = ("anomalyhunt", "models")) -> list[str]:
    """Every module ``source`` (a module of ``package``) imports, anywhere in it, as a dotted name inside the
    package (``analysis.metrics``)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(package[: len(package) - node.level + 1])
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out += [name] + [f"{name}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return [n.removeprefix("anomalyhunt.") for n in out if n.startswith("anomalyhunt")]


@pytest.mark.parametrize("path", sorted((PACKAGE / "models").glob("*.py")), ids=lambda p: p.name)
def test_models_import_nothing_above_them(path):
    wrong = sorted({m for m in imported_modules(path.read_text()) if m.split(".")[0] in ABOVE_MODELS})
    assert not wrong, f"{path.name} imports {wrong}"


def test_the_import_scan_sees_every_kind_of_import():
    """The scan itself: function-level relative, absolute and sibling imports are all resolved."""
    source = ("import anomalyhunt.processors\nfrom .base import GENERATORS\n"
              "def f():\n    from ..analysis.metrics import auc\n    return auc\n")
    found = imported_modules(source)
    assert {"analysis.metrics", "processors", "models.base"} <= set(found), found
