"""The display context the four panes share (FSLeyes' idea: linked views are views of one context).

It holds the loaded case, the analysis result and every display option (plane, convention, cursor,
modality, window/level, colormap, opacities). Views and controls call its setters and listen to
:attr:`DisplayContext.changed`, which carries the set of what changed:

* ``"data"`` - a case or a result arrived (everything must be redrawn);
* ``"plane"`` - plane or convention (views reset their zoom);
* ``"cursor"`` - the 3D cursor, hence the slice;
* ``"look"`` - modality, window, colormap, opacity, heat-map class or label source.

The cursor is one voxel ``(i, j, k)``; the slice shown is ``cursor[normal axis of the plane]``, so
switching planes shows the slice through the point the user looked at last.
"""

from __future__ import annotations

import numpy as np

from braingui.case import Case
from braingui.discovery import MODALITIES
from braingui.results import AnalysisResult
from braingui.display import colormaps, planes
from braingui.display.signal import Signal

MAX_STACKS = 6
"""Slice stacks kept (shown volumes x planes); each is one copy of a volume (~36 MB at 240x240x155 float32)."""

MODEL, REFERENCE = "model", "reference"
"""Label sources: the model's segmentation, or the label map that came with the case."""


class DisplayContext:
    """Shared state of the linked views; emits ``changed(frozenset[str])``. Plain Python: no Qt."""

    def __init__(self):
        self.changed = Signal()
        self.case: Case | None = None
        self.result: AnalysisResult | None = None
        self.plane = planes.AXIAL
        self.convention = planes.RADIOLOGICAL
        self.cursor = (0, 0, 0)
        self.modality = "flair"
        self.windows: dict[str, tuple[float, float]] = {}
        self.colormap = colormaps.DEFAULT_COLORMAP
        self.seg_opacity = 0.6
        self.heat_opacity = 0.45
        self.cam_class: str | None = None
        self.label_source = MODEL
        self._stacks: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._any_cache: tuple = (None, False)
        self._box_cache: tuple = (None, None)

    # ----- data
    def set_case(self, case: Case | None) -> None:
        """Show ``case`` (drops any result); the cursor goes to the volume centre."""
        self.case, self.result, self.windows, self.cam_class = case, None, {}, None
        self._stacks.clear()
        if case is not None:
            self.cursor = tuple(int(n) // 2 for n in case.grid.shape)
            if self.modality not in case.images:
                self.modality = MODALITIES[0]
        self.label_source = MODEL if case is None or case.labels is None else REFERENCE
        self.changed.emit(frozenset({"data", "plane", "cursor", "look"}))

    def set_result(self, result: AnalysisResult | None) -> None:
        """Show an analysis result of the current case (its labels become the label source)."""
        self.result = result
        self.cam_class = None
        if result is not None:
            self.cam_class = result.predicted_class if result.predicted_class in result.cams else next(iter(result.cams), None)
            if result.labels is not None:
                self.label_source = MODEL
        self.changed.emit(frozenset({"data", "look"}))

    # ----- geometry
    @property
    def shape(self) -> tuple[int, int, int] | None:
        """Canonical grid shape of the case, or ``None``."""
        return None if self.case is None else tuple(self.case.grid.shape)

    @property
    def slice_index(self) -> int:
        """The slice shown (along the plane's normal axis)."""
        return int(self.cursor[planes.NORMAL_AXIS[self.plane]])

    @property
    def n_slices(self) -> int:
        """Slices in the current plane (0 without a case)."""
        return 0 if self.case is None else planes.n_slices(self.shape, self.plane)

    def set_plane(self, plane: str) -> None:
        if plane not in planes.PLANES:
            raise ValueError(plane)
        if plane != self.plane:
            self.plane = plane
            self.changed.emit(frozenset({"plane", "cursor"}))

    def set_convention(self, convention: str) -> None:
        planes.layout(self.plane, convention)  # validates
        if convention != self.convention:
            self.convention = convention
            self.changed.emit(frozenset({"plane"}))

    def set_slice(self, index: int) -> None:
        """Move to slice ``index`` of the current plane (clamped to the volume)."""
        if self.case is None:
            return
        cur = list(self.cursor)
        cur[planes.NORMAL_AXIS[self.plane]] = int(np.clip(index, 0, self.n_slices - 1))
        self.set_cursor(tuple(cur))

    def step_slice(self, steps: int) -> None:
        self.set_slice(self.slice_index + int(steps))

    def set_cursor(self, ijk) -> None:
        """Move the 3D cursor to voxel ``ijk`` (clamped to the volume)."""
        if self.case is None:
            return
        ijk = tuple(int(np.clip(v, 0, n - 1)) for v, n in zip(ijk, self.shape))
        if ijk != self.cursor:
            self.cursor = ijk
            self.changed.emit(frozenset({"cursor"}))

    # ----- look
    def _set_look(self, name: str, value) -> None:
        if getattr(self, name) != value:
            setattr(self, name, value)
            self.changed.emit(frozenset({"look"}))

    def set_modality(self, modality: str) -> None:
        if modality not in MODALITIES:
            raise ValueError(modality)
        self._set_look("modality", modality)

    def set_colormap(self, name: str) -> None:
        colormaps.heat_lut(name)  # validates
        self._set_look("colormap", name)

    def set_seg_opacity(self, value: float) -> None:
        self._set_look("seg_opacity", float(np.clip(value, 0.0, 1.0)))

    def set_heat_opacity(self, value: float) -> None:
        self._set_look("heat_opacity", float(np.clip(value, 0.0, 1.0)))

    def set_cam_class(self, code: str | None) -> None:
        self._set_look("cam_class", code)

    def set_label_source(self, source: str) -> None:
        if source not in (MODEL, REFERENCE):
            raise ValueError(source)
        self._set_look("label_source", source)

    def default_window(self, modality: str | None = None) -> tuple[float, float]:
        """Robust window of a modality: 1st..99th percentile of its non-zero voxels."""
        modality = modality or self.modality
        stats = self.case.intensity_stats(modality)
        lo, hi = stats.p1, stats.p99
        if hi <= lo:
            lo, hi = stats.minimum, max(stats.maximum, stats.minimum + 1.0)
        return float(lo), float(hi)

    @property
    def window(self) -> tuple[float, float]:
        """Current ``(low, high)`` display window of the modality shown."""
        if self.case is None:
            return 0.0, 1.0
        if self.modality not in self.windows:
            self.windows[self.modality] = self.default_window()
        return self.windows[self.modality]

    def set_window(self, lo: float, hi: float) -> None:
        """Set the window of the modality shown (``hi`` is kept above ``lo``)."""
        lo, hi = float(lo), float(hi)
        if hi <= lo:
            hi = lo + 1e-3 * max(1.0, abs(lo))
        if self.case is not None and self.windows.get(self.modality) != (lo, hi):
            self.windows[self.modality] = (lo, hi)
            self.changed.emit(frozenset({"look"}))

    def reset_window(self) -> None:
        if self.case is not None:
            self.set_window(*self.default_window())

    # ----- volumes
    @property
    def image(self) -> np.ndarray | None:
        """The modality shown, ``(X, Y, Z)`` float32."""
        return None if self.case is None else self.case.images[self.modality]

    @property
    def labels(self) -> np.ndarray | None:
        """The label map shown (model or reference), ``(X, Y, Z)`` uint8, or ``None``."""
        if self.case is None:
            return None
        model = self.result.labels if self.result is not None else None
        if self.label_source == MODEL and model is not None:
            return model
        if self.label_source == REFERENCE and self.case.labels is not None:
            return self.case.labels
        return model

    @property
    def label_title(self) -> str:
        """What the label panes show, in words."""
        if self.labels is None:
            return "no segmentation yet"
        if self.case is not None and self.labels is self.case.labels:
            return "reference labels (from the case's label file)"
        return "model segmentation"

    @property
    def heat(self) -> np.ndarray | None:
        """The Grad-CAM shown, ``(X, Y, Z)`` float32 in [0, 1], or ``None``."""
        if self.result is None or not self.result.cams:
            return None
        return self.result.cams.get(self.cam_class) if self.cam_class else None

    def display_slice(self, volume: np.ndarray | None, transform=None) -> np.ndarray | None:
        """The current slice of ``volume`` as shown on screen (:func:`planes.display_slice`).

        Reads from a cached :func:`planes.slice_stack` of the volume (built on first use per plane and
        convention), so a slider step costs a contiguous read. ``transform`` (e.g.
        :func:`colormaps.heat_index`) is applied to the whole volume before stacking.
        """
        if volume is None:
            return None
        key = (id(volume), self.plane, self.convention, transform)
        entry = self._stacks.pop(key, None)
        if entry is None or entry[0] is not volume:
            data = volume if transform is None else transform(volume)
            entry = (volume, planes.slice_stack(data, self.plane, self.convention))
        self._stacks[key] = entry  # most recently used last
        while len(self._stacks) > MAX_STACKS:
            self._stacks.pop(next(iter(self._stacks)))
        return entry[1][self.slice_index]

    def content_box(self) -> tuple[int, int, int, int] | None:
        """``(row0, row1, col0, col1)`` (inclusive) of the head in the current plane's display pixels.

        The head is where any modality is non-zero (skull-stripped data: the brain); ``None`` when
        everything is zero.
        """
        if self.case is None:
            return None
        if self._box_cache[0] is not self.case:
            from braingui.geometry import bounding_box

            mask = np.zeros(self.shape, dtype=bool)
            for volume in self.case.images.values():
                mask |= volume != 0
            self._box_cache = (self.case, bounding_box(mask))
        bounds = self._box_cache[1]
        if bounds is None:
            return None
        lo, hi = bounds
        corners = [planes.voxel_to_pixel(c, self.shape, self.plane, self.convention)
                   for c in (lo, tuple(h - 1 for h in hi))]
        rows, cols = [c[0] for c in corners], [c[1] for c in corners]
        return min(rows), max(rows), min(cols), max(cols)

    @property
    def has_tumour(self) -> bool:
        """True when the label map shown has any tumour voxel (cached per map)."""
        labels = self.labels
        if labels is None:
            return False
        if self._any_cache[0] is not labels:
            self._any_cache = (labels, bool(labels.any()))
        return self._any_cache[1]
