"""The optional 3D view: meshes land at the right world position; no 3D window without a screen."""

from __future__ import annotations

import numpy as np
import pytest

from gui_helpers import isolated_dirs, make_window, open_and_wait, small_case_dir  # noqa: F401 - fixtures

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("isolated_dirs")]


def test_label_surfaces_are_in_world_millimetres():
    pytest.importorskip("vtkmodules")
    from braingui.ui.surface_view import label_surfaces

    labels = np.zeros((20, 22, 24), dtype=np.uint8)
    labels[4:10, 5:12, 6:9] = 2     # edema block
    labels[12:14, 3:5, 10:20] = 4   # enhancing block
    affine = np.array([[2.0, 0, 0, -30.0], [0, 1.5, 0, 10.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]])
    meshes = label_surfaces(labels, affine)
    assert set(meshes) == {2, 4}
    for value, (lo, hi) in {2: ((4, 5, 6), (10, 12, 9)), 4: ((12, 3, 10), (14, 5, 20))}.items():
        b = meshes[value].GetBounds()  # the surface runs along the voxel boundaries, half a voxel out
        lo_w = affine[:3, :3] @ (np.array(lo) - 0.5) + affine[:3, 3]
        hi_w = affine[:3, :3] @ (np.array(hi) - 0.5) + affine[:3, 3]
        np.testing.assert_allclose(b[0::2], lo_w, atol=1e-4)
        np.testing.assert_allclose(b[1::2], hi_w, atol=1e-4)


def test_without_a_screen_the_3d_view_says_why_and_the_app_goes_on(qtbot, small_case_dir):
    from braingui.ui.surface_view import surface_supported

    ok, why = surface_supported()
    assert not ok and "offscreen" in why
    win = make_window(qtbot)
    open_and_wait(qtbot, win, small_case_dir)
    win.interactive = False  # no dialog in the test
    win.show_surface()
    assert win.surface_window is None
    assert "3D view unavailable" in win.statusBar().currentMessage()
