"""The direction of imports is the architecture: the core imports neither torch nor Qt, inference no Qt,
training never the UI, and the CLI starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return {m.split(".")[0] for m in out.stdout.split()}


@pytest.mark.parametrize("module", ["braingui.case", "braingui.preprocess", "braingui.report", "braingui.results",
                                    "braingui.phantom", "braingui.app.cli"])
def test_core_imports_no_torch_no_qt(module):
    loaded = _loaded_after(f"import {module}")
    assert "torch" not in loaded and "monai" not in loaded
    assert not {"PySide6", "pyqtgraph", "vtkmodules"} & loaded


def test_inference_imports_no_qt():
    import importlib.util

    if importlib.util.find_spec("braingui.inference.pipeline") is None:
        pytest.skip("braingui.inference.pipeline not built yet")
    loaded = _loaded_after("import braingui.inference.pipeline")
    assert "torch" in loaded
    assert not {"PySide6", "pyqtgraph", "vtkmodules"} & loaded


def _module_level(tree: ast.Module):
    """Statements that run at import time (function and class bodies excluded)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)


def _imports_of(path: Path, import_time_only: bool = False) -> set[str]:
    names = set()
    tree = ast.parse(path.read_text())
    for node in (_module_level(tree) if import_time_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package,forbidden", [
    ("training", ("braingui.ui", "PySide6", "pyqtgraph")),
    ("braingui/inference", ("braingui.ui", "PySide6", "pyqtgraph", "vtk")),
])
def test_static_import_boundaries(package, forbidden):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_core_modules_import_no_torch_statically():
    """Core modules may reach the heavy layers lazily (inside functions), never at import time."""
    offenders = []
    for path in sorted((ROOT / "braingui").glob("*.py")):
        for name in _imports_of(path, import_time_only=True):
            if name.split(".")[0] in ("torch", "monai", "medcam", "PySide6", "pyqtgraph", "vtk", "vtkmodules"):
                offenders.append(f"{path.name} imports {name}")
    assert not offenders, offenders
