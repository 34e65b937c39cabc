"""The four linked panes of the paper's Fig. 1: segmentation, Grad-CAM, original slice and overlay.

All four show the same slice of the same plane of one :class:`DisplayContext`, share pan and zoom
(pyqtgraph view links) and draw the crosshair at the context's cursor. Each slice is cut once per
repaint and coloured by :mod:`braingui.display.colormaps`.

The Grad-CAM pane shows the map over the anatomy at reduced brightness (:func:`gradcam_rgba`), inside
the head only: a flat map then reads as "nothing here" on a recognisable brain, not as a coloured square.

Slider steps, cursor moves and look changes are coalesced (as Grad-CAM Discoverer does): the first one
redraws at once and starts a :data:`COALESCE_MS` single-shot timer; changes arriving while it runs are
drawn once, when it fires. A fast drag thus redraws at most about 60 times a second and never queues
repaints behind the mouse; a new case or plane redraws at once. Reading a pane (its layers, crosshair
or texts) first draws a pending change (:meth:`PaneGrid.flush`), so nothing ever reads a stale pane.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QWidget

from braingui.discovery import MODALITY_TITLES
from braingui.display import colormaps, planes
from braingui.display.colormaps import GRADCAM_DIM, gradcam_rgba  # noqa: F401 - re-exported: the panes' blend
from braingui.display.context import DisplayContext
from braingui.ui.slice_view import SliceView
from braingui.uncertainty import LEGEND as UNCERTAINTY_LEGEND

PANES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("segmentation", "Segmentation", ("base", "fill", "outline")),  # outline: with the uncertainty map
    ("gradcam", "Grad-CAM", ("base",)),  # the map blended over the dimmed anatomy: gradcam_rgba
    ("original", "Original", ("base",)),
    ("overlay", "Overlay", ("base", "heat", "outline")),
)
"""``(key, title, layers)`` of each pane, in the paper's order."""
COALESCE_MS = 16
"""Least time between two coalesced redraws of the panes (one display frame at 60 Hz)."""


