"""The PyInstaller build's inputs, checked without building (fast; no torch, no Qt).

* every package data file (model bundles, assets: what ``pyproject.toml``'s package-data ships) is in the
  spec's data list (``packaging/datafiles.py``), at its package path;
* every non-Python file under ``braingui/`` is package data (else neither the wheel nor the app has it);
* the self-test imports every third-party module that braingui imports (lazily too), and the spec names
  every vtk module braingui imports (each is a separate binary that PyInstaller only collects when told);
* ``braingui.app.selftest`` stays torch- and Qt-free at import; the CLI knows ``--selftest``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "braingui.spec"
sys.path.insert(0, str(PACKAGING))
import datafiles  # noqa: E402

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _pyproject_patterns() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["tool"]["setuptools"]["package-data"]["braingui"])


def _glob_regex(pattern: str) -> re.Pattern:
    """setuptools package-data glob -> regex over package-relative POSIX paths (``**`` spans folders)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _non_python_files(package_dir: Path) -> set[str]:
    """Every file under the package that is not Python source / bytecode (package-relative POSIX paths)."""
    found = set()
    for folder, dirs, files in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith((".py", ".pyc", ".pyo")) and name not in datafiles.SKIP_NAMES:
                found.add((Path(folder) / name).relative_to(package_dir).as_posix())
    return found


def _package_data(package_dir: Path, patterns: list[str]) -> set[str]:
    regexes = [_glob_regex(p) for p in patterns]
    return {f for f in _non_python_files(package_dir) if any(r.match(f) for r in regexes)}


def test_spec_names_every_package_data_file():
    expected = {f"braingui/{f}" for f in _package_data(ROOT / "braingui", _pyproject_patterns())}
    assert datafiles.relative_targets(ROOT) == expected
    for src, dest in datafiles.data_files(ROOT):
        rel = Path(src).resolve().relative_to(ROOT)
        assert dest == rel.parent.as_posix(), f"{rel} would land in {dest}"


def test_every_non_python_file_in_the_package_is_package_data():
    package_dir = ROOT / "braingui"
    missing = _non_python_files(package_dir) - _package_data(package_dir, _pyproject_patterns())
    assert not missing, (f"files under braingui/ that pyproject.toml's [tool.setuptools.package-data] does not "
                         f"ship (so neither the wheel nor the frozen app has them): {sorted(missing)}")


def test_datafiles_on_a_package_with_bundles_and_assets(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    pkg = tmp_path / "braingui"
    files = ["models/demo-segresnet/manifest.json", "models/demo-segresnet/weights.pt",
             "models/demo-densenet169/manifest.json", "models/demo-densenet169/weights.pt",
             "models/demo-densenet169/cards/README.md", "assets/braingui.png", "assets/braingui.ico"]
    ignored = ["__init__.py", "models/__pycache__/x.cpython-311.pyc", "ui/app.py", "models/.DS_Store"]
    for f in files + ignored:
        (pkg / f).parent.mkdir(parents=True, exist_ok=True)
        (pkg / f).write_bytes(b"x")
    assert datafiles.relative_targets(tmp_path) == {f"braingui/{f}" for f in files}
    assert _package_data(pkg, _pyproject_patterns()) == set(files)
    pairs = dict(datafiles.data_files(tmp_path))
    assert pairs[str(pkg / "models/demo-densenet169/cards/README.md")] == "braingui/models/demo-densenet169/cards"
    assert len(pairs) == len(files)


def test_datafiles_patterns_are_pyprojects():
    assert list(datafiles.package_data_patterns(ROOT)) == _pyproject_patterns()


def test_spec_compiles_and_takes_its_data_from_datafiles():
    text = SPEC.read_text(encoding="utf-8")
    compile(text, str(SPEC), "exec")
    assert "datas=datafiles.data_files(ROOT)" in text
    assert "entry.py" in text and (PACKAGING / "entry.py").is_file()


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _third_party_imports() -> set[str]:
    names = set()
    for path in (ROOT / "braingui").rglob("*.py"):
        names |= _imports(path)
    return {n for n in names if n.split(".")[0] not in sys.stdlib_module_names and n.split(".")[0] != "braingui"}


def test_selftest_imports_what_braingui_imports():
    from braingui.app.selftest import LAZY_IMPORTS

    tops = {m.split(".")[0] for m in LAZY_IMPORTS}
    missing = sorted(n for n in _third_party_imports() if n.split(".")[0] not in tops)
    assert not missing, f"add these to braingui.app.selftest.LAZY_IMPORTS: {missing}"


def test_spec_and_selftest_name_every_vtk_module_braingui_imports():
    from braingui.app.selftest import LAZY_IMPORTS

    spec = SPEC.read_text(encoding="utf-8")
    vtk = sorted(n for n in _third_party_imports() if n.startswith("vtkmodules."))
    assert vtk, "braingui imports no vtk module any more? then drop vtk from the spec"
    for name in vtk:
        assert f'"{name}"' in spec, f"{name}: add it to the spec's hiddenimports"
        assert name in LAZY_IMPORTS, f"{name}: add it to braingui.app.selftest.LAZY_IMPORTS"


def test_selftest_module_is_torch_and_qt_free():
    code = ("import sys, braingui.app.selftest; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'monai', 'PySide6', 'pyqtgraph', 'vtkmodules'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"


def test_cli_selftest_options():
    from braingui.app.cli import build_parser

    args = build_parser().parse_args(["--selftest", "--selftest-out", "x", "--models", "m"])
    assert args.selftest and args.selftest_out == "x" and args.models == "m"
    assert not build_parser().parse_args([]).selftest


def test_build_script_is_bash_and_keeps_its_venv_out_of_git():
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    subprocess.run(["bash", "-n", str(PACKAGING / "build.sh")], check=True)
    assert ".venv-build/" in (ROOT / ".gitignore").read_text().split()
