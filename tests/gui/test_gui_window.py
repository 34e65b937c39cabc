"""The main window (pytest-qt, offscreen): panes, slider, planes, errors, export, settings."""

from __future__ import annotations

import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtWidgets import QMessageBox

from braingui.display import colormaps, planes
from braingui.ui.pane_grid import gradcam_rgba
from gui_helpers import (analysed_window, fake_result, isolated_dirs, make_window, open_and_wait,  # noqa: F401 - fixtures
                         small_case_dir)

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("isolated_dirs")]


def expected_panes(case, result, plane, index, convention="radiological", modality="flair"):
    """What each pane must show, built from the volumes with the display transform."""
    img = planes.display_slice(case.images[modality], plane, index, convention)  # float, windowed below
    lab = planes.display_slice(result.labels, plane, index, convention) if result is not None else None
    heat = planes.display_slice(result.cams[result.predicted_class], plane, index, convention) if result else None
    return img, lab, heat


def assert_panes_show(win, plane, index):
    case, result = win.ctx.case, win.ctx.result
    img, lab, heat = expected_panes(case, result, plane, index, win.ctx.convention, win.ctx.modality)
    v = win.panes.views
    for key in ("segmentation", "original", "overlay"):
        np.testing.assert_array_equal(v[key].layer_image("base"), colormaps.grey_rgba(img, *win.ctx.window))
    if result is not None:
        np.testing.assert_array_equal(v["segmentation"].layer_image("fill"), colormaps.label_rgba(lab))
        head = np.any([planes.display_slice(vol, plane, index, win.ctx.convention) != 0
                       for vol in case.images.values()], axis=0)
        np.testing.assert_array_equal(v["gradcam"].layer_image("base"), gradcam_rgba(
            colormaps.grey_rgba(img, *win.ctx.window), colormaps.heat_rgba(heat, win.ctx.colormap), head,
            win.ctx.heat_opacity))
        overlay_heat = colormaps.heat_rgba(heat, win.ctx.colormap).copy()
        overlay_heat[~head, 3] = 0  # the overlay shows the map inside the head only
        np.testing.assert_array_equal(v["overlay"].layer_image("heat"), overlay_heat)
        np.testing.assert_array_equal(v["overlay"].layer_image("outline"), colormaps.outline_rgba(lab))


@pytest.fixture
def analysed(qtbot, small_case_dir):
    """A window with the small case open and the stand-in analysis done."""
    return analysed_window(qtbot, small_case_dir)


