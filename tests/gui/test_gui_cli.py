"""The GUI branch of the command line where there is no screen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gui_helpers import small_case_dir  # noqa: F401 - fixture
from helpers import REPO_ROOT

pytestmark = pytest.mark.gui


def _run(*args, env_extra=None):
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", **(env_extra or {})}  # no DISPLAY, no QT_QPA_PLATFORM
    return subprocess.run([sys.executable, "-m", "braingui.app", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT, env=env)


def test_no_display_is_one_line_not_a_qt_abort(tmp_path):
    proc = _run(env_extra={"XDG_CONFIG_HOME": str(tmp_path)})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("braingui: error: no display") and "--no-gui" in lines[0]


def test_screenshot_needs_no_display_and_without_models_fails_with_a_message(tmp_path, small_case_dir):
    out = tmp_path / "shot.png"
    proc = _run("--case", small_case_dir, "--models", tmp_path, "--screenshot", out,
                env_extra={"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data"),
                           "BRAINGUI_BUNDLED_MODELS": str(tmp_path)})
    assert out.exists() and out.read_bytes()[:4] == b"\x89PNG"
    assert proc.returncode == 1 and "No model bundles found" in proc.stderr  # tmp_path holds no bundle
    assert "Traceback" not in proc.stderr

