"""End to end: the window runs the real inference pipeline (tiny bundles, CPU) in its worker thread;
``braingui --case ... --screenshot`` writes a PNG; start-up does not import torch."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest

from braingui.display import colormaps, planes
from gui_helpers import isolated_dirs, make_window, open_and_wait  # noqa: F401 - fixtures
from helpers import REPO_ROOT, run_cli

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("isolated_dirs")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny phantom case and a models folder with the tiny segmentation and classification bundles."""
    pytest.importorskip("torch")
    ih = pytest.importorskip("inference_helpers")
    root = tmp_path_factory.mktemp("tiny")
    return ih.write_tiny_case(root / "case"), ih.make_models_dir(root / "models")


def test_window_runs_the_real_pipeline_and_shows_its_result(qtbot, tiny):
    from braingui.ui.main_window import MainWindow
    from braingui.ui.settings import Settings

    case_dir, models = tiny
    win = MainWindow(Settings(auto_analyse=False), analysis_options={"models_dir": str(models), "device": "cpu"})
    qtbot.addWidget(win)
    win.show()
    stages = []
    win.runner.progress.connect(lambda _jid, ev: stages.append(ev.stage))
    open_and_wait(qtbot, win, case_dir)
    with qtbot.waitSignal(win.analysis_done, timeout=120000) as blocker:
        win.run_analysis()
    result = blocker.args[0]
    assert {"load models", "segmentation", "classification", "done"} <= set(stages)
    assert {m.name for m in result.models} == {"tiny-segresnet", "tiny-densenet"}
    assert win.ctx.result is result and result.labels is not None and result.predicted_class in result.cams
    k = win.ctx.slice_index
    expect = planes.display_slice(result.labels, "axial", k)
    np.testing.assert_array_equal(win.panes.views["segmentation"].layer_image("fill"), colormaps.label_rgba(expect))
    heat = planes.display_slice(result.cams[result.predicted_class], "axial", k)
    head = np.any([planes.display_slice(v, "axial", k) != 0 for v in win.ctx.case.images.values()], axis=0)
    overlay_heat = colormaps.heat_rgba(heat).copy()
    overlay_heat[~head, 3] = 0  # inside the head only
    np.testing.assert_array_equal(win.panes.views["overlay"].layer_image("heat"), overlay_heat)
    assert win.panes.views["gradcam"].layer_image("base") is not None  # the map over the dimmed anatomy
    assert not win.results.demo_banner.isHidden()  # the tiny bundles are demo models
    assert set(win.results.prob_bars) == set(result.class_names)
    assert "cpu" in win.results.run_info.text()


def test_screenshot_command_writes_the_window_png(tmp_path, tiny):
    case_dir, models = tiny
    out = tmp_path / "shot.png"
    proc = run_cli("--case", case_dir, "--models", models, "--device", "cpu", "--screenshot", out, timeout=300,
                   env_extra={"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert (width, height) == (1600, 1000)
    assert not (tmp_path / "cfg" / "braingui" / "settings.json").exists()  # a screenshot run saves no settings


def test_the_window_opens_without_importing_torch():
    code = ("import sys\nfrom braingui.ui.app import create_app\napp = create_app()\n"
            "from braingui.ui.main_window import MainWindow\nfrom braingui.ui.settings import Settings\n"
            "w = MainWindow(Settings(read_only=True)); w.show(); app.processEvents()\n"
            "assert w.isVisible()\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai')))\n"
            "w.close()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                          env={"PYTHONPATH": str(REPO_ROOT), "QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
