"""One pane: a 2D slice with optional label fill, heat map, label outlines and a crosshair.

Mouse (as in ITK-SNAP): left click / drag moves the crosshair; wheel steps through slices (Ctrl+wheel
zooms); middle drag or Shift+left drag pans; right drag sets window/level (horizontal: width, vertical:
level). The pane works in millimetres: one display pixel is ``pixel_size`` mm, so anisotropic voxels
keep their true aspect.

Images arrive as display slices (:func:`braingui.display.planes.display_slice`, row 0 at the top) and are
drawn with pyqtgraph in row-major order with the y axis pointing down.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QTransform

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

LAYERS = ("base", "fill", "heat", "outline")
"""Drawing order of a pane's image layers, bottom to top."""
CROSSHAIR_PEN = pg.mkPen((255, 220, 0, 130), width=1)  # solid: dashed lines cost more to paint
_A = Qt.AlignmentFlag
_TEXT_STYLE = {"title": ("#e8e8e8", 13, True), "left": ("#f0c040", 15, True), "right": ("#f0c040", 15, True),
               "top": ("#f0c040", 15, True), "bottom": ("#f0c040", 15, True), "info": ("#bbbbbb", 12, True),
               "message": ("#9a9a9a", 13, False)}
_TEXT_PLACE = {  # key -> (w, h, margin) -> (alignment, (x, y, width, height)) in viewport pixels
    "title": lambda w, h, m: (_A.AlignLeft | _A.AlignTop, (m, m, w - 2 * m, 20)),
    "left": lambda w, h, m: (_A.AlignLeft | _A.AlignVCenter, (m, 0, 30, h)),
    "right": lambda w, h, m: (_A.AlignRight | _A.AlignVCenter, (w - 30 - m, 0, 30, h)),
    "top": lambda w, h, m: (_A.AlignHCenter | _A.AlignTop, (0, m + 18, w, 20)),  # below the title line
    "bottom": lambda w, h, m: (_A.AlignHCenter | _A.AlignBottom, (0, h - 20 - m, w, 20)),
    "info": lambda w, h, m: (_A.AlignLeft | _A.AlignBottom, (m, h - 20 - m, w / 2, 20)),
    "message": lambda w, h, m: (_A.AlignCenter, (20, 0, w - 40, h)),
}


class SliceViewBox(pg.ViewBox):
    """A ViewBox with the app's mouse bindings (see the module docstring)."""

    sigCursor = Signal(QPointF)
    sigWheel = Signal(int)
    sigWindowDrag = Signal(float, float)

    def __init__(self):
        super().__init__(invertY=True, lockAspect=True, enableMenu=False, defaultPadding=0.01)
        self._wheel_rest = 0.0

    def wheelEvent(self, ev, axis=None):
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            return
        self._wheel_rest += ev.delta() / 120.0
        steps = int(self._wheel_rest)
        if steps:
            self._wheel_rest -= steps
            self.sigWheel.emit(steps)
        ev.accept()

    def mouseClickEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.sigCursor.emit(self.mapSceneToView(ev.scenePos()))
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None):
        button = ev.button()
        shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if button == Qt.MouseButton.LeftButton and not shift:
            ev.accept()
            self.sigCursor.emit(self.mapSceneToView(ev.scenePos()))
        elif button == Qt.MouseButton.RightButton:
            ev.accept()
            d = ev.screenPos() - ev.lastScreenPos()
            self.sigWindowDrag.emit(float(d.x()), float(d.y()))
        else:  # middle drag, shift + left drag: pan
            if button == Qt.MouseButton.LeftButton or button == Qt.MouseButton.MiddleButton:
                super().mouseDragEvent(ev, axis)
            else:
                ev.ignore()


