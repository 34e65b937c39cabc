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
from braingui.discovery import MODALITIES, MODALITY_TITLES
from braingui.labels import LABEL_NAMES
from braingui.results import AnalysisResult
from braingui.display import colormaps, planes
from braingui.display.signal import Signal

MAX_STACKS = 6
"""Slice stacks kept (shown volumes x planes); each is one copy of a volume (~36 MB at 240x240x155 float32)."""

WINDOW_PERCENTILES = (0.5, 99.8)
"""Percentiles (inside the brain) of the automatic display window."""

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
        self.show_measurements = True
        """The panes draw the RANO diameters of the lesions measured on the slice shown (axial)."""
        self.ruler: tuple[tuple[float, float], tuple[float, float]] | None = None
        """A line the user drew on the slice shown, display ``(row, col)`` ends; cleared with the slice."""
        self.show_uncertainty = False
        """Segmentation pane shows the TTA uncertainty map (with the label outlines) instead of the label fill."""
        self._stacks: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self.navigated = False
        """True once the user moved the cursor or slice since the case opened (the app's own jumps don't count)."""
        self._any_cache: tuple = (None, False)
        self._box_cache: tuple = (None, None)
        self._brain_cache: tuple = (None, None)
        self._unc_cache: tuple = (None, None)

    # ----- data
    def set_case(self, case: Case | None) -> None:
        """Show ``case`` (drops any result); the cursor goes to the volume centre."""
        self.case, self.result, self.windows, self.cam_class = case, None, {}, None
        self.navigated = False
        self.ruler = None
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
            self.plane, self.ruler = plane, None
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

    def set_cursor(self, ijk, user: bool = True) -> None:
        """Move the 3D cursor to voxel ``ijk`` (clamped to the volume).

        Args:
            ijk: canonical voxel index ``(i, j, k)``.
            user: False for the app's own moves (the first view after an analysis), which leave
                :attr:`navigated` as it is.
        """
        if self.case is None:
            return
        ijk = tuple(int(np.clip(v, 0, n - 1)) for v, n in zip(ijk, self.shape))
        self.navigated = self.navigated or user
        if self.ruler is not None and ijk[planes.NORMAL_AXIS[self.plane]] != self.slice_index:
            self.ruler = None  # it measured the slice the user left
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

    def set_show_measurements(self, on: bool) -> None:
        self._set_look("show_measurements", bool(on))

    def set_ruler(self, start, end) -> None:
        """Draw the ruler from ``start`` to ``end`` (display ``(row, col)``) on the slice shown; ``None`` clears."""
        self._set_look("ruler", None if start is None else (tuple(map(float, start)), tuple(map(float, end))))

    def annotation_segments(self) -> list:
        """What the panes draw over the slice shown (:mod:`braingui.display.annotations`): the measured
        lesions' two diameters (when :attr:`show_measurements`) and the ruler, with its length in mm."""
        from braingui.display import annotations as ann

        if self.case is None:
            return []
        out = []
        if self.show_measurements and self.result is not None:
            out += ann.lesion_segments(getattr(self.result, "measurements", None), self.shape, self.plane,
                                       self.slice_index, self.convention)
        if self.ruler is not None:
            out.append(ann.ruler_segment(*self.ruler, self.case.grid.affine, self.shape, self.plane,
                                         self.slice_index, self.convention))
        return out

    def set_show_uncertainty(self, on: bool) -> None:
        self._set_look("show_uncertainty", bool(on))

    def set_label_source(self, source: str) -> None:
        if source not in (MODEL, REFERENCE):
            raise ValueError(source)
        self._set_look("label_source", source)

    def default_window(self, modality: str | None = None) -> tuple[float, float]:
        """Robust window of a modality: the 0.5th..99.8th percentile of its voxels inside the brain.

        The brain is :meth:`brain_mask` (non-zero in any sequence). The upper end is high on purpose:
        enhancing tumour is 0.1-4 % of the brain on T1ce, and at the 99th percentile up to 67 % of its
        voxels were clipped to white on the BraTS 2018 cases of ../shared (at 99.8: at most 17 %).
        """
        modality = modality or self.modality
        data = self.case.images[modality]
        inside = data[self.brain_mask()]
        sample = inside[:: max(1, inside.size // 400_000)]
        if sample.size:
            lo, hi = (float(v) for v in np.percentile(sample, WINDOW_PERCENTILES))
        else:
            lo = hi = 0.0
        if hi <= lo:
            lo, hi = float(data.min()), max(float(data.max()), float(data.min()) + 1.0)
        return lo, hi

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
    def uncertainty(self) -> np.ndarray | None:
        """The segmentation's voxel uncertainty scaled to [0, 1] over its legend range
        (:func:`braingui.uncertainty.display_values`), ``(X, Y, Z)`` float32; ``None`` without TTA."""
        raw = None if self.result is None else getattr(self.result, "uncertainty", None)
        if raw is None:
            return None
        if self._unc_cache[0] is not raw:
            from braingui.uncertainty import display_values

            self._unc_cache = (raw, display_values(raw))
        return self._unc_cache[1]

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

            self._box_cache = (self.case, bounding_box(self.brain_mask()))
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

    def brain_mask(self) -> np.ndarray:
        """Voxels non-zero in any sequence (skull-stripped data: the brain), bool ``(X, Y, Z)``; cached per case."""
        if self._brain_cache[0] is not self.case:
            mask = np.zeros(self.shape, dtype=bool)
            for volume in self.case.images.values():
                mask |= volume != 0
            self._brain_cache = (self.case, mask)
        return self._brain_cache[1]

    # ----- navigation (the jump buttons and the first view after an analysis)
    def tumour_voxel(self) -> tuple[int, int, int] | None:
        """Centre of the tumour on the slice of the current plane with the largest tumour area.

        Returns:
            Canonical voxel ``(i, j, k)``: the slice index along the plane's normal, the in-plane
            centroid of that slice's tumour voxels; ``None`` without a label map or tumour.
        """
        labels = self.labels
        if labels is None or not self.has_tumour:
            return None
        tumour = labels > 0
        index = int(np.argmax(planes.per_slice(tumour, self.plane)))
        axis = planes.NORMAL_AXIS[self.plane]
        centre = [int(round(c.mean())) for c in np.nonzero(np.take(tumour, index, axis=axis))]
        centre.insert(axis, index)
        return tuple(centre)

    def hottest_voxel(self) -> tuple[int, int, int] | None:
        """Canonical voxel where the Grad-CAM shown is highest (first in C order on ties), or ``None``."""
        heat = self.heat
        if heat is None:
            return None
        return tuple(int(v) for v in np.unravel_index(int(np.argmax(heat)), heat.shape))

    def jump_to_tumour(self, user: bool = True) -> bool:
        """Move the cursor to :meth:`tumour_voxel`; False (nothing moved) when there is no tumour."""
        voxel = self.tumour_voxel()
        if voxel is not None:
            self.set_cursor(voxel, user=user)
        return voxel is not None

    def jump_to_hottest(self, user: bool = True) -> bool:
        """Move the cursor to :meth:`hottest_voxel`; False when no map is shown."""
        voxel = self.hottest_voxel()
        if voxel is not None:
            self.set_cursor(voxel, user=user)
        return voxel is not None

    # ----- read-out and records
    def describe_voxel(self, ijk) -> dict[str, str]:
        """What the cursor read-out says about canonical voxel ``ijk``, field by field.

        The voxel index is given as the *file's* 0-based voxel index (what FSLeyes and nibabel show for
        the same file), world coordinates in mm (scanner RAS, from the affine).
        """
        case = self.case
        ijk = tuple(int(v) for v in ijk)
        world = case.grid.voxel_to_world(np.array(ijk, dtype=float))
        file_ijk = np.rint(np.linalg.solve(case.grid.original_affine, np.append(world, 1.0))[:3]).astype(int)
        out = {
            "voxel": "({}, {}, {})".format(*file_ijk),
            "world": "({:.1f}, {:.1f}, {:.1f}) mm".format(*world),
            "intensity": f"{MODALITY_TITLES.get(self.modality, self.modality)} {float(self.image[ijk]):.4g}",
        }
        labels = self.labels
        if labels is not None:
            value = int(labels[ijk])
            out["label"] = LABEL_NAMES.get(value, "background") if value else "background"
        heat = self.heat
        if heat is not None:
            out["heat"] = f"{float(heat[ijk]):.2f}"
        return out

    def view_record(self) -> dict:
        """What the panes show, for ``results.json`` ``view`` (and the PDF report).

        ``slice`` is the slice *number* as the window shows it: 1-based, ``1 <= slice <= n_slices``,
        counted along the plane's normal axis of the RAS+ canonical grid (inferior to superior for axial,
        posterior to anterior for coronal, left to right for sagittal); ``cursor_voxel`` is the 0-based
        canonical voxel index of the crosshair.
        """
        return {"plane": self.plane, "slice": self.slice_index + 1, "n_slices": self.n_slices,
                "slice_numbering": "1-based, as shown in the window",
                "cursor_voxel": [int(v) for v in self.cursor], "modality": self.modality,
                "convention": self.convention, "window": [float(v) for v in self.window],
                "colormap": self.colormap, "gradcam_class": self.cam_class, "labels_shown": self.label_title}
