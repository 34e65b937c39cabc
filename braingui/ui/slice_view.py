"""One pane: a 2D slice with optional label fill, heat map, label outlines and a crosshair.

Mouse (as in ITK-SNAP): left click / drag moves the crosshair; wheel steps through slices (Ctrl+wheel
zooms); middle drag or Shift+left drag pans; right drag sets window/level (horizontal: width, vertical:
level). The pane works in millimetres: one display pixel is ``pixel_size`` mm, so anisotropic voxels
keep their true aspect.

Images arrive as display slices (:func:`braingui.display.planes.display_slice`, row 0 at the top) and are
drawn with pyqtgraph in row-major order with the y axis pointing down.

Text lies on the image as little as possible: the fitted view leaves a margin round the head (the
pane's *content box*) for the title row and the orientation letters, and each letter sits just outside
the content box, at the middle of its edge. Once the user zooms in so far that there is no margin, the
letters are pushed inside the pane's edge and drawn small with a dark outline.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPen, QPixmap, QTransform

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

SEGMENT_COLOURS = {"longest": "#ffd23f", "perpendicular": "#3fe0ff", "ruler": "#ffffff"}
"""Colours of the drawn lines: RANO longest / perpendicular diameter, the ruler."""
LAYERS = ("base", "fill", "heat", "outline")
"""Drawing order of a pane's image layers, bottom to top."""
CROSSHAIR_COLOUR = QColor(255, 220, 0, 130)
"""The crosshair's lines, one pixel wide, solid (dashed lines cost more to paint)."""
_A = Qt.AlignmentFlag
SIDES = ("left", "right", "top", "bottom")
"""The orientation-letter keys, one per screen edge."""
_TEXT_STYLE = {"title": ("#e8e8e8", 13, True), "side": ("#f0c040", 13, True), "info": ("#bbbbbb", 12, True),
               "message": ("#9a9a9a", 13, False)}
_TEXT_PLACE = {  # key -> (w, h, margin) -> (alignment, (x, y, width, height)) in viewport pixels
    "title": lambda w, h, m: (_A.AlignLeft | _A.AlignTop, (m, m, w - 2 * m, 20)),
    "info": lambda w, h, m: (_A.AlignLeft | _A.AlignBottom, (m, h - 20 - m, w / 2, 20)),
    "message": lambda w, h, m: (_A.AlignCenter, (20, 0, w - 40, h)),
}
EDGE = 3
"""Viewport pixels between a letter and the pane's edge or the content box."""
LETTER_BOX = 16
"""Width and height (viewport pixels) of an orientation letter's box."""
MARGIN_SIDE = LETTER_BOX + 2 * EDGE
"""Viewport pixels left free at the left and right of the fitted head, for the R/L (A/P) letters."""
MARGIN_TOP = 20 + LETTER_BOX + 2 * EDGE
"""Viewport pixels left free above the fitted head: the title row, then the top letter."""
MARGIN_BOTTOM = LETTER_BOX + 2 * EDGE
"""Viewport pixels left free below the fitted head: the bottom letter and the slice read-out."""


class _PaneImage(pg.ImageItem):
    """The pane's one image item: an opaque ``(rows, cols, 4)`` uint8 image in B, G, R, A byte order
    (:meth:`SliceView.commit`) drawn as Qt's ``ARGB32_Premultiplied``, the raster engine's own format, so a
    paint scales it without a per-pixel format conversion (pyqtgraph would wrap the array as RGBA8888)."""

    _composed: QImage | None = None  # the QImage that wraps ``image`` (SliceView.commit made both)

    def show_composed(self, pixels: np.ndarray, qimage: QImage) -> None:
        """Show ``pixels`` (``(rows, cols, 4)``, B G R A), which ``qimage`` wraps: a new slice of the same shape
        only repaints (no pyqtgraph ``setImage``: its levels, bounds and signals are for a new shape)."""
        same = self.image is not None and self.image.shape == pixels.shape
        self._composed = qimage
        if same:
            self.image = pixels
            self.update()
        else:
            self.setImage(pixels, autoLevels=False)

    def render(self):
        self._unrenderable = self.image is None or self._composed is None
        self.qimage = self._composed
        self._renderRequired = False

    def paint(self, painter, *args):
        if self.image is None or self._composed is None:
            return
        rows, cols = self.image.shape[:2]
        painter.drawImage(QRectF(0, 0, cols, rows), self._composed)