def test_loading_a_case_shows_the_centre_slice_and_the_analysis_moves_to_the_largest_tumour(qtbot, small_case_dir):
    win = make_window(qtbot)
    open_and_wait(qtbot, win, small_case_dir)
    shape = win.ctx.case.grid.shape
    assert win.ctx.plane == "axial" and win.ctx.slice_index == shape[2] // 2
    assert_panes_show(win, "axial", shape[2] // 2)
    with qtbot.waitSignal(win.analysis_done, timeout=10000):
        win.run_analysis()
    area = planes.per_slice(win.ctx.result.labels > 0, "axial")
    assert win.ctx.slice_index == int(area.argmax()) != shape[2] // 2  # the test case's largest slice is off-centre
    assert_panes_show(win, "axial", win.ctx.slice_index)
    # the tumour is on that slice, so the seg and outline layers are not blank
    assert win.panes.views["segmentation"].layer_image("fill")[..., 3].any()
    assert win.panes.views["overlay"].layer_image("outline")[..., 3].any()
    assert win.slice_controls.slice_label.text() == f"{win.ctx.slice_index + 1} / {shape[2]}"


def test_the_analysis_keeps_a_slice_the_user_chose(qtbot, small_case_dir):
    win = make_window(qtbot)
    open_and_wait(qtbot, win, small_case_dir)
    win.slice_controls.slider.setValue(3)  # the user drags the slider to slice 3 of n
    with qtbot.waitSignal(win.analysis_done, timeout=10000):
        win.run_analysis()
    assert win.ctx.slice_index == 2 and win.slice_controls.slice_label.text().startswith("3 / ")


def test_moving_the_slider_changes_every_pane(analysed):
    win = analysed
    before = {k: v.layer_image(v.layers[0]).copy() for k, v in win.panes.views.items()}
    new = win.ctx.slice_index - 6
    win.slice_controls.slider.setValue(new + 1)  # the slider counts from 1
    assert win.ctx.slice_index == new
    for key, view in win.panes.views.items():
        assert not np.array_equal(view.layer_image(view.layers[0]), before[key]), key
    assert_panes_show(win, "axial", new)
    assert win.slice_controls.slice_label.text().startswith(f"{new + 1} /")


@pytest.mark.parametrize("plane,sides", [("coronal", ("R", "L", "S", "I")), ("sagittal", ("A", "P", "S", "I"))])
def test_plane_switch_shows_the_slice_through_the_cursor(analysed, qtbot, plane, sides):
    win = analysed
    cursor = win.ctx.cursor
    qtbot.mouseClick(win.slice_controls.plane_buttons[plane], Qt.MouseButton.LeftButton)
    assert win.ctx.plane == plane
    index = cursor[planes.NORMAL_AXIS[plane]]
    assert win.ctx.slice_index == index
    assert_panes_show(win, plane, index)
    shape2d = planes.slice_shape(win.ctx.case.grid.shape, plane)
    assert win.panes.views["original"].layer_image("base").shape[:2] == shape2d
    v = win.panes.views["overlay"]
    assert tuple(v.label_text(s) for s in ("left", "right", "top", "bottom")) == sides
    assert win.slice_controls.slider.maximum() == planes.n_slices(win.ctx.case.grid.shape, plane)


def test_keys_and_wheel_move_the_slice_and_switch_planes(analysed, qtbot):
    win = analysed
    start = win.ctx.slice_index
    qtbot.keyClick(win, Qt.Key.Key_Up)
    assert win.ctx.slice_index == start + 1
    qtbot.keyClick(win, Qt.Key.Key_PageDown)
    assert win.ctx.slice_index == start + 1 - 10
    win.panes.views["gradcam"].vb.sigWheel.emit(-2)
    assert win.ctx.slice_index == start - 11
    qtbot.keyClick(win, Qt.Key.Key_S)
    assert win.ctx.plane == "sagittal"
    qtbot.keyClick(win, Qt.Key.Key_3)
    assert win.ctx.modality == "t1ce"
    assert_panes_show(win, "sagittal", win.ctx.slice_index)


def test_convention_flips_left_and_right_only(analysed):
    win = analysed
    radio = win.panes.views["original"].layer_image("base").copy()
    win.ctx.set_convention("neurological")
    neuro = win.panes.views["original"].layer_image("base")
    np.testing.assert_array_equal(neuro, radio[:, ::-1])
    assert win.panes.views["original"].label_text("left") == "L"


def test_click_moves_the_linked_crosshair_and_the_readout(analysed):
    win = analysed
    view = win.panes.views["gradcam"]
    view.sigCursor.emit(10.5, 20.5)  # (row, col) of a click in display pixels
    expect = planes.pixel_to_voxel(10, 20, win.ctx.slice_index, win.ctx.case.grid.shape, "axial")
    assert win.ctx.cursor == expect
    for v in win.panes.views.values():
        assert v.crosshair() == pytest.approx((10, 20))
    value = win.ctx.case.images["flair"][expect]
    assert f"FLAIR {value:.4g}" in win.readout.text()
    assert "Grad-CAM" in win.readout.text() and "label" in win.readout.text()
    assert win.readout.cursorPosition() == 0 and win.readout.isReadOnly()  # shows the start of a long line


def test_linked_zoom(analysed):
    win = analysed
    v = win.panes.views
    v["original"].vb.setRange(xRange=(10, 60), yRange=(10, 60), padding=0)
    for key in ("segmentation", "gradcam", "overlay"):
        (x0, x1), (y0, y1) = v[key].vb.viewRange()  # aspect locking may widen one axis a little
        assert (x0 + x1) / 2 == pytest.approx(35, abs=0.5) and (y0 + y1) / 2 == pytest.approx(35, abs=0.5)
        assert min(x1 - x0, y1 - y0) == pytest.approx(50, rel=0.05)


def test_jump_buttons(analysed, qtbot):
    win = analysed
    qtbot.mouseClick(win.slice_controls.tumour_button, Qt.MouseButton.LeftButton)
    area = planes.per_slice(win.ctx.labels > 0, "axial")
    assert area[win.ctx.slice_index] == area.max()
    win.ctx.set_plane("coronal")
    qtbot.mouseClick(win.slice_controls.hot_button, Qt.MouseButton.LeftButton)
    heat = win.ctx.heat
    assert heat[win.ctx.cursor] == heat.max()


def test_window_level_by_right_drag_and_control(analysed):
    win = analysed
    lo, hi = win.ctx.window
    win.panes.views["original"].sigWindowDrag.emit(40.0, 0.0)  # drag right: wider window
    lo2, hi2 = win.ctx.window
    assert hi2 - lo2 > hi - lo
    win.look.win_lo.setValue(100.0)
    win.look.win_hi.setValue(200.0)
    assert win.ctx.window == (100.0, 200.0)
    shown = win.panes.views["original"].layer_image("base")[..., 0].astype(int)
    value = planes.display_slice(win.ctx.image, "axial", win.ctx.slice_index)
    assert (shown[value <= 100] == 0).all() and (shown[value >= 200] == 255).all()
    inside = (value > 110) & (value < 190)
    assert inside.any() and ((shown[inside] > 0) & (shown[inside] < 255)).all()


def test_a_pane_paints_its_layers_blended_in_their_colours(analysed):
    """What the segmentation pane paints (a grab) is its layers composed into one image: inside edema the
    label colour over the anatomy at the fill's opacity, red as red (the BGRA byte order of the one image)."""
    from braingui.labels import LABEL_COLOURS

    win = analysed
    win.look.seg_opacity.setValue(60)
    view = win.panes.views["segmentation"]
    base, fill = view.layer_image("base"), view.layer_image("fill")
    labels = planes.display_slice(win.ctx.labels, "axial", win.ctx.slice_index)
    interior = (labels == 2) & np.roll(labels == 2, 2, 0) & np.roll(labels == 2, -2, 0) \
        & np.roll(labels == 2, 2, 1) & np.roll(labels == 2, -2, 1)  # edema 2 pixels deep: no scaled edge
    assert interior.any()
    r, c = np.argwhere(interior)[len(np.argwhere(interior)) // 2]
    a = fill[r, c, 3] / 255 * 0.6
    expect = (1 - a) * base[r, c, :3] + a * np.array(LABEL_COLOURS[2])
    np.testing.assert_allclose(view.shown_image()[r, c, 2::-1], expect, atol=2.0)  # B, G, R -> R, G, B; Qt rounds
    ry, rx = view.pixel_mm
    point = view.view_to_viewport((c + 0.5) * rx, (r + 0.5) * ry)
    colour = view.grab().toImage().pixelColor(int(point.x()), int(point.y()))
    np.testing.assert_allclose([colour.red(), colour.green(), colour.blue()], expect, atol=3.0)


def test_the_crosshair_is_painted_through_the_cursor_across_the_whole_pane(analysed):
    """Two lines in the crosshair's colour through the cursor's pixel centre, from edge to edge of the pane
    (also over the black outside the head), and nowhere else."""
    from braingui.ui.slice_view import CROSSHAIR_COLOUR

    win = analysed
    view = win.panes.views["original"]
    row, col = view.crosshair()
    ry, rx = view.pixel_mm
    at = view.view_to_viewport((col + 0.5) * rx, (row + 0.5) * ry)
    img = view.grab().toImage()
    pen = CROSSHAIR_COLOUR
    a = pen.alpha() / 255
    expect = np.array([pen.red(), pen.green(), pen.blue()]) * a  # over black

    def rgb(x, y):
        c = img.pixelColor(int(x), int(y))
        return np.array([c.red(), c.green(), c.blue()])

    y, x = int(at.y()), int(at.x())
    for probe in (rgb(3, y), rgb(img.width() - 3, y), rgb(x, img.height() - 3)):  # the pane's black margins
        np.testing.assert_allclose(probe, expect, atol=3.0)
    assert rgb(3, y + 6).max() < 10 and rgb(x + 6, img.height() - 3).max() < 10  # beside the lines: black


def test_opacity_and_colormap_controls(analysed):
    win = analysed
    win.look.seg_opacity.setValue(25)
    assert win.panes.views["segmentation"].layer_opacity("fill") == pytest.approx(0.25)
    win.look.colormap.setCurrentIndex(win.look.colormap.findData("inferno"))
    win.look.colormap.activated.emit(win.look.colormap.currentIndex())
    assert win.colorbar.colormap == "inferno"
    np.testing.assert_array_equal(win.colorbar.bar_colours(), colormaps.heat_lut("inferno"))
    assert_panes_show(win, "axial", win.ctx.slice_index)


def test_results_panel_shows_prediction_volumes_and_demo_warning(analysed):
    win = analysed
    res = win.results
    assert "Glioblastoma" in res.prediction.text()
    p = win.ctx.result.probabilities["G"]  # the heading says what the bar says (99.5 % is not "100 %")
    assert res.prediction.text().endswith(f"{p:.1%}") and res.prob_bars["G"].format() == f"{p:.1%}"
    assert res.prob_bars["G"].value() == 700
    assert not res.demo_banner.isHidden()
    assert res.volume_labels[("WT", "model")].text() == f"{win.ctx.result.volumes_ml['WT']:.1f}"
    assert res.volume_labels[("WT", "reference")].text() == f"{win.ctx.case.region_volumes_ml()['WT']:.1f}"
    assert "cpu (stand-in)" in res.run_info.text()


def test_model_cards_are_readable_and_a_synthetic_classifier_is_flagged(qtbot, small_case_dir):
    """Card metrics read as one line (no per-case dump); a classifier trained on phantoms says so."""
    from braingui.results import ModelInfo
    from braingui.ui.results_panel import SYNTHETIC_CLASSIFIER, ResultsPanel

    from braingui.case import load_case

    panel = ResultsPanel()
    qtbot.addWidget(panel)
    result = fake_result(load_case(small_case_dir))
    seg_card = {"metrics": {"n_cases": 2, "cases": ["case_a", "case_b"], "dice": {"ET": 0.8212, "TC": 0.6535, "WT": 0.8404},
                            "hd95_mm": {"ET": 3.0, "TC": 12.37, "WT": 8.62}, "per_case": [{"case": "case_a", "dice_ET": 0.7448}]},
                "intended_use": "research demonstration - not for clinical use"}
    cls_card = {"synthetic_training_data": True, "metrics": {"n_cases": 60, "balanced_accuracy": 0.98333,
                                                             "gradcam": {"cam_mass_in_wt_mean": 0.2329}}}
    result.models = [ModelInfo("seg", "segmentation", "/x", "1" * 64, True, seg_card),
                     ModelInfo("cls", "classification", "/y", "2" * 64, True, cls_card)]
    panel.show_result(result)
    text = panel.models_text()
    assert "Dice ET 0.821 \u00b7 TC 0.653 \u00b7 WT 0.84" in text and "HD95 ET 3 \u00b7 TC 12.4 \u00b7 WT 8.62 mm" in text
    assert "on 2 cases (case_a, case_b)" in text and "dice_ET" not in text and "per_case" not in text
    assert "balanced accuracy 0.983" in text and "Grad-CAM mass inside the whole tumour 23%" in text
    assert not panel.note.isHidden() and panel.note.text() == SYNTHETIC_CLASSIFIER
    assert "Glioblastoma" in panel.prediction.text()
    result.models = result.models[:1]
    panel.show_result(result)
    assert panel.note.isHidden() and SYNTHETIC_CLASSIFIER not in panel.models_text()


def test_a_broken_case_shows_an_error_dialog_naming_the_file(qtbot, small_case_dir, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a, **k: shown.append((title, text)))
    broken = tmp_path / "broken"
    shutil.copytree(small_case_dir, broken)
    t1 = next(broken.glob("*_t1.nii.gz"))
    t1.write_bytes(t1.read_bytes()[:200])  # truncated
    win = make_window(qtbot)
    with qtbot.waitSignal(win.job_failed, timeout=10000):
        win.open_case(broken)
    assert len(shown) == 1
    assert t1.name in shown[0][1]
    assert "Traceback" not in shown[0][1]
    assert win.ctx.case is None


def test_export_writes_nifti_on_the_input_grid_png_and_json(analysed, tmp_path):
    win = analysed
    out = tmp_path / "export"
    out.mkdir()
    win.ctx.set_plane("coronal")
    written = win.export_to(out)
    case = win.ctx.case
    folder = out / case.case_id
    names = {p.name for p in written}
    assert {"segmentation.nii.gz", "gradcam.nii.gz", "results.json"} <= names
    assert all(p.parent == folder for p in written)
    src_seg = nib.load(str(case.files.seg))
    for name in ("segmentation.nii.gz", "gradcam.nii.gz"):
        img = nib.load(str(folder / name))
        np.testing.assert_allclose(img.affine, src_seg.affine, atol=1e-6)
        assert img.shape == src_seg.shape
    # the stand-in segmentation is the case's own label map, so the round trip must give the file back
    np.testing.assert_array_equal(np.asarray(nib.load(str(folder / "segmentation.nii.gz")).dataobj),
                                  np.asarray(src_seg.dataobj))
    png = folder / f"panes_coronal{win.ctx.slice_index + 1}.png"
    assert png in written and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((folder / "results.json").read_text())
    assert data["case_id"] == case.case_id and data["not_for_clinical_use"] is True and data["predicted_class"] == "G"
    assert data["view"]["plane"] == "coronal" and png.name in data["exported_files"]
    assert not [p for p in os.listdir(folder) if p.startswith(".")]  # no temp files left
    assert all(p.stat().st_mode & 0o044 for p in written)  # readable by others, unlike a bare temp file
    assert win.default_export_dir().resolve() == out.resolve()


def test_export_to_a_missing_folder_shows_an_error(analysed, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a, **k: shown.append(text))
    assert analysed.export_to(tmp_path / "nowhere") == []
    assert len(shown) == 1 and "nowhere" in shown[0]


def test_default_export_dir_is_never_the_case_folder(analysed):
    win = analysed
    win.settings.export_dir = str(win.ctx.case.files.folder)
    assert win.default_export_dir().resolve() != win.ctx.case.files.folder.resolve()


def test_drop_a_folder_opens_it_and_recent_cases_are_stored(qtbot, small_case_dir, isolated_dirs):
    from braingui.ui.settings import Settings

    win = make_window(qtbot)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(small_case_dir))])

    class Drop:  # a synthetic QDropEvent aborts PySide6 6.12 at teardown; the handler only needs these two
        accepted = False

        def mimeData(self):
            return mime

        def acceptProposedAction(self):
            self.accepted = True

    drop = Drop()
    with qtbot.waitSignal(win.case_loaded, timeout=10000):
        win.dropEvent(drop)
    assert drop.accepted
    stored = Settings.load()
    assert stored.recent_cases[0] == str(small_case_dir.resolve())
    assert (isolated_dirs / "xdg_config_home" / "braingui" / "settings.json").exists()
    assert [a.text() for a in win.recent_menu.actions()] == [str(small_case_dir.resolve())]


