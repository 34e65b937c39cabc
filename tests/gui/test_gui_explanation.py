"""The Explanation panel and the heat maps on demand (pytest-qt, offscreen): wording and severity, the numbers
against the explanation dict, the quick -> full update, another class's map, another method, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from braingui.display import explanation_view as xv
from braingui.results import ProgressEvent
from braingui.ui.cam_requests import CamRequests
from gui_helpers import (blob_cam, fake_cam_factory, fake_explanation, fake_result,  # noqa: F401
                         isolated_dirs, make_window, open_and_wait, shifted_cam, small_case_dir)

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("isolated_dirs")]


@pytest.fixture
def win(qtbot, small_case_dir):
    """A window with the small case open (no analysis yet)."""
    w = make_window(qtbot)
    open_and_wait(qtbot, w, small_case_dir)
    return w


def cam_requests(win, factory=None) -> CamRequests:
    """The window's :class:`CamRequests` (made here until the main window makes its own), with ``factory``."""
    cams = getattr(win, "cam_requests", None)
    if cams is None:
        cams = win.cam_requests = CamRequests(win)
    if factory is not None:
        cams.factory = factory
    return cams


def number(text: str) -> float:
    """``"38.2 %"`` -> 0.382, ``"6.33x"`` -> 6.33."""
    return float(text.rstrip(" %x")) / (100 if text.endswith("%") else 1)


def assert_table_matches(panel, e: dict) -> None:
    """Each localisation number shown equals the dict's, against the model's WT and the reference labels."""
    ref = e.get("reference")
    for key, name in xv.LOCALISATION_ROWS:
        for column, source in ((1, e), (2, ref)):
            if source is None:
                assert (name, column) not in panel.cells
                continue
            shown = panel.cells[(name, column)].text()
            if key == "peak_in_wt":
                assert shown == ("yes" if source[key] else "no")
            else:
                assert number(shown) == pytest.approx(source[key], abs=0.0051 if key == "enrichment" else 0.00051)


def test_a_good_map_is_explained_in_words_with_its_numbers(qtbot, win):
    result = fake_result(win.ctx.case, explanation="full")
    cam_requests(win).show_analysis(result)
    panel, e = win.results.explanation, result.explanation
    assert panel.isVisible() and not panel.heading.isVisible()
    assert e["enrichment"] > 3 and e["peak_in_wt"]  # the stand-in blob sits on the tumour
    assert panel.verdict.text().startswith(f"{100 * e['mass_in_wt']:.0f} % of the heat lies in the tumour, which is "
                                           f"{100 * e['wt_fraction_of_brain']:.0f} % of the brain")
    assert "FLAIR moved the call most (-38 %)" in panel.verdict.text()
    assert panel.verdict.text().endswith("Sanity check passed.")
    assert_table_matches(panel, e)
    assert panel.cells[("Sanity check", 1)].text() == "passed (Spearman 0.21)"
    assert panel.cells[("Deletion gain", 1)].text() == "+0.243"
    assert not panel.pending.isVisible()
    assert panel.choice() == ("gradcam", "features.denseblock1")


def test_a_poor_map_says_so_plainly_in_a_red_heading(qtbot, win):
    case = win.ctx.case
    result = fake_result(case)
    result.cams["G"] = cam = 1.0 - blob_cam(result.labels)  # hot everywhere but at the tumour, outside the head too
    result.explanation = e = fake_explanation(case, result.labels, cam, "G")
    cam_requests(win).show_analysis(result)
    panel = win.results.explanation
    assert e["enrichment"] < 1 and e["mass_outside_brain"] > 0.5 and not e["peak_in_brain"]
    assert panel.heading.isVisible()
    assert panel.heading.text().startswith("This map is poor: most of its heat lies outside the brain; it is worse "
                                           "than a uniform map at the tumour")
    assert xv.COLOURS["poor"] in panel.heading.styleSheet()
    assert xv.COLOURS["poor"] in panel.cells[("Enrichment (1 = chance)", 1)].styleSheet()
    assert "This map is poor" not in panel.verdict.text()
    assert_table_matches(panel, e)
    e["verdict"] = "This map is poor: the pipeline's own words. Second sentence."  # a stored verdict is shown as is
    cam_requests(win).show_analysis(result)
    assert panel.heading.text() == "This map is poor: the pipeline's own words."
    assert panel.verdict.text() == "Second sentence."