class SliceView(pg.GraphicsView):
    """One of the four panes.

    Args:
        name: the pane's key (``segmentation``, ``gradcam``, ``original``, ``overlay``).
        title: the caption drawn in its top-left corner.
        layers: which of :data:`LAYERS` it draws.
    """

    sigCursor = Signal(float, float)   # (row, col) in display pixels, fractional
    sigHover = Signal(float, float)    # (row, col) under the mouse
    sigWheel = Signal(int)
    sigWindowDrag = Signal(float, float)
    sigResized = Signal()

    def __init__(self, name: str, title: str, layers: tuple[str, ...], parent=None):
        self._texts: dict[str, str] = {}
        super().__init__(parent, background="k")
        self.name = name
        self.layers = layers
        self.setMinimumSize(160, 160)
        self.vb = SliceViewBox()
        self.setCentralItem(self.vb)
        self.items: dict[str, pg.ImageItem] = {}
        for z, layer in enumerate(LAYERS):
            if layer in layers:
                item = pg.ImageItem(axisOrder="row-major")
                item.setZValue(z)
                self.vb.addItem(item)
                self.items[layer] = item
        self.h_line = pg.InfiniteLine(angle=0, pen=CROSSHAIR_PEN, movable=False)
        self.v_line = pg.InfiniteLine(angle=90, pen=CROSSHAIR_PEN, movable=False)
        for line in (self.h_line, self.v_line):
            line.setZValue(10)
            self.vb.addItem(line, ignoreBounds=True)
        self.pixel_mm = (1.0, 1.0)
        self.shape2d = (0, 0)
        self._texts = {"title": title}
        self.vb.sigCursor.connect(lambda p: self.sigCursor.emit(*self._to_pixel(p)))
        self.vb.sigWheel.connect(self.sigWheel)
        self.vb.sigWindowDrag.connect(self.sigWindowDrag)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # ----- overlay text, painted in the view's foreground pass (no extra widgets, no extra repaint)
    def label_text(self, key: str) -> str:
        """Text at ``title``, ``left``, ``right``, ``top``, ``bottom``, ``info`` or ``message``."""
        return self._texts.get(key, "")

    def set_label_text(self, key: str, text: str) -> None:
        if self._texts.get(key, "") != text:
            self._texts[key] = text
            self.scene().update()

    def drawForeground(self, painter, rect):
        super().drawForeground(painter, rect)
        if not any(self._texts.values()):
            return
        painter.save()
        painter.resetTransform()  # viewport pixels
        w, h, m = self.viewport().width(), self.viewport().height(), 5
        font = painter.font()
        for key, text in self._texts.items():
            if not text:
                continue
            style = _TEXT_STYLE.get(key, _TEXT_STYLE["info"])
            font.setPixelSize(style[1])
            font.setBold(style[2])
            painter.setFont(font)
            painter.setPen(QColor(style[0]))
            flags, box = _TEXT_PLACE[key](w, h, m)
            if key == "message":
                flags |= Qt.TextFlag.TextWordWrap
            painter.drawText(QRectF(*box), flags, text)
        painter.restore()

    # ----- geometry
    def set_geometry(self, shape2d: tuple[int, int], pixel_mm: tuple[float, float], sides: dict[str, str]) -> None:
        """Set the slice shape ``(rows, cols)``, the pixel size ``(row mm, col mm)`` and the side letters."""
        self.shape2d, self.pixel_mm = tuple(shape2d), tuple(pixel_mm)
        tr = QTransform.fromScale(pixel_mm[1], pixel_mm[0])
        for item in self.items.values():
            item.setTransform(tr)
        for side, letter in sides.items():
            self.set_label_text(side, letter)

    def reset_zoom(self, box: tuple[int, int, int, int] | None = None) -> None:
        """Fit ``box`` = ``(row0, row1, col0, col1)`` (inclusive display pixels; default the whole slice)."""
        rows, cols = self.shape2d
        if not (rows and cols):
            return
        r0, r1, c0, c1 = box if box is not None else (0, rows - 1, 0, cols - 1)
        ry, rx = self.pixel_mm
        x0, x1, y0, y1 = c0 * rx, (c1 + 1) * rx, r0 * ry, (r1 + 1) * ry
        size = self.vb.size()
        vw, vh = max(size.width(), 1.0), max(size.height(), 1.0)
        mm_per_px = 1.06 * max((x1 - x0) / vw, (y1 - y0) / vh)  # the whole box fits, with a margin
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        self.vb.setRange(xRange=(cx - vw * mm_per_px / 2, cx + vw * mm_per_px / 2),
                         yRange=(cy - vh * mm_per_px / 2, cy + vh * mm_per_px / 2), padding=0)

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        self.sigResized.emit()

    def _to_pixel(self, p: QPointF) -> tuple[float, float]:
        return p.y() / self.pixel_mm[0], p.x() / self.pixel_mm[1]

    def _on_mouse_moved(self, scene_pos) -> None:
        if self.vb.sceneBoundingRect().contains(scene_pos):
            self.sigHover.emit(*self._to_pixel(self.vb.mapSceneToView(scene_pos)))

    # ----- content
    def set_layer(self, layer: str, image: np.ndarray | None, levels: tuple[float, float] | None = None,
                  opacity: float = 1.0) -> None:
        """Show ``image`` (a display slice; 2D grey with ``levels`` or RGBA uint8) in ``layer``; ``None`` hides it."""
        item = self.items.get(layer)
        if item is None:
            return
        if image is None:
            item.setVisible(False)
            return
        if levels is not None:
            item.setImage(image, autoLevels=False, levels=levels)
        else:
            item.setImage(image, autoLevels=False)
        item.setOpacity(opacity)
        item.setVisible(True)

    def layer_image(self, layer: str) -> np.ndarray | None:
        """The array a layer currently shows, or ``None`` when it is hidden or absent (for tests)."""
        item = self.items.get(layer)
        return None if item is None or not item.isVisible() else item.image

    def set_crosshair(self, row: int, col: int) -> None:
        """Put the crosshair on the centre of display pixel ``(row, col)``."""
        self.h_line.setPos((row + 0.5) * self.pixel_mm[0])
        self.v_line.setPos((col + 0.5) * self.pixel_mm[1])

    def crosshair(self) -> tuple[float, float]:
        """``(row, col)`` of the crosshair, in display pixels."""
        return self.h_line.value() / self.pixel_mm[0] - 0.5, self.v_line.value() / self.pixel_mm[1] - 0.5
