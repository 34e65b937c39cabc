"""The optional 3D view: tumour label surfaces inside a faint brain surface (vtk), in world millimetres.

Created lazily, on demand, and only where Qt has a real display: under ``QT_QPA_PLATFORM=offscreen``
the vtk widget renders garbage (DESIGN.md), so :func:`surface_supported` says no and the window shows
a message instead. Meshing (:func:`label_surfaces`, :func:`brain_surface`) is plain vtk and works
without any display (tests use it).
"""

from __future__ import annotations

import numpy as np

from braingui.labels import LABEL_COLOURS
from braingui.display.colormaps import LABEL_ORDER

LABEL_OPACITY = {2: 0.30, 1: 0.85, 4: 0.85}
"""Edema translucent so the core and the enhancing rim inside it stay visible."""
UNSUPPORTED_PLATFORMS = ("offscreen", "minimal", "vnc", "linuxfb")


def surface_supported() -> tuple[bool, str]:
    """``(True, "")`` where an OpenGL window can be shown, else ``(False, reason)``."""
    from PySide6.QtGui import QGuiApplication

    name = QGuiApplication.platformName()
    if name in UNSUPPORTED_PLATFORMS:
        return False, f"the 3D view needs a screen with OpenGL (Qt platform '{name}')"
    try:
        from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import problem means: no 3D view
        return False, f"vtk cannot be used here ({type(exc).__name__}: {exc})"
    return True, ""


def _image_data(volume: np.ndarray):
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData

    img = vtkImageData()
    img.SetDimensions(*volume.shape)
    img.GetPointData().SetScalars(numpy_to_vtk(np.asarray(volume).ravel(order="F"), deep=True))
    return img