def test_the_full_explanation_replaces_the_computing_line(qtbot, win):
    case = win.ctx.case
    cams = cam_requests(win)
    cams.show_analysis(fake_result(case, explanation="quick"), partial=True)
    panel = win.results.explanation
    assert panel.pending.isVisible() and panel.pending.text() == xv.PENDING_TEXT
    assert panel.cells[("Sanity check", 1)].text() == xv.COMPUTING
    win.ctx.set_cam_class(None)  # the user looks elsewhere meanwhile ...
    final = fake_result(case, explanation="full")
    cams.show_analysis(final)
    assert not panel.pending.isVisible() and xv.PENDING_TEXT not in panel.text()
    assert panel.cells[("Sanity check", 1)].text() == "passed (Spearman 0.21)"
    assert win.ctx.result is final


def test_a_partial_result_of_the_analysis_shows_first(qtbot, small_case_dir):
    """Through the main window: an analysis that yields its partial result (quick) before the final one."""
    def analysis(case):
        def job(cancel):
            yield ProgressEvent("explanation", 0.5, 0.0, "quick part", partial=fake_result(case, explanation="quick"))
            while not release.is_set() and not cancel.is_set():
                yield ProgressEvent("explanation", 0.6, 0.0, "deletion curve")
                threading.Event().wait(0.01)
            return fake_result(case, explanation="full")
        return job

    release = threading.Event()
    w = make_window(qtbot, analysis_factory=analysis)
    open_and_wait(qtbot, w, small_case_dir)
    w.run_analysis()
    panel = w.results.explanation
    qtbot.waitUntil(lambda: panel.pending.isVisible(), timeout=10000)
    assert w.ctx.result is not None and w.ctx.heat is not None and w.ctx.result.labels is not None
    with qtbot.waitSignal(w.analysis_done, timeout=10000):
        release.set()
    assert not panel.pending.isVisible()


def test_choosing_another_class_starts_one_job_then_shows_its_map(qtbot, win):
    calls: list = []
    cams = cam_requests(win, fake_cam_factory(calls))
    result = fake_result(win.ctx.case, explanation="full")
    cams.show_analysis(result)
    combo = win.look.cam_class
    assert combo.isEnabled() and combo.count() == 3
    i = combo.findData("A")
    assert combo.itemText(i).endswith("compute")
    with qtbot.waitSignal(cams.map_shown, timeout=10000) as shown:
        combo.activated.emit(i)  # what a click on the item does
    assert shown.args == ["A"] and [c for c, _ in calls] == ["A"]
    assert calls[0][1]["method"] == "gradcam" and calls[0][1]["layer"] == "features.denseblock1"
    assert win.ctx.cam_class == "A" and combo.currentData() == "A"
    np.testing.assert_array_equal(win.ctx.heat, shifted_cam(result.labels, "A"))
    assert not combo.itemText(combo.findData("A")).endswith("compute")
    panel = win.results.explanation
    assert "astrocytoma (A) \u2014 not the predicted class" in panel.title.text()
    assert cams.explanation_of("A")["level"] == "full" and not panel.pending.isVisible()
    # "why G" beside "why not A": both columns, the predicted first, each number the dict's
    assert panel.comparison is not None and panel.comparison.codes == ("G", "A")
    for code, e in (("G", result.explanation), ("A", cams.explanation_of("A"))):
        assert number(panel.compare_cells[("Heat in the tumour", code)].text()) == pytest.approx(e["mass_in_wt"], abs=5e-4)
    assert cams.explanation_of("A")["mass_in_wt"] < result.explanation["mass_in_wt"]  # the shifted blob misses more
    # cached: back to G and to A again, no second job
    combo.activated.emit(combo.findData("G"))
    assert win.ctx.cam_class == "G" and panel.title.text().endswith("glioblastoma (G)")
    combo.activated.emit(combo.findData("A"))
    assert win.ctx.cam_class == "A" and len(calls) == 1


def test_another_method_recomputes_the_shown_map_and_keeps_the_segmentation(qtbot, win):
    calls: list = []
    cams = cam_requests(win, fake_cam_factory(calls))
    result = fake_result(win.ctx.case, explanation="full")
    labels = result.labels
    cams.show_analysis(result)
    panel = win.results.explanation
    panel.method.setCurrentIndex(panel.method.findData("hirescam"))
    panel.layer.setCurrentIndex(panel.layer.findData("features.transition2"))
    with qtbot.waitSignal(cams.map_shown, timeout=10000):
        panel.layer.activated.emit(panel.layer.currentIndex())
    assert [(c, o["method"], o["layer"]) for c, o in calls] == [("G", "hirescam", "features.transition2")]
    assert result.explanation["method"] == "hirescam" and result.cam_layer == "features.transition2"
    assert set(result.cams) == {"G"} and win.ctx.result.labels is labels
    assert panel.title.text() == "HiResCAM at transition 2, glioblastoma (G)"
    assert panel.choice() == ("hirescam", "features.transition2")
    # another class at the new method; then the old method again: cached, no job
    with qtbot.waitSignal(cams.map_shown, timeout=10000):
        win.look.cam_class.activated.emit(win.look.cam_class.findData("O"))
    assert calls[-1][0] == "O" and calls[-1][1]["method"] == "hirescam"
    with qtbot.waitSignal(cams.map_shown, timeout=10000):  # O at Grad-CAM is not cached: O, then G (cached) stays
        cams.request_method("gradcam", "features.denseblock1")
    assert calls[-1][0] == "O" and calls[-1][1]["method"] == "gradcam" and len(calls) == 3
    assert result.explanation["method"] == "gradcam" and set(result.cams) == {"G", "O"}



