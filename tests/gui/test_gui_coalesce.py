"""Slider steps coalesced by the panes' 16 ms timer: a burst draws at most twice, the last change always
reaches the screen, and reading a pane never sees a stale slice."""

from __future__ import annotations

import numpy as np
import pytest

from braingui.ui.pane_grid import COALESCE_MS
from gui_helpers import isolated_dirs, make_window, open_and_wait, small_case_dir  # noqa: F401 - fixtures

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("isolated_dirs")]


def _shown_slice(view) -> int:
    return int(view._texts["info"].split()[-1].split("/")[0])  # the drawn caption, read without flushing


@pytest.fixture()
def win(qtbot, small_case_dir):
    w = make_window(qtbot)
    open_and_wait(qtbot, w, small_case_dir)
    qtbot.wait(3 * COALESCE_MS)
    return w


def test_a_burst_of_slider_changes_draws_twice_and_ends_on_the_last(qtbot, win):
    panes, slider = win.panes, win.slice_controls.slider
    start, n = panes.refresh_count, min(20, slider.maximum() - 2)
    for value in range(2, 2 + n):
        slider.setValue(value)
    assert panes.refresh_count - start == 1  # the first change drew at once, the rest wait for the timer
    assert panes.refresh_pending and _shown_slice(panes.views["original"]) == 2
    qtbot.waitUntil(lambda: not panes.refresh_pending, timeout=1000)
    assert panes.refresh_count - start == 2
    assert all(_shown_slice(v) == 1 + n for v in panes.views.values())  # slider value v is slice v (1-based)
    assert win.slice_controls.slice_label.text().startswith(f"{1 + n} /")  # the slider's own label: at once


def test_reading_a_pane_draws_a_waiting_change_first(qtbot, win):
    panes, slider = win.panes, win.slice_controls.slider
    slider.setValue(3)
    slider.setValue(5)  # within the interval: waits
    assert panes.refresh_pending and _shown_slice(panes.views["overlay"]) == 3
    base = panes.views["overlay"].layer_image("base")  # a reader flushes
    assert not panes.refresh_pending and _shown_slice(panes.views["overlay"]) == 5
    original = panes.views["original"]  # and the pane draws it: the composed image is of slice 5
    np.testing.assert_array_equal(original.shown_image()[..., 2::-1], original.layer_image("base")[..., :3])


def test_a_new_plane_is_drawn_at_once_even_inside_the_interval(qtbot, win):
    panes, slider = win.panes, win.slice_controls.slider
    slider.setValue(4)
    before = panes.refresh_count
    win.ctx.set_plane("coronal")
    assert panes.refresh_count == before + 1 and not panes.refresh_pending
    assert panes.views["original"]._texts["info"].startswith("coronal")


def test_a_slider_step_repaints_without_laying_the_window_out_again(qtbot, win):
    """The slice number and the cursor read-out change at every step; widgets whose size follows their text
    would make Qt lay the whole window out again each time (measured: about 5 % of a step's time)."""
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication

    class Count(QObject):
        n = 0

        def eventFilter(self, obj, ev):
            if ev.type() == QEvent.Type.LayoutRequest:
                Count.n += 1
            return False

    panes, slider, app = win.panes, win.slice_controls.slider, QApplication.instance()
    counter = Count()
    app.installEventFilter(counter)
    try:
        before = (win.slice_controls.slice_label.text(), win.readout.text())
        for value in range(2, 8):
            qtbot.waitUntil(lambda: not (panes.refresh_pending or panes._coalesce.isActive()), timeout=1000)
            slider.setValue(value)
            app.processEvents()
    finally:
        app.removeEventFilter(counter)
    assert (win.slice_controls.slice_label.text(), win.readout.text()) != before  # both did change
    assert Count.n <= 1, f"{Count.n} layout requests in 6 slider steps"
