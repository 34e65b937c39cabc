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


def test_screenshot_of_a_case_that_does_not_open_writes_nothing(tmp_path):
    case = tmp_path / "broken_case"
    case.mkdir()
    (case / "flair.nii.gz").write_bytes(b"not a nifti file at all")
    out = tmp_path / "shot.png"
    proc = _run("--case", case, "--screenshot", out, env_extra={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert proc.returncode == 1 and "braingui: error:" in proc.stderr
    assert "wrote" not in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*"))
    assert [p.name for p in case.iterdir()] == ["flair.nii.gz"]  # nothing written into the case folder



@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_closes_the_app_cleanly(tmp_path, small_case_dir, signame):
    import signal
    import time

    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen",
           "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "BRAINGUI_BUNDLED_MODELS": str(tmp_path)}  # no models: the window just shows the case
    proc = subprocess.Popen([sys.executable, "-m", "braingui.app", "--case", str(small_case_dir), "--models",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT, env=env)
    time.sleep(6)  # the window is up (start-up is ~1-2 s here; the machine may be busy)
    assert proc.poll() is None, proc.communicate()[1]
    sig = getattr(signal, signame)
    t0 = time.perf_counter()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + int(sig) and time.perf_counter() - t0 < 5
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert ("interrupted" if signame == "SIGINT" else "terminated") in err
