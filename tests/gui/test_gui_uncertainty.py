"""The segmentation pane's uncertainty toggle, its legend, the volume ranges and the quality flags in the
panel, and the test-time augmentation setting."""

from __future__ import annotations

import numpy as np
import pytest

from braingui.display import colormaps, planes
from braingui.uncertainty import LEGEND, display_values
from gui_helpers import fake_result, isolated_dirs, make_window, open_and_wait, small_case_dir  # noqa: F401

pytestmark = pytest.mark.usefixtures("isolated_dirs")


def _with_uncertainty(case):
    result = fake_result(case)
    unc = np.zeros(case.grid.shape, np.float32)
    unc[result.labels > 0] = 0.3  # views disagree inside the tumour only
    result.uncertainty, result.tta_views = unc, 4
    result.uncertainty_regions = {"WT": {"mean": 0.3, "volume_ml_range": [40.2, 43.9]},
                                  "TC": {"mean": 0.2, "volume_ml_range": [10.0, 11.0]},
                                  "ET": {"mean": 0.1, "volume_ml_range": [3.0, 3.5]}}
    result.quality_flags = [{"code": "far_component", "message": "a tumour component lies 34 mm from the main lesion"}]
    return result


def test_uncertainty_toggle_shows_the_map_with_outlines_and_its_legend(qtbot, small_case_dir):
    win = make_window(qtbot)
    open_and_wait(qtbot, win, small_case_dir)
    assert not win.look.uncertainty.isEnabled()  # nothing to show before an analysis with TTA
    win.ctx.set_result(_with_uncertainty(win.ctx.case))
    win.ctx.jump_to_tumour()
    assert win.look.uncertainty.isEnabled() and not win.uncertainty_bar.isVisibleTo(win)
    seg = win.panes.views["segmentation"]
    labels = planes.display_slice(win.ctx.labels, "axial", win.ctx.slice_index)
    np.testing.assert_array_equal(seg.layer_image("fill"), colormaps.label_rgba(labels))
    win.look.uncertainty.setChecked(True)
    unc = planes.display_slice(display_values(win.ctx.result.uncertainty), "axial", win.ctx.slice_index)
    np.testing.assert_array_equal(seg.layer_image("fill"), colormaps.heat_rgba(unc, LEGEND["colormap"]))
    np.testing.assert_array_equal(seg.layer_image("outline"), colormaps.outline_rgba(labels))
    assert win.uncertainty_bar.isVisibleTo(win) and win.uncertainty_bar.value_range == LEGEND["range"]
    assert "Uncertainty (4 flipped views)" in seg.label_text("title")
    win.look.uncertainty.setChecked(False)
    np.testing.assert_array_equal(seg.layer_image("fill"), colormaps.label_rgba(labels))
    assert seg.layer_image("outline") is None and not win.uncertainty_bar.isVisibleTo(win)


def test_panel_shows_volume_ranges_across_views_and_the_quality_flags(qtbot, small_case_dir):
    win = make_window(qtbot)
    open_and_wait(qtbot, win, small_case_dir)
    result = _with_uncertainty(win.ctx.case)
    win.results.show_result(result)
    wt = win.results.volume_labels[("WT", "model")]
    assert wt.text() == f"{result.volumes_ml['WT']:.1f} (40-44 across 4 views)" and "0.300" in wt.toolTip()
    assert win.results.quality_box.isVisibleTo(win) and "far_component" in win.results.quality.text()
    result.quality_flags = []
    win.results.show_result(result)
    assert "no flag raised" in win.results.quality.text()


def test_tta_setting_reaches_the_analysis_options(qtbot):
    from braingui.ui.main_window import MainWindow
    from braingui.ui.settings import Settings

    win = MainWindow(Settings(read_only=True, tta=False))
    qtbot.addWidget(win)
    assert win.analysis_options["tta"] == 1
    explicit = MainWindow(Settings(read_only=True, tta=False), analysis_options={"tta": 8})
    qtbot.addWidget(explicit)
    assert explicit.analysis_options["tta"] == 8  # --tta N wins over the setting
    action = next(a for a in win.findChildren(type(win.menuBar().actions()[0])) if "Test-time" in a.text())
    action.setChecked(True)
    assert win.settings.tta and win.analysis_options["tta"] is None


def test_rano_diameters_are_drawn_on_their_slice_and_the_ruler_reads_mm(qtbot, small_case_dir):
    from braingui.measurements import measure

    win = make_window(qtbot)
    open_and_wait(qtbot, win, small_case_dir)
    result = fake_result(win.ctx.case)
    result.measurements = measure(result.labels, win.ctx.case.grid.affine)
    win.ctx.set_result(result)
    win.results.show_result(result)
    lesion = result.measurements.lesions[0]
    win.ctx.set_slice(lesion.slice_index)
    seg_view = win.panes.views["overlay"]
    win.panes.refresh()
    kinds = [s.kind for s in seg_view.segments]
    assert kinds[:2] == ["longest", "perpendicular"] and f"{lesion.longest_mm:.0f} mm" in seg_view.segments[0].label
    assert "Measurements" in win.results.measure.text() and "lesion" in win.results.measure.text()
    win.look.measurements.setChecked(False)
    win.panes.refresh()
    assert seg_view.segments == []
    # the ruler: a Ctrl+drag in any pane (the view's signal), shown in every pane with its length
    seg_view.sigRuler.emit(0.0, 0.0, 0.0, 10.0)
    win.panes.refresh()
    (ruler,) = win.panes.views["original"].segments
    col_mm = win.ctx.case.grid.spacing[0]  # axial columns run along x
    assert ruler.kind == "ruler" and ruler.label == f"{10 * col_mm:.1f} mm"
    win.ctx.step_slice(1)  # a new slice: the ruler measured the old one
    win.panes.refresh()
    assert win.ctx.ruler is None and win.panes.views["original"].segments == []