class PaneGrid(QWidget):
    """Four :class:`SliceView` panes in a 2x2 grid (or a row), bound to one display context.

    Signals:
        sigHover(object): the voxel ``(i, j, k)`` under the mouse, or ``None`` when off the volume.
    """

    sigHover = Signal(object)

    def __init__(self, ctx: DisplayContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.views: dict[str, SliceView] = {}
        self.auto_fit, self._fit_pending = True, False
        self._head: tuple = (None, None)  # (case, (X, Y, Z) bool: any modality non-zero)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(3)
        self.refresh_count = 0  # redraws so far (benches and tests count them)
        self._pending = False
        self._coalesce = QTimer(self)
        self._coalesce.setSingleShot(True)
        self._coalesce.setInterval(COALESCE_MS)
        self._coalesce.timeout.connect(self._on_coalesce_timeout)
        first = None
        for key, title, layers in PANES:
            view = SliceView(key, title, layers, self)
            view.before_read = self.flush
            self.views[key] = view
            if first is None:
                first = view
            else:
                view.vb.setXLink(first.vb)
                view.vb.setYLink(first.vb)
            view.sigCursor.connect(self._on_cursor)
            view.sigWheel.connect(self.ctx.step_slice)
            view.sigWindowDrag.connect(self._on_window_drag)
            view.sigRuler.connect(lambda r0, c0, r1, c1: self.ctx.set_ruler((r0, c0), (r1, c1)))
            view.sigHover.connect(self._on_hover)
            view.sigResized.connect(self._on_resized)
            view.vb.sigRangeChangedManually.connect(self._on_manual_zoom)
        self.set_arrangement("grid")
        ctx.changed.connect(self._on_changed)
        self._on_changed(frozenset({"data", "plane", "cursor", "look"}))

    def set_arrangement(self, arrangement: str) -> None:
        """``grid`` (2x2) or ``row`` (1x4, as the paper's figure)."""
        for n, (key, _, _) in enumerate(PANES):
            self._grid.removeWidget(self.views[key])
            r, c = (n // 2, n % 2) if arrangement == "grid" else (0, n)
            self._grid.addWidget(self.views[key], r, c)

    # ----- input
    def _voxel_at(self, row: float, col: float):
        shape = self.ctx.shape
        if shape is None:
            return None
        r, c = int(np.floor(row)), int(np.floor(col))
        rows, cols = planes.slice_shape(shape, self.ctx.plane)
        if not (0 <= r < rows and 0 <= c < cols):
            return None
        return planes.pixel_to_voxel(r, c, self.ctx.slice_index, shape, self.ctx.plane, self.ctx.convention)

    def _on_cursor(self, row: float, col: float) -> None:
        shape = self.ctx.shape
        if shape is None:
            return
        rows, cols = planes.slice_shape(shape, self.ctx.plane)
        r, c = int(np.clip(np.floor(row), 0, rows - 1)), int(np.clip(np.floor(col), 0, cols - 1))
        self.ctx.set_cursor(planes.pixel_to_voxel(r, c, self.ctx.slice_index, shape, self.ctx.plane, self.ctx.convention))

    def _on_hover(self, row: float, col: float) -> None:
        self.sigHover.emit(self._voxel_at(row, col))

    def _on_window_drag(self, dx: float, dy: float) -> None:
        """Right drag: horizontal changes the window width, vertical the level (drag down = darker)."""
        if self.ctx.case is None:
            return
        lo, hi = self.ctx.window
        d_lo, d_hi = self.ctx.default_window()
        scale = (d_hi - d_lo) / 400.0
        width = max((hi - lo) + dx * scale, scale)
        level = (hi + lo) / 2.0 + dy * scale
        self.ctx.set_window(level - width / 2.0, level + width / 2.0)

    # ----- drawing
    def _on_changed(self, what) -> None:
        if "plane" in what or "data" in what:
            self._update_geometry()
            self.refresh()
        else:  # cursor / look: coalesced
            self.request_refresh()

    def request_refresh(self) -> None:
        """Redraw now, unless a redraw happened less than :data:`COALESCE_MS` ago: then once when that
        time is up (however many requests arrive meanwhile)."""
        if self._coalesce.isActive():
            self._pending = True
            return
        self.refresh()
        self._coalesce.start()

    def _on_coalesce_timeout(self) -> None:
        if self._pending:
            self.refresh()
            self._coalesce.start()

    def flush(self) -> None:
        """Draw a coalesced change that is still waiting for its timer (nothing when none is)."""
        if self._pending:
            self.refresh()

    @property
    def refresh_pending(self) -> bool:
        """True while a coalesced change waits to be drawn."""
        return self._pending

    def _update_geometry(self) -> None:
        ctx = self.ctx
        lay = planes.layout(ctx.plane, ctx.convention)
        if ctx.case is None:
            for view in self.views.values():
                view.set_geometry((0, 0), (1.0, 1.0), {s: "" for s in lay.sides})
            return
        shape2d = planes.slice_shape(ctx.shape, ctx.plane)
        pix = planes.pixel_size(ctx.case.grid.spacing, ctx.plane)
        box = ctx.content_box()
        for view in self.views.values():
            view.set_geometry(shape2d, pix, lay.sides)
            view.set_content_box(box)
        self.reset_zoom()

    def head_mask(self):
        """``(X, Y, Z)`` bool of the case: True where any modality is non-zero (cached per case)."""
        case = self.ctx.case
        if case is None:
            return None
        if self._head[0] is not case:
            mask = np.zeros(case.grid.shape, dtype=bool)
            for volume in case.images.values():
                mask |= volume != 0
            self._head = (case, mask)
        return self._head[1]

    def reset_zoom(self) -> None:
        """Fit the head (non-zero voxels) in the panes, and keep it fitted when they resize, until the
        user pans or zooms; the others follow the first pane (linked)."""
        self.auto_fit = True
        self.views["segmentation"].reset_zoom(self.ctx.content_box())

    def _on_manual_zoom(self, *_):
        self.auto_fit = False

    def _on_resized(self) -> None:
        if self.auto_fit and not self._fit_pending:
            self._fit_pending = True
            QTimer.singleShot(0, self._refit)

    def _refit(self) -> None:
        self._fit_pending = False
        if self.auto_fit:
            self.reset_zoom()

    def refresh(self) -> None:
        """Redraw every pane from the context now (see :meth:`request_refresh` for the coalesced way)."""
        self._pending = False
        self.refresh_count += 1
        ctx = self.ctx
        v = self.views
        if ctx.case is None:
            for key, view in v.items():
                for layer in view.layers:
                    view.set_layer(layer, None)
                view.commit()
                view.set_label_text("info", "")
                view.set_segments([])
                view.set_label_text("message", "Open a case: File \u25b8 Open folder, or drop a case folder here"
                                    if key == "original" else "")
            return
        base = colormaps.grey_rgba(ctx.display_slice(ctx.image), *ctx.window)
        labels = ctx.display_slice(ctx.labels)
        heat = ctx.display_slice(ctx.heat, colormaps.heat_index)
        heat_rgba = colormaps.heat_rgba(heat, ctx.colormap) if heat is not None else None
        v["segmentation"].set_layer("base", base)
        unc = ctx.display_slice(ctx.uncertainty) if ctx.show_uncertainty else None
        if unc is not None:  # where the flipped views disagree, with the label outlines on top
            v["segmentation"].set_layer("fill", colormaps.heat_rgba(unc, UNCERTAINTY_LEGEND["colormap"]), opacity=0.85)
            v["segmentation"].set_layer("outline", colormaps.outline_rgba(labels) if labels is not None else None)
        else:
            v["segmentation"].set_layer("fill", colormaps.label_rgba(labels) if labels is not None else None,
                                        opacity=ctx.seg_opacity)
            v["segmentation"].set_layer("outline", None)
        head = ctx.display_slice(self.head_mask()) if heat_rgba is not None else None
        v["gradcam"].set_layer("base", None if heat_rgba is None else gradcam_rgba(
            base, heat_rgba, head, ctx.heat_opacity))
        if heat_rgba is not None:  # the overlay shows the map inside the head only (no dark box round it);
            heat_rgba[~head, 3] = 0  # heat_rgba is this refresh's own array, already blended into the Grad-CAM pane
        v["original"].set_layer("base", base)
        v["overlay"].set_layer("base", base)
        v["overlay"].set_layer("heat", heat_rgba, opacity=ctx.heat_opacity)
        v["overlay"].set_layer("outline", colormaps.outline_rgba(labels) if labels is not None else None)
        self._update_captions(labels is not None, heat is not None)
        row, col = planes.voxel_to_pixel(ctx.cursor, ctx.shape, ctx.plane, ctx.convention)
        segments = ctx.annotation_segments()  # RANO diameters on their slice, the ruler
        for view in v.values():
            view.commit()
            view.set_crosshair(row, col)
            view.set_segments(segments)

    def _update_captions(self, has_labels: bool, has_heat: bool) -> None:
        ctx = self.ctx
        mod = MODALITY_TITLES.get(ctx.modality, ctx.modality)
        where = f"{ctx.plane} {ctx.slice_index + 1}/{ctx.n_slices}"
        cam = ""
        if has_heat and ctx.result is not None:
            cam = ctx.result.class_titles.get(ctx.cam_class, ctx.cam_class or "")
        seg_title = "Segmentation" if ctx.labels is None or ctx.labels is not ctx.case.labels else "Reference labels"
        if ctx.show_uncertainty and ctx.uncertainty is not None:
            seg_title = f"Uncertainty ({getattr(ctx.result, 'tta_views', 0)} flipped views)"
        titles = {"segmentation": seg_title, "gradcam": f"Grad-CAM: {cam}" if cam else "Grad-CAM",
                  "original": f"Original: {mod}", "overlay": "Overlay"}
        messages = {"segmentation": "" if has_labels else "no segmentation yet: run the analysis",
                    "gradcam": "" if has_heat else "Grad-CAM appears after the analysis",
                    "original": "", "overlay": ""}
        for key, view in self.views.items():
            view.set_label_text("title", titles[key])
            view.set_label_text("info", where)
            view.set_label_text("message", messages[key])