def _to_world(poly, affine: np.ndarray, smooth: int = 0):
    """Smooth (windowed sinc, ``smooth`` iterations) and map voxel-index coordinates through ``affine``."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    from vtkmodules.vtkCommonTransforms import vtkTransform
    from vtkmodules.vtkFiltersCore import vtkWindowedSincPolyDataFilter
    from vtkmodules.vtkFiltersGeneral import vtkTransformFilter

    src = poly
    if smooth:
        sm = vtkWindowedSincPolyDataFilter()
        sm.SetInputData(poly)
        sm.SetNumberOfIterations(smooth)
        sm.SetPassBand(0.1)
        sm.NormalizeCoordinatesOn()
        sm.Update()
        src = sm.GetOutput()
    m = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(affine[r, c]))
    tr = vtkTransform()
    tr.SetMatrix(m)
    f = vtkTransformFilter()
    f.SetInputData(src)
    f.SetTransform(tr)
    f.Update()
    return f.GetOutput()


def label_surfaces(labels: np.ndarray, affine: np.ndarray, smooth: int = 0) -> dict:
    """One surface per tumour label present.

    Args:
        labels: uint8 ``(X, Y, Z)`` internal labels on the canonical grid.
        affine: the canonical voxel -> world affine (``case.grid.affine``).
        smooth: windowed-sinc smoothing iterations (0: the exact voxel boundary).

    Returns:
        label value -> ``vtkPolyData`` in world mm (voxel boundaries half a voxel outside the centres).
    """
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

    out = {}
    for value in LABEL_ORDER:
        mask = labels == value
        if not mask.any():
            continue
        fe = vtkDiscreteFlyingEdges3D()
        fe.SetInputData(_image_data(mask.astype(np.uint8)))
        fe.SetValue(0, 1)
        fe.Update()
        out[value] = _to_world(fe.GetOutput(), affine, smooth)
    return out


def brain_surface(image: np.ndarray, affine: np.ndarray, step: int = 2):
    """A coarse surface of the non-zero voxels of ``image`` (every ``step``-th voxel) in world mm."""
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

    mask = (np.asarray(image)[::step, ::step, ::step] != 0).astype(np.uint8)
    fe = vtkDiscreteFlyingEdges3D()
    fe.SetInputData(_image_data(mask))
    fe.SetValue(0, 1)
    fe.Update()
    scale = np.diag([step, step, step, 1.0])
    return _to_world(fe.GetOutput(), affine @ scale, smooth=10)


def make_surface_window(ctx, parent):
    """The 3D window (a top-level ``QWidget``) bound to ``ctx``; call only when :func:`surface_supported`."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QVBoxLayout, QWidget
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
    from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkRenderer
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401 - registers the OpenGL back end

    class SurfaceWindow(QWidget):
        def __init__(self):
            super().__init__(parent, Qt.WindowType.Window)
            self.setWindowTitle("braingui \u2014 3D tumour surfaces (edema translucent)")
            self.resize(640, 600)
            self.vtk = QVTKRenderWindowInteractor(self)
            QVBoxLayout(self).addWidget(self.vtk)
            self.renderer = vtkRenderer()
            self.renderer.SetBackground(0.08, 0.08, 0.09)
            self.vtk.GetRenderWindow().AddRenderer(self.renderer)
            self.vtk.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
            self.vtk.Initialize()
            self._shown = None
            ctx.changed.connect(self.refresh)

        def refresh(self, what=None):
            labels = ctx.labels
            key = (id(ctx.case), id(labels))
            if what is not None and "data" not in what and "look" not in what or key == self._shown:
                return
            self._shown = key
            self.renderer.RemoveAllViewProps()
            if ctx.case is None:
                self.vtk.GetRenderWindow().Render()
                return
            affine = ctx.case.grid.affine
            meshes = [(brain_surface(ctx.case.images["flair"], affine), (0.75, 0.75, 0.75), 0.08)]
            if labels is not None:
                for value, poly in label_surfaces(labels, affine, smooth=15).items():
                    meshes.append((poly, tuple(c / 255 for c in LABEL_COLOURS[value]), LABEL_OPACITY[value]))
            for poly, colour, opacity in meshes:
                mapper = vtkPolyDataMapper()
                mapper.SetInputData(poly)
                mapper.ScalarVisibilityOff()
                actor = vtkActor()
                actor.SetMapper(mapper)
                actor.GetProperty().SetColor(*colour)
                actor.GetProperty().SetOpacity(opacity)
                self.renderer.AddActor(actor)
            cam = self.renderer.GetActiveCamera()
            cam.SetFocalPoint(0, 0, 0)
            cam.SetPosition(0, 1, 0.35)  # from the front (anterior, +y), a little above: patient right on screen left
            cam.SetViewUp(0, 0, 1)
            self.renderer.ResetCamera()
            self.vtk.GetRenderWindow().Render()

        def closeEvent(self, ev):
            ctx.changed.disconnect(self.refresh)
            self.vtk.Finalize()
            self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            super().closeEvent(ev)

    win = SurfaceWindow()
    win.refresh()
    return win


def show_surface_window(window) -> None:
    """Open (or raise) the 3D tumour view of a main window; a message where there is no OpenGL screen.

    Args:
        window: the :class:`~braingui.ui.main_window.MainWindow`; its ``surface_window`` holds the view
            (created on first use, ``None`` again once the view is destroyed).
    """
    from PySide6.QtWidgets import QMessageBox

    ok, why = surface_supported()
    if not ok:
        window.statusBar().showMessage(f"3D view unavailable: {why}", 10000)
        if window.interactive:
            QMessageBox.information(window, "3D view", f"The 3D view is not available: {why}.")
        return
    if window.surface_window is None:
        try:
            window.surface_window = make_surface_window(window.ctx, window)
        except Exception as exc:  # noqa: BLE001 - no OpenGL context and the like: the 2D app goes on
            window.show_error("3D view", f"The 3D view could not start: {type(exc).__name__}: {exc}")
            return
        window.surface_window.destroyed.connect(lambda *_: setattr(window, "surface_window", None))
    window.surface_window.show()
    window.surface_window.raise_()

