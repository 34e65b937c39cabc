"""What the panes draw besides the slices: orientation letters off the anatomy, the Grad-CAM pane over the
dimmed anatomy, and the named window controls (pytest-qt, offscreen).

Expectations come from the volumes themselves (the head is where any modality is non-zero, cut with
:func:`braingui.display.planes.display_slice`), not from the panes' code.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF

from braingui.display import colormaps, planes
from braingui.ui.pane_grid import GRADCAM_DIM
from braingui.ui.slice_view import SIDES
from gui_helpers import (analysed_window, fake_result, isolated_dirs, make_window, open_and_wait,  # noqa: F401 - fixtures
                         small_case_dir)

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("isolated_dirs")]


def head_slice(ctx) -> np.ndarray:
    """``(rows, cols)`` bool of the current slice: True where any modality is non-zero."""
    cut = [planes.display_slice(v, ctx.plane, ctx.slice_index, ctx.convention) for v in ctx.case.images.values()]
    return np.any([c != 0 for c in cut], axis=0)


def pixels_under(view, rect: QRectF, shape2d) -> tuple[slice, slice] | None:
    """Row and column ranges of the display pixels a viewport rectangle covers (``None``: off the slice)."""
    corners = [view.viewport_to_pixel(QPointF(x, y)) for x in (rect.left(), rect.right())
               for y in (rect.top(), rect.bottom())]
    rows, cols = [c[0] for c in corners], [c[1] for c in corners]
    r0, r1 = max(int(np.floor(min(rows))), 0), min(int(np.floor(max(rows))), shape2d[0] - 1)
    c0, c1 = max(int(np.floor(min(cols))), 0), min(int(np.floor(max(cols))), shape2d[1] - 1)
    if r0 > r1 or c0 > c1:
        return None
    return slice(r0, r1 + 1), slice(c0, c1 + 1)


def settle(qtbot, win) -> None:
    qtbot.wait(50)  # the deferred re-fit after the window's resize
    win.panes.reset_zoom()
    qtbot.wait(10)


@pytest.fixture
def analysed(qtbot, small_case_dir):
    win = analysed_window(qtbot, small_case_dir)
    settle(qtbot, win)
    return win


@pytest.mark.parametrize("plane", planes.PLANES)
def test_orientation_letters_lie_outside_the_image_or_on_zero_pixels(qtbot, analysed, plane):
    win = analysed
    win.ctx.set_plane(plane)
    settle(qtbot, win)
    head = head_slice(win.ctx)
    assert head.any()
    for key, view in win.panes.views.items():
        letters = view.letter_rects()
        assert set(letters) == set(SIDES)
        port = QRectF(0, 0, view.viewport().width(), view.viewport().height())
        for side, rect in letters.items():
            assert view.label_text(side) in "RLAPSI" and port.contains(rect), (key, side, rect)
            under = pixels_under(view, rect, view.shape2d)
            if under is None or not rect.intersects(view.image_rect()):
                continue
            assert not head[under].any(), f"{key} pane: letter {view.label_text(side)} covers the head"
        # the letters are at the middle of their edge of the head, on the right side of it
        mid = view.image_rect().center()
        assert letters["left"].right() < mid.x() < letters["right"].left()
        assert letters["top"].bottom() < mid.y() < letters["bottom"].top()


def test_letters_go_outside_the_image_where_the_head_fills_it(qtbot, small_case_dir):
    from braingui.case import load_case

    case = load_case(small_case_dir)
    for m in list(case.images):  # no zero voxel left: the head fills the grid, no blank pixels to use
        case.images[m] = case.images[m] + np.float32(1.0)
    win = make_window(qtbot)
    win.set_case(case)
    settle(qtbot, win)
    for key, view in win.panes.views.items():
        image = view.image_rect()
        for side, rect in view.letter_rects().items():
            assert not rect.intersects(image), (key, side, rect, image)


def test_zoomed_in_the_letters_stay_in_the_pane_and_are_drawn(qtbot, analysed):
    view = analysed.panes.views["original"]
    view.vb.scaleBy((0.25, 0.25))  # 4x zoom: the head now reaches past every edge
    qtbot.wait(20)
    port = QRectF(0, 0, view.viewport().width(), view.viewport().height())
    picture = view.grab().toImage()
    for side, rect in view.letter_rects().items():
        assert port.contains(rect), (side, rect)
        colours = {picture.pixelColor(int(x), int(y)).name() for x in np.linspace(rect.left(), rect.right() - 1, 12)
                   for y in np.linspace(rect.top(), rect.bottom() - 1, 12)}
        # the yellow letter and its dark outline are both there
        assert any(picture.pixelColor(0, 0).name() != c for c in colours)
        assert {c for c in colours if int(c[1:3], 16) > 200 and int(c[5:7], 16) < 120}, (side, colours)


def _pixel_colour(view, image, row: int, col: int):
    ry, rx = view.pixel_mm
    p = view.view_to_viewport((col + 0.5) * rx, (row + 0.5) * ry)
    return image.pixelColor(int(p.x()), int(p.y()))


def test_a_flat_gradcam_shows_the_dimmed_anatomy_inside_the_head_and_black_outside(qtbot, analysed):
    win, ctx = analysed, analysed.ctx
    result = fake_result(ctx.case)
    result.cams = {result.predicted_class: np.zeros(ctx.case.grid.shape, np.float32)}  # a map with nothing in it
    ctx.set_result(result)
    settle(qtbot, win)
    view = win.panes.views["gradcam"]
    rgba = view.layer_image("base")
    head = head_slice(ctx)
    assert rgba is not None and rgba.shape == head.shape + (4,) and (rgba[..., 3] == 255).all()
    grey = colormaps.grey_rgba(planes.display_slice(ctx.image, ctx.plane, ctx.slice_index, ctx.convention),
                               *ctx.window)[..., 0].astype(float)
    a = ctx.heat_opacity
    # inside the head: the anatomy at reduced brightness under the colour of 0 (jet: dark blue)
    expected_red = GRADCAM_DIM * (1 - a) * grey
    assert np.abs(rgba[..., 0][head] - expected_red[head]).max() <= 1.0
    bright = head & (grey > 60)
    assert bright.any() and (rgba[..., 0][bright] > 0).all() and (rgba[..., 0][bright] < grey[bright]).all()
    assert (rgba[..., 2][head] >= np.round(a * colormaps.heat_lut(ctx.colormap)[0, 2]) - 1).all()
    # outside the head: black
    assert (rgba[~head][:, :3] == 0).all() and (~head).any()
    # and that is what the pane paints
    picture = view.grab().toImage()
    inside = np.argwhere(bright)[len(np.argwhere(bright)) // 2]
    outside = np.argwhere(~head)[0]
    assert _pixel_colour(view, picture, *inside).red() > 0
    c = _pixel_colour(view, picture, *outside)
    assert (c.red(), c.green(), c.blue()) == (0, 0, 0)


def test_the_gradcam_pane_shows_the_heat_colour_where_the_map_is_hot(analysed):
    ctx = analysed.ctx
    heat = planes.display_slice(ctx.heat, ctx.plane, ctx.slice_index, ctx.convention)
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    rgba = analysed.panes.views["gradcam"].layer_image("base")
    colour = colormaps.heat_rgba(heat[r:r + 1, c:c + 1], ctx.colormap)[0, 0, :3].astype(float)
    a = ctx.heat_opacity
    assert np.all(rgba[r, c, :3] >= np.floor(a * colour) - 1)  # the heat colour's share is there in full
    # before the analysis there is no map, and the pane says so instead of showing anatomy
    ctx.set_result(None)
    assert analysed.panes.views["gradcam"].layer_image("base") is None
    assert "after the analysis" in analysed.panes.views["gradcam"].label_text("message")


def test_the_window_controls_are_named_and_say_their_units(qtbot, analysed):
    look, ctx = analysed.look, analysed.ctx
    for key, box in (("low", look.win_lo), ("high", look.win_hi)):
        label = look.win_labels[key]
        assert label.text() == f"Window {key}" and label.buddy() is box and label.isVisible()
        assert box.accessibleName() == f"Window {key}"
        assert ("black" if key == "low" else "white") in box.toolTip() and "intensity units" in box.toolTip()
    lo, hi = ctx.window
    assert look.win_lo.value() == pytest.approx(lo, abs=0.05) and look.win_hi.value() == pytest.approx(hi, abs=0.05)
    assert look.win_units.text() == f"level {(lo + hi) / 2:.1f}, width {hi - lo:.1f} (image intensity units)"
    look.win_hi.setValue(hi + 100.0)
    assert ctx.window[1] == pytest.approx(hi + 100.0, abs=0.05)
    assert f"width {hi + 100.0 - lo:.1f}" in look.win_units.text()