def test_every_method_is_listed_with_what_its_map_shows(qtbot, win):
    from PySide6.QtCore import Qt

    box = win.results.explanation.method
    assert [box.itemData(i) for i in range(box.count())] == list(xv.CAM_METHODS)
    i = box.findData("hirescam-contrastive")
    assert box.itemText(i) == "Contrastive HiResCAM"
    assert "against the other classes" in box.itemData(i, Qt.ItemDataRole.ToolTipRole)
    assert all(box.itemData(j, Qt.ItemDataRole.ToolTipRole) for j in range(box.count()))


def test_a_map_job_can_be_cancelled_and_a_failed_one_says_why(qtbot, win):
    hold = threading.Event()
    calls: list = []
    cams = cam_requests(win, fake_cam_factory(calls, hold=hold))
    cams.show_analysis(fake_result(win.ctx.case, explanation="full"))
    cams.request_class("O")
    assert cams.running is not None and cams.stop.isVisibleTo(win) and "oligodendroglioma" in cams.status.text()
    assert "Computing the map of oligodendroglioma" in win.results.explanation.pending.text()
    cams.cancel()
    qtbot.waitUntil(lambda: not win.runner.is_running(), timeout=10000)
    assert cams.running is None and not cams.stop.isVisibleTo(win)
    assert win.ctx.cam_class == "G" and "O" not in win.ctx.result.cams and cams.explanation_of("O") is None

    def broken(case, result, code, options):
        def job(cancel):
            yield ProgressEvent("grad-cam", 0.0, 0.0)
            from braingui.errors import BrainguiError
            raise BrainguiError("unknown CAM layer 'x'")
        return job

    cams.factory = broken
    with qtbot.waitSignal(cams.failed, timeout=10000) as failed:
        cams.request_class("A")
    assert failed.args == ["Could not compute the heat map: unknown CAM layer 'x'"]
    assert win.ctx.cam_class == "G" and win.last_error is None  # a status line, not a dialog


def test_a_map_that_came_without_its_explanation_gets_one_when_shown(qtbot, win):
    calls: list = []
    cams = cam_requests(win, fake_cam_factory(calls))
    result = fake_result(win.ctx.case, explanation="full")
    pipeline_map = blob_cam(result.labels) * np.float32(0.5)
    result.cams["A"] = pipeline_map  # a full run maps every class, explaining the predicted one only
    cams.show_analysis(result)
    assert not calls
    win.look.cam_class.activated.emit(win.look.cam_class.findData("A"))
    assert win.ctx.heat is pipeline_map  # shown at once, then explained by one job
    assert "Computing the explanation of this map" in win.results.explanation.pending.text()
    qtbot.waitUntil(lambda: cams.explanation_of("A") is not None and cams.running is None, timeout=10000)
    assert [c for c, _ in calls] == ["A"] and win.ctx.cam_class == "A"
    assert win.results.explanation.view.title.startswith("Grad-CAM at dense block 1, astrocytoma (A)")


def test_old_maps_are_let_go_beyond_the_limit(qtbot, win, monkeypatch):
    from braingui.ui import cam_requests as cr

    monkeypatch.setattr(cr, "MAX_KEPT", 0)
    calls: list = []
    cams = cam_requests(win, fake_cam_factory(calls))
    cams.show_analysis(fake_result(win.ctx.case, explanation="full"))
    with qtbot.waitSignal(cams.map_shown, timeout=10000):
        cams.request_method("layercam", "features.denseblock2")
    qtbot.waitUntil(lambda: cams.running is None, timeout=10000)
    assert set(cams.maps) == {("layercam", "features.denseblock2", "G")}  # the Grad-CAM map went
    with qtbot.waitSignal(cams.map_shown, timeout=10000):
        cams.request_method("gradcam", "features.denseblock1")  # so it is computed again
    assert [o["method"] for _, o in calls] == ["layercam", "gradcam"]