def test_reference_labels_show_before_the_analysis(qtbot, small_case_dir):
    win = make_window(qtbot)
    case = open_and_wait(qtbot, win, small_case_dir)
    expect = planes.display_slice(case.labels, "axial", win.ctx.slice_index)
    np.testing.assert_array_equal(win.panes.views["segmentation"].layer_image("fill"), colormaps.label_rgba(expect))
    assert win.panes.views["segmentation"].label_text("title") == "Reference labels"
    assert win.panes.views["gradcam"].layer_image("base") is None
    assert "after the analysis" in win.panes.views["gradcam"].label_text("message")


def test_typing_in_the_window_box_is_not_taken_as_a_shortcut(qtbot, small_case_dir):
    win = make_window(qtbot)
    open_and_wait(qtbot, win, small_case_dir)
    box = win.look.win_lo
    box.setFocus()
    box.lineEdit().selectAll()
    before = (win.ctx.plane, win.ctx.modality, win.ctx.slice_index)
    qtbot.keyClicks(box.lineEdit(), "12")            # 1, 2 would pick FLAIR / T1
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Left)  # Left would step a slice
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_S)     # S would switch to sagittal
    assert (win.ctx.plane, win.ctx.modality, win.ctx.slice_index) == before
    assert box.lineEdit().text().startswith("12")
