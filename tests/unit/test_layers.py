"""The direction of imports is the architecture.

The import contracts live in pyproject.toml (``[tool.importlinter]``) and are checked statically by
import-linter (grimp reads every import statement, lazy ones inside functions included): app -> ui ->
inference | display -> core; the core imports neither torch, MONAI, medcam, Qt, pyqtgraph nor VTK; the
display model no torch, Qt or inference; inference no Qt or VTK; training never the UI. The tests here run
``lint-imports``, prove that it reports each kind of hole, keep the core lists in step with the files on
disk, and check at run time that the CLI starts without torch and Qt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {c["id"]: c for c in CONFIG["contracts"]}
HEAVY = {"torch", "monai", "medcam", "PySide6", "pyqtgraph", "vtk", "vtkmodules"}
QT_VTK = {"PySide6", "shiboken6", "pyqtgraph", "vtk", "vtkmodules"}


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the packages under ``tree`` with the pyproject.toml there (no cache written)."""
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code, "--no-cache", "--no-logo", str(tree / "pyproject.toml")],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def real_report() -> subprocess.CompletedProcess:
    return _lint_imports(ROOT)


def test_import_contracts_are_kept(real_report):
    out = real_report.stdout + real_report.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out, out
    assert real_report.returncode == 0, out


def _core_modules_on_disk() -> set[str]:
    return {p.stem for p in (ROOT / "braingui").glob("*.py") if p.stem != "__init__"}


def _subpackages_on_disk() -> set[str]:
    return {p.parent.name for p in (ROOT / "braingui").glob("*/__init__.py")}


def _layer_names(layer: str) -> set[str]:
    return {name.strip() for name in layer.replace("|", ":").split(":")}


def test_every_core_module_on_disk_is_in_the_contracts():
    """A new module directly in braingui/ is core: it must be in the core layer and in core-no-heavy."""
    core = _core_modules_on_disk()
    assert {"case", "nifti", "geometry", "preprocess", "labels", "results"} <= core  # the glob sees the core
    layers = CONTRACTS["layers"]
    assert layers["containers"] == ["braingui"] and layers["exhaustive"] is True
    assert _layer_names(layers["layers"][-1]) == core, "the lowest layer must list exactly the core modules"
    assert ":" in layers["layers"][-1] or len(core) == 1  # core modules may import each other
    assert set(CONTRACTS["core-no-heavy"]["source_modules"]) == {f"braingui.{m}" for m in core}
    higher = set().union(*(_layer_names(layer) for layer in layers["layers"][:-1]))
    assert higher == _subpackages_on_disk() == {"app", "ui", "inference", "display"}


def test_contracts_forbid_what_the_design_forbids():
    """Nobody can drop a forbidden name, or let indirect imports through, without this failing."""
    assert CONFIG["root_packages"] == ["braingui", "training"] and CONFIG["include_external_packages"] is True
    assert CONTRACTS["layers"]["layers"][:3] == ["app", "ui", "inference | display"]  # '|': independent
    expected = {
        "core-no-heavy": HEAVY | {"braingui.inference", "braingui.display", "braingui.ui", "braingui.app"},
        "display-no-heavy": HEAVY | {"braingui.inference"},
        "inference-no-qt": {"PySide6", "pyqtgraph", "vtk", "vtkmodules", "braingui.ui", "braingui.display"},
        "training-no-ui": {"braingui.ui", "braingui.app", "PySide6", "pyqtgraph", "vtk", "vtkmodules"},
        "package-root-light": HEAVY,
    }
    for cid, names in expected.items():
        contract = CONTRACTS[cid]
        assert contract["type"] == "forbidden"
        assert names <= set(contract["forbidden_modules"]), cid
        assert not contract.get("allow_indirect_imports", False) and not contract.get("ignore_imports"), cid


def _hole(module: str, code: str, expected: str):
    statement = next(text for text in code.splitlines() if "import" in text).strip()
    return pytest.param(module, code, expected, id=f"{module}:{statement}")


# Each hole is added to a copy of the tree; lint-imports must report it at the line where it was put.
# The first three are the holes that the old AST/import-time test let through.
HOLES = [
    _hole("braingui/case.py", "def _hole():\n    from PySide6.QtWidgets import QMessageBox\n",
          "braingui.case -> PySide6"),
    _hole("braingui/inference/gradcam.py", "from vtkmodules.vtkCommonCore import vtkObject\n",
          "braingui.inference.gradcam -> vtkmodules"),
    _hole("braingui/preprocess.py", "from braingui.inference import manifest\n",
          "braingui.preprocess -> braingui.inference.manifest"),
    _hole("braingui/display/planes.py", "class _Hole:\n    def method(self):\n        import torch\n",
          "braingui.display.planes -> torch"),
    _hole("braingui/display/planes.py", "def _hole():\n    from braingui.inference import networks\n",
          "braingui.display.planes -> braingui.inference.networks"),
    _hole("braingui/geometry.py", "try:\n    import vtk\nexcept ImportError:\n    vtk = None\n",
          "braingui.geometry -> vtk"),
    _hole("braingui/inference/predictor.py", "def _hole():\n    from braingui.display import colormaps\n",
          "braingui.inference.predictor -> braingui.display.colormaps"),
    _hole("training/common.py", "def _hole():\n    def inner():\n        from braingui.ui import slice_view\n",
          "training.common -> braingui.ui.slice_view"),
    _hole("braingui/__init__.py", "def _hole():\n    import monai\n", "braingui -> monai"),
    _hole("braingui/__init__.py", "def _hole():\n    from braingui.ui import slice_view\n",
          "braingui -> braingui.ui.slice_view"),
]


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    skip = shutil.ignore_patterns("__pycache__", "models", "assets", "*.pt")
    for package in CONFIG["root_packages"]:
        shutil.copytree(ROOT / package, tree / package, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


@pytest.mark.parametrize("module,code,expected", HOLES)
def test_contracts_report_each_hole(tmp_path, real_report, module, code, expected):
    tree = _copy_tree(tmp_path)
    path = tree / module
    before = path.read_text().rstrip("\n").splitlines()
    path.write_text("\n".join(before + ["", ""] + code.splitlines()) + "\n")
    line = len(before) + 2 + next(i for i, text in enumerate(code.splitlines(), 1) if "import" in text)
    report = _lint_imports(tree)
    out = report.stdout + report.stderr
    assert report.returncode == 1, out
    assert f"{expected} (l.{line})" in out, out
    assert expected not in real_report.stdout  # the hole is what it reports, not something already there


def test_a_new_core_module_is_reported_until_listed(tmp_path, real_report):
    tree = _copy_tree(tmp_path)
    (tree / "braingui" / "itk_hole.py").write_text('"""A new core module nobody listed."""\nimport torch\n')
    report = _lint_imports(tree)
    out = report.stdout + report.stderr
    assert report.returncode == 1, out
    assert "not listed as layers" in out and "- braingui.itk_hole" in out, out
    assert "braingui.itk_hole" not in real_report.stdout


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return {m.split(".")[0] for m in out.stdout.split()}


def test_cli_starts_without_torch_and_qt():
    """The app layer may import anything lazily; on the CLI's start-up path it must not."""
    loaded = _loaded_after("import braingui.app.cli")
    assert "braingui" in loaded
    assert not ({"torch", "monai", "medcam", "SimpleITK"} | QT_VTK) & loaded


def test_inference_pipeline_loads_torch_but_no_qt():
    loaded = _loaded_after("import braingui.inference.pipeline")
    assert "torch" in loaded
    assert not QT_VTK & loaded
