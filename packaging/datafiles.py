"""The package data files of braingui that the frozen app must carry (the model bundles, assets ...).

One list for two users: ``packaging/braingui.spec`` passes :func:`data_files` to PyInstaller's
``Analysis(datas=...)``, and ``tests/test_packaging_spec.py`` compares it with its own walk of the
package, so a data file that the wheel ships but the frozen app would miss fails a fast test.

The patterns are those of ``[tool.setuptools.package-data]`` in ``pyproject.toml`` (read here, so there
is one place to add a pattern); :data:`DEFAULT_PATTERNS` is the fallback on Python 3.10, which has no
``tomllib``. No third-party imports: the spec runs this inside PyInstaller.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "braingui"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATTERNS = ("models/**/*", "assets/*")
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = {".py", ".pyc", ".pyo"}
SKIP_NAMES = {".DS_Store", "Thumbs.db"}


def package_data_patterns(root: str | os.PathLike = ROOT) -> tuple[str, ...]:
    """The ``braingui`` globs of ``[tool.setuptools.package-data]`` (relative to the package folder)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return DEFAULT_PATTERNS
    with open(Path(root) / "pyproject.toml", "rb") as fh:
        config = tomllib.load(fh)
    patterns = config.get("tool", {}).get("setuptools", {}).get("package-data", {}).get(PACKAGE)
    return tuple(patterns) if patterns else DEFAULT_PATTERNS


def _wanted(path: Path, package_dir: Path) -> bool:
    rel = path.relative_to(package_dir)
    return (path.is_file() and path.suffix not in SKIP_SUFFIXES and path.name not in SKIP_NAMES
            and not SKIP_DIRS & set(rel.parts[:-1]))


def data_files(root: str | os.PathLike = ROOT) -> list[tuple[str, str]]:
    """``(source file, destination folder)`` pairs for PyInstaller, sorted, each file once.

    The destination keeps the package layout (``braingui/models/<bundle>``), so code that finds its
    data next to its modules (``braingui.inference.locate.PACKAGE_MODELS``) works unchanged when frozen.
    Folders that do not exist yet (e.g. ``models/`` before the demo bundles are exported) add nothing.
    """
    package_dir = Path(root).resolve() / PACKAGE
    found: dict[str, str] = {}
    for pattern in package_data_patterns(root):
        for path in package_dir.glob(pattern):
            if _wanted(path, package_dir):
                dest = Path(PACKAGE) / path.parent.relative_to(package_dir)
                found[str(path)] = dest.as_posix()
    return sorted(found.items())


def relative_targets(root: str | os.PathLike = ROOT) -> set[str]:
    """The data files as package-relative POSIX paths as they land in the app (``braingui/models/x/manifest.json``)."""
    return {f"{dest}/{Path(src).name}" for src, dest in data_files(root)}


if __name__ == "__main__":  # python packaging/datafiles.py: list what the app will carry
    for src, dest in data_files():
        print(f"{dest}/{Path(src).name}")
