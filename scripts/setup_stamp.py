#!/usr/bin/env python3
"""Stamps that let scripts/setup.sh skip set-up steps whose inputs have not changed.

A stamp is a file ``<venv>/.setup-<name>.stamp`` holding the SHA-256 of the step's input files (names and
contents). A step is fresh when the venv's Python exists and its stamp matches the inputs now::

    python scripts/setup_stamp.py fresh .venv packages pyproject.toml scripts/setup.sh   # exit 0 fresh, 1 stale
    python scripts/setup_stamp.py write .venv packages pyproject.toml scripts/setup.sh
    python scripts/setup_stamp.py clear .venv system-libs

Standard library only: it runs with the system Python before the venv exists.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path


def stamp_path(venv: Path, name: str) -> Path:
    """The stamp file of step ``name`` inside ``venv``."""
    return Path(venv) / f".setup-{name}.stamp"


def venv_python(venv: Path) -> Path:
    """The venv's Python executable (``bin/python``; ``Scripts/python.exe`` on Windows)."""
    venv = Path(venv)
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def digest(inputs: list[Path]) -> str:
    """SHA-256 over the names and contents of ``inputs`` (a missing file counts as empty but differs by name)."""
    h = hashlib.sha256()
    for path in inputs:
        path = Path(path)
        data = path.read_bytes() if path.is_file() else b""
        h.update(f"{path.as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def is_fresh(venv: Path, name: str, inputs: list[Path]) -> bool:
    """Whether step ``name`` is done for these inputs: the venv's Python exists and the stamp matches."""
    if not venv_python(venv).exists():
        return False
    try:
        return stamp_path(venv, name).read_text(encoding="ascii").strip() == digest(inputs)
    except OSError:
        return False


def write(venv: Path, name: str, inputs: list[Path]) -> None:
    """Record step ``name`` as done for these inputs (atomic: a temp file renamed over the stamp)."""
    target = stamp_path(venv, name)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(digest(inputs) + "\n")
    os.replace(tmp, target)


def clear(venv: Path, name: str) -> None:
    """Forget step ``name`` (so it runs again)."""
    stamp_path(venv, name).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``fresh|write|clear VENV NAME [FILE...]``; returns the exit status (``fresh``: 0 fresh, 1 stale)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[0] not in ("fresh", "write", "clear"):
        print("usage: setup_stamp.py fresh|write|clear VENV NAME [FILE...]", file=sys.stderr)
        return 2
    action, venv, name, inputs = args[0], Path(args[1]), args[2], [Path(p) for p in args[3:]]
    if action == "fresh":
        return 0 if is_fresh(venv, name, inputs) else 1
    if action == "write":
        write(venv, name, inputs)
    else:
        clear(venv, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