class SliceViewBox(pg.ViewBox):
    """A ViewBox with the app's mouse bindings (see the module docstring)."""

    sigCursor = Signal(QPointF)
    sigWheel = Signal(int)
    sigWindowDrag = Signal(float, float)
    sigRuler = Signal(QPointF, QPointF)  # Ctrl + left drag: start and current point (view coordinates, mm)

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
        ctrl = bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if button == Qt.MouseButton.LeftButton and ctrl:  # the ruler
            ev.accept()
            self.sigRuler.emit(self.mapSceneToView(ev.buttonDownScenePos()), self.mapSceneToView(ev.scenePos()))
        elif button == Qt.MouseButton.LeftButton and not shift:
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
    sigRuler = Signal(float, float, float, float)  # ruler drag: (row0, col0, row1, col1) in display pixels

    before_read = None
    """Called before a reader looks at the pane's content (the grid draws a coalesced change first)."""

    def __init__(self, name: str, title: str, layers: tuple[str, ...], parent=None):
        self._texts: dict[str, str] = {}
        self._letters: dict[tuple, QPixmap] = {}  # outlined orientation letters, drawn once, blitted per paint
        self._fonts: dict | None = None  # text style -> (font, its key), made at the first paint
        self._places: tuple | None = None  # ((w, h), _text_places()) of the current view, until it changes
        self._cross_px: tuple[int, int] | None = None  # the crosshair's viewport pixel, until it or the view moves
        super().__init__(parent, background="k")
        self.name = name
        self.layers = layers
        self.setMinimumSize(160, 160)
        self.vb = SliceViewBox()
        self.setCentralItem(self.vb)
        self._layers: dict[str, tuple[np.ndarray, float]] = {}  # shown layer -> (RGBA image, opacity)
        self._stale = False  # layers changed since the image was composed
        self.image_item = _PaneImage(axisOrder="row-major")  # the layers composed into one image (commit)
        self.vb.addItem(self.image_item)
        self._cross = (0.5, 0.5)  # the crosshair in view millimetres (row, col), drawn in the foreground pass
        self.pixel_mm = (1.0, 1.0)
        self.shape2d = (0, 0)
        self.content_box: tuple[int, int, int, int] | None = None
        self._texts = {"title": title}
        self.vb.sigRangeChanged.connect(lambda *_: self._layout_changed())  # the letters follow the image
        self.vb.sigCursor.connect(lambda p: self.sigCursor.emit(*self._to_pixel(p)))
        self.vb.sigWheel.connect(self.sigWheel)
        self.vb.sigWindowDrag.connect(self.sigWindowDrag)
        self.vb.sigRuler.connect(lambda a, b: self.sigRuler.emit(*self._to_pixel(a), *self._to_pixel(b)))
        self._segment_items: list = []
        self.segments: list = []
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # ----- overlay text, painted in the view's foreground pass (no extra widgets, no extra repaint)
    def label_text(self, key: str) -> str:
        """Text at ``title``, ``left``, ``right``, ``top``, ``bottom``, ``info`` or ``message``."""
        self._read()
        return self._texts.get(key, "")

    def _read(self) -> None:
        if self.before_read is not None:
            self.before_read()

    def set_label_text(self, key: str, text: str) -> None:
        if self._texts.get(key, "") != text:
            self._texts[key] = text
            self.scene().update()

    def view_to_viewport(self, x_mm: float, y_mm: float) -> QPointF:
        """Viewport pixel of the view point ``(x, y)`` in millimetres (x along the columns, y down the rows)."""
        return self.viewportTransform().map(self.vb.mapViewToScene(QPointF(x_mm, y_mm)))

    def viewport_to_pixel(self, point: QPointF) -> tuple[float, float]:
        """Display pixel ``(row, col)`` (fractional) under a viewport point."""
        scene = self.viewportTransform().inverted()[0].map(QPointF(point))
        return self._to_pixel(self.vb.mapSceneToView(scene))

    def _box_rect(self, box: tuple[int, int, int, int]) -> QRectF:
        """Viewport rectangle of the display-pixel box ``(row0, row1, col0, col1)`` (inclusive)."""
        r0, r1, c0, c1 = box
        ry, rx = self.pixel_mm
        return QRectF(self.view_to_viewport(c0 * rx, r0 * ry), self.view_to_viewport((c1 + 1) * rx, (r1 + 1) * ry))

    def image_rect(self) -> QRectF:
        """Viewport rectangle of the whole slice (empty without one)."""
        rows, cols = self.shape2d
        return self._box_rect((0, rows - 1, 0, cols - 1)) if rows and cols else QRectF()

    def letter_rects(self) -> dict[str, QRectF]:
        """Viewport rectangle of each orientation letter: just outside the content box (the head) at the
        middle of its edge, pushed inside the pane where the box reaches past it."""
        w, h = self.viewport().width(), self.viewport().height()
        rows, cols = self.shape2d
        if not (rows and cols):
            box = QRectF(MARGIN_SIDE, MARGIN_TOP, max(w - 2 * MARGIN_SIDE, 1), max(h - MARGIN_TOP - MARGIN_BOTTOM, 1))
        else:
            box = self._box_rect(self.content_box or (0, rows - 1, 0, cols - 1)).intersected(QRectF(0, 0, w, h))
            if box.isEmpty():
                box = QRectF(0, 0, w, h)
        s, e = LETTER_BOX, EDGE
        top_min = 20 + e  # below the title row

        def clamp(v, lo, hi):
            return max(lo, min(v, hi))

        cy = clamp(box.center().y() - s / 2, top_min, h - s - e)
        cx = clamp(box.center().x() - s / 2, e, w - s - e)
        return {
            "left": QRectF(clamp(box.left() - e - s, e, w - s - e), cy, s, s),
            "right": QRectF(clamp(box.right() + e, e, w - s - e), cy, s, s),
            "top": QRectF(cx, clamp(box.top() - e - s, top_min, h - s - e), s, s),
            "bottom": QRectF(cx, clamp(box.bottom() + e, top_min, h - s - e), s, s),
        }

    def drawForeground(self, painter, rect):
        super().drawForeground(painter, rect)
        painter.save()
        painter.resetTransform()  # viewport pixels
        w, h, m = self.viewport().width(), self.viewport().height(), 5
        if self.shape2d[0] and self.shape2d[1]:  # two lines across the pane: cheaper than two scene items
            if self._cross_px is None:
                at = self.view_to_viewport(self._cross[1], self._cross[0])
                self._cross_px = (int(at.x()), int(at.y()))
            x, y = self._cross_px
            painter.fillRect(0, y, w, 1, CROSSHAIR_COLOUR)  # one-pixel rectangles: no line rasteriser
            painter.fillRect(x, 0, 1, h, CROSSHAIR_COLOUR)
        if not any(self._texts.values()):
            painter.restore()
            return
        if self._places is None or self._places[0] != (w, h):
            self._places = ((w, h), self._text_places(painter, w, h, m))
        places = self._places[1]
        for key, text in self._texts.items():
            if not text:
                continue
            font, font_key, colour, where, flags = places[key]
            if key in SIDES:
                painter.drawPixmap(where[0], where[1], self._letter_pixmap(text, font, font_key, colour, where[2]))
                continue
            # title and read-out: a dark shadow keeps them readable where a zoomed image lies under them
            at, pixmap = self._text_pixmap(text, font, font_key, colour, where, flags, shadow=key != "message")
            painter.drawPixmap(at, pixmap)
        painter.restore()

    def _text_places(self, painter, w: int, h: int, m: int) -> dict:
        """Per text key, for a ``w`` x ``h`` viewport: ``(font, font key, colour, where, flags)``; ``where`` is
        the box (a QRectF) of a caption, ``(x, y, QRectF)`` of a letter. Computed once per view size and
        letter layout, not per paint (Qt's flag arithmetic in Python is not cheap)."""
        if self._fonts is None:  # one font per text style, and its key, made once (QFont.key() is not cheap)
            self._fonts = {}
            for name, (_colour, size, bold) in _TEXT_STYLE.items():
                font = QFont(painter.font())
                font.setPixelSize(size)
                font.setBold(bold)
                self._fonts[name] = (font, font.key())
        letters = self.letter_rects()
        places = {}
        for key in (*SIDES, *_TEXT_PLACE):
            style = "side" if key in SIDES else key
            font, font_key = self._fonts[style]
            colour = _TEXT_STYLE[style][0]
            if key in SIDES:
                rect = letters[key]
                places[key] = (font, font_key, colour, (int(round(rect.left())), int(round(rect.top())), rect), 0)
                continue
            flags, box = _TEXT_PLACE[key](w, h, m)
            if key == "message":
                flags |= Qt.TextFlag.TextWordWrap
            places[key] = (font, font_key, colour, QRectF(*box), int(flags))
        return places

    def _layout_changed(self) -> None:
        """The view moved, zoomed or resized: the letters' and the crosshair's places are computed again at
        the next paint."""
        self._places = None
        self._cross_px = None
        self.viewport().update()

    _TEXTS: OrderedDict = OrderedDict()
    """Rendered captions shared by the panes (the four read-outs say the same), most recent last."""
    _TEXTS_MAX = 64

    def _text_pixmap(self, text: str, font, font_key: str, colour: str, box: QRectF, flags,
                     shadow: bool) -> tuple[QPointF, QPixmap]:
        """``text`` laid out in ``box`` as a pixmap (with a 1-pixel dark shadow) and where to blit it, rendered
        once per text, font, colour and box: a slider step repaints the caption of every pane, and blitting a
        small pixmap costs less than laying text out and drawing its glyphs twice."""
        ratio = self.devicePixelRatioF()
        key = (text, font_key, colour, box.width(), box.height(), int(flags), shadow, ratio)
        cache = SliceView._TEXTS
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)
            offset, pixmap = found
            return box.topLeft() + offset, pixmap
        local = QRectF(0, 0, box.width(), box.height())
        bound = QFontMetricsF(font).boundingRect(local, int(flags), text).intersected(local).adjusted(0, 0, 1, 1)
        pixmap = QPixmap(max(1, round(bound.width() * ratio)), max(1, round(bound.height() * ratio)))
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(Qt.GlobalColor.transparent)
        p = QPainter(pixmap)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setFont(font)
        p.translate(-bound.left(), -bound.top())
        if shadow:
            p.setPen(QColor(0, 0, 0, 220))
            p.drawText(local.translated(1, 1), flags, text)
        p.setPen(QColor(colour))
        p.drawText(local, flags, text)
        p.end()
        cache[key] = (bound.topLeft(), pixmap)
        while len(cache) > SliceView._TEXTS_MAX:
            cache.popitem(last=False)
        return box.topLeft() + bound.topLeft(), pixmap

    def _letter_pixmap(self, text: str, font, font_key: str, colour: str, rect: QRectF) -> QPixmap:
        """An outlined letter (:func:`_draw_outlined`) rendered once per text, font and box size: stroking a
        text path costs far more than blitting it, and a slider step repaints every letter of every pane."""
        ratio = self.devicePixelRatioF()
        key = (text, font_key, colour, int(rect.width()), int(rect.height()), ratio)
        pixmap = self._letters.get(key)
        if pixmap is None:
            pixmap = QPixmap(round(rect.width() * ratio), round(rect.height() * ratio))
            pixmap.setDevicePixelRatio(ratio)
            pixmap.fill(Qt.GlobalColor.transparent)
            p = QPainter(pixmap)
            p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            p.setFont(font)
            _draw_outlined(p, QRectF(0, 0, rect.width(), rect.height()), text, QColor(colour))
            p.end()
            self._letters[key] = pixmap
        return pixmap

    # ----- geometry
    def set_geometry(self, shape2d: tuple[int, int], pixel_mm: tuple[float, float], sides: dict[str, str]) -> None:
        """Set the slice shape ``(rows, cols)``, the pixel size ``(row mm, col mm)`` and the side letters."""
        self.shape2d, self.pixel_mm = tuple(shape2d), tuple(pixel_mm)
        self._layout_changed()
        self.image_item.setTransform(QTransform.fromScale(pixel_mm[1], pixel_mm[0]))
        for side, letter in sides.items():
            self.set_label_text(side, letter)

    def set_content_box(self, box: tuple[int, int, int, int] | None) -> None:
        """The head's ``(row0, row1, col0, col1)`` in display pixels (inclusive); ``None``: the whole slice.

        The orientation letters sit just outside it and :meth:`reset_zoom` fits it with room for them.
        """
        self.content_box = None if box is None else tuple(int(v) for v in box)
        self._layout_changed()

    def reset_zoom(self, box: tuple[int, int, int, int] | None = None) -> None:
        """Fit ``box`` = ``(row0, row1, col0, col1)`` (inclusive display pixels; default the whole slice),
        leaving the title row and a letter's width free round it (:data:`MARGIN_SIDE`, ...)."""
        rows, cols = self.shape2d
        if not (rows and cols):
            return
        r0, r1, c0, c1 = box if box is not None else (0, rows - 1, 0, cols - 1)
        ry, rx = self.pixel_mm
        x0, x1, y0, y1 = c0 * rx, (c1 + 1) * rx, r0 * ry, (r1 + 1) * ry
        size = self.vb.size()
        vw, vh = max(size.width(), 1.0), max(size.height(), 1.0)
        mx, mt, mb = min(MARGIN_SIDE, vw / 4), min(MARGIN_TOP, vh / 4), min(MARGIN_BOTTOM, vh / 4)
        free_w, free_h = vw - 2 * mx, vh - mt - mb
        mm_per_px = 1.02 * max((x1 - x0) / free_w, (y1 - y0) / free_h)  # the whole box fits the free area
        x_start = (x0 + x1) / 2 - (mx + free_w / 2) * mm_per_px  # box centre on the free area's centre
        y_start = (y0 + y1) / 2 - (mt + free_h / 2) * mm_per_px
        self.vb.setRange(xRange=(x_start, x_start + vw * mm_per_px), yRange=(y_start, y_start + vh * mm_per_px),
                         padding=0)

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        self._layout_changed()
        self.sigResized.emit()

    def _to_pixel(self, p: QPointF) -> tuple[float, float]:
        return p.y() / self.pixel_mm[0], p.x() / self.pixel_mm[1]

    def _on_mouse_moved(self, scene_pos) -> None:
        if self.vb.sceneBoundingRect().contains(scene_pos):
            self.sigHover.emit(*self._to_pixel(self.vb.mapSceneToView(scene_pos)))

    # ----- content
    def set_layer(self, layer: str, image: np.ndarray | None, opacity: float = 1.0) -> None:
        """Show ``image`` (a display slice, ``(rows, cols, 4)`` uint8 RGBA) in ``layer`` with ``opacity``; ``None``
        hides it. Layers are drawn in :data:`LAYERS` order once :meth:`commit` composes them."""
        if layer not in self.layers:
            return
        if image is None:
            self._stale |= self._layers.pop(layer, None) is not None
        else:
            self._layers[layer] = (image, float(opacity))
            self._stale = True

    def commit(self) -> None:
        """Compose the layers set since the last commit into the pane's one image: the layers are painted one
        over another at the slice's own size (Qt's raster blending, about 3x faster here than the same blend in
        numpy), so a paint then scales one image in the raster engine's own format instead of converting and
        scaling one image per layer (the slider step, issue 15)."""
        if not self._stale:
            return
        self._stale = False
        layers = [self._layers[k] for k in LAYERS if k in self._layers]
        if not layers:
            self.image_item.setVisible(False)
            return
        rows, cols = layers[0][0].shape[:2]
        shown = np.empty((rows, cols, 4), dtype=np.uint8)  # numpy owns the pixels; Qt paints into them
        target = pg.functions.ndarray_to_qimage(shown, QImage.Format.Format_ARGB32_Premultiplied)
        target.fill(QColor(0, 0, 0))  # the pane's black background
        painter = QPainter(target)
        for image, opacity in layers:
            rgba = np.ascontiguousarray(image, dtype=np.uint8)
            painter.setOpacity(opacity)
            painter.drawImage(0, 0, pg.functions.ndarray_to_qimage(rgba, QImage.Format.Format_RGBA8888))
        painter.end()
        self.image_item.show_composed(shown, target)
        self.image_item.setVisible(True)

    def shown_image(self) -> np.ndarray | None:
        """The composed ``(rows, cols, 4)`` uint8 image (B, G, R, A) the pane draws, or ``None`` (for tests)."""
        self._read()
        return self.image_item.image if self.image_item.isVisible() else None

    def set_segments(self, segments) -> None:
        """Draw :class:`braingui.display.annotations.Segment` lines with their labels (replacing the last ones)."""
        if list(segments) == self.segments:
            return
        for item in self._segment_items:
            self.vb.removeItem(item)
        self._segment_items, self.segments = [], list(segments)
        ry, rx = self.pixel_mm
        for seg in self.segments:
            (r0, c0), (r1, c1) = seg.start, seg.end
            xs, ys = [(c0 + 0.5) * rx, (c1 + 0.5) * rx], [(r0 + 0.5) * ry, (r1 + 0.5) * ry]
            colour = SEGMENT_COLOURS.get(seg.kind, "#ffffff")
            line = pg.PlotCurveItem(xs, ys, pen=pg.mkPen(colour, width=2))
            text = pg.TextItem(seg.label, color=colour, anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 160))
            text.setPos(xs[1], ys[1])
            for item in (line, text):
                item.setZValue(12)
                self.vb.addItem(item, ignoreBounds=True)
                self._segment_items.append(item)

    def layer_image(self, layer: str) -> np.ndarray | None:
        """The array a layer currently shows, or ``None`` when it is hidden or absent (for tests)."""
        self._read()
        return self._layers[layer][0] if layer in self._layers else None

    def layer_opacity(self, layer: str) -> float | None:
        """The opacity a shown layer is drawn with, or ``None`` when it is hidden or absent."""
        self._read()
        return self._layers[layer][1] if layer in self._layers else None

    def set_crosshair(self, row: int, col: int) -> None:
        """Put the crosshair on the centre of display pixel ``(row, col)``."""
        cross = ((row + 0.5) * self.pixel_mm[0], (col + 0.5) * self.pixel_mm[1])
        if cross != self._cross:
            self._cross, self._cross_px = cross, None
            self.viewport().update()

    def crosshair(self) -> tuple[float, float]:
        """``(row, col)`` of the crosshair, in display pixels."""
        self._read()
        return self._cross[0] / self.pixel_mm[0] - 0.5, self._cross[1] / self.pixel_mm[1] - 0.5


def _draw_outlined(painter, rect: QRectF, text: str, colour: QColor) -> None:
    """Draw ``text`` centred in ``rect`` (viewport pixels) in ``colour`` with a dark outline, so it stays
    readable where it lies on the image."""
    metrics = QFontMetricsF(painter.font())
    x = rect.center().x() - metrics.horizontalAdvance(text) / 2
    y = rect.center().y() + (metrics.ascent() - metrics.descent()) / 2
    path = QPainterPath()
    path.addText(QPointF(x, y), painter.font(), text)
    painter.strokePath(path, QPen(QColor(0, 0, 0, 220), 3.0))
    painter.fillPath(path, colour)
