"""``--screenshot`` with hostile model bundles (issue 14, item 4): it never waits for its timeout and never
prints a traceback - a deeply nested or huge-integer manifest is skipped with a message."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from gui_helpers import small_case_dir  # noqa: F401 - fixture
from helpers import REPO_ROOT

pytestmark = pytest.mark.gui


def _hostile(folder, kind: str) -> None:
    folder.mkdir(parents=True)
    text = {"nested": "[" * 100_000 + "]" * 100_000,
            "huge int": json.dumps({"format_version": 1, "name": "x", "task": "segmentation",
                                    "network": {"name": "SegResNet", "kwargs": {"init_filters": 10 ** 40}}})}[kind]
    (folder / "manifest.json").write_text(text)


def test_screenshot_with_only_hostile_bundles_ends_at_once_with_a_message(tmp_path, small_case_dir):
    models = tmp_path / "models"
    _hostile(models / "nested", "nested")
    _hostile(models / "huge", "huge int")
    user = tmp_path / "data" / "braingui" / "models"
    _hostile(user / "nested", "nested")  # a broken bundle in the user data folder too
    out = tmp_path / "shot.png"
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen",
           "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "BRAINGUI_BUNDLED_MODELS": str(tmp_path / "none")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "braingui.app", "--case", str(small_case_dir), "--models", str(models),
                           "--screenshot", str(out)], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, env=env)
    assert time.monotonic() - start < 120
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "No model bundles found" in proc.stderr
    assert out.exists()  # the window was still shown and saved
