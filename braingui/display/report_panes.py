"""The panes of the PDF case report without widgets: each plane's layers at its largest-tumour slice, and
the largest lesion's measured slice with its diameters (Qt-free; :mod:`braingui.display.report_model`
uses it, :mod:`braingui.ui.report_pdf` paints the result).

Slices are cut through the one display transform (:mod:`braingui.display.planes`) from a
:class:`DisplayContext` (its window, labels, map and tumour / hottest voxel) and coloured by
:mod:`braingui.display.colormaps`; each is cropped to the head (a margin of :data:`CROP_PAD`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braingui.display import colormaps, planes
from braingui.display.context import DisplayContext

CROP_PAD = 0.04
"""Margin kept around the head when a pane is cropped (fraction of the slice's larger side)."""
MEASURED_HALF_MM = 30.0
"""Half the side (mm) of the view of the measured lesion, at least (0.8 x its longest diameter if larger)."""


@dataclass(frozen=True)
class PlaneSlices:
    """The layers of the four panes in one plane, cropped to the head, as display pixels.

    Every array is ``(rows, cols, 4)`` uint8 RGBA (row 0 at the top) unless said otherwise.

    Attributes:
        plane: ``axial``, ``coronal`` or ``sagittal``.
        slice_number: 1-based slice shown (as the window counts); n_slices: slices in the plane.
        voxel: canonical voxel ``(i, j, k)`` the slice was centred on.
        why: ``"largest tumour slice"``, ``"hottest Grad-CAM voxel"`` or ``"volume centre"``.
        sides: anatomical letter at each edge (``left``, ``right``, ``top``, ``bottom``).
        pixel_mm: ``(row height, column width)`` of a pixel in mm.
        base: the windowed anatomy, opaque.
        fill: label colours (clear background), or ``None`` without labels.
        outline: label outlines, or ``None``.
        heat: heat-map colours (opaque), or ``None`` without a map.
        head: bool ``(rows, cols)``, True where any sequence is non-zero.
        origin: ``(row, col)`` of the crop's top-left pixel in the whole display slice.
    """

    plane: str
    slice_number: int
    n_slices: int
    voxel: tuple[int, int, int]
    why: str
    sides: dict[str, str]
    pixel_mm: tuple[float, float]
    base: np.ndarray
    fill: np.ndarray | None
    outline: np.ndarray | None
    heat: np.ndarray | None
    head: np.ndarray
    origin: tuple[int, int] = (0, 0)


def display_context(case, result, modality: str, colormap: str, convention: str, window, cam_class) -> DisplayContext:
    """A :class:`DisplayContext` showing ``case`` and ``result`` with the given look (``window``: ``(lo, hi)``
    or ``None`` for the automatic one; ``cam_class``: ``None`` for the predicted class's map)."""
    ctx = DisplayContext()
    ctx.convention, ctx.colormap, ctx.modality = convention, colormap, modality
    ctx.set_case(case)
    ctx.set_result(result)
    if cam_class is not None and result is not None and cam_class in result.cams:
        ctx.cam_class = cam_class
    if window is not None:
        ctx.windows[ctx.modality] = (float(window[0]), float(window[1]))
    return ctx


def plane_slices(ctx: DisplayContext, plane: str, index: int | None = None, why: str = "",
                  box: tuple[int, int, int, int] | None = None) -> PlaneSlices:
    """The four panes' layers of ``plane``: at slice ``index`` when given, else at its largest-tumour slice
    (see the module docstring); cropped to ``box`` (display pixels, inclusive) or to the head."""
    ctx.set_plane(plane)
    if index is not None:
        voxel = list(ctx.cursor)
        voxel[planes.NORMAL_AXIS[plane]] = index
    else:
        voxel, why = ctx.tumour_voxel(), "largest tumour slice"
        if voxel is None and ctx.heat is not None and float(ctx.heat.max()) > 0:
            voxel, why = ctx.hottest_voxel(), "hottest Grad-CAM voxel"
        if voxel is None:
            voxel, why = tuple(int(n) // 2 for n in ctx.shape), "volume centre"
    ctx.set_cursor(voxel, user=False)
    index, conv = ctx.slice_index, ctx.convention

    def cut(volume):
        return None if volume is None else planes.display_slice(volume, plane, index, conv)

    rows, cols = planes.slice_shape(ctx.shape, plane)
    if box is None:
        head = ctx.content_box() or (0, rows - 1, 0, cols - 1)
        pad = int(round(CROP_PAD * max(rows, cols)))
        box = (head[0] - pad, head[1] + pad, head[2] - pad, head[3] + pad)
    r0, r1, c0, c1 = max(box[0], 0), min(box[1], rows - 1), max(box[2], 0), min(box[3], cols - 1)

    def crop(image):
        return None if image is None else np.ascontiguousarray(image[r0:r1 + 1, c0:c1 + 1])

    labels, heat = cut(ctx.labels), cut(ctx.heat)
    return PlaneSlices(
        plane=plane, slice_number=index + 1, n_slices=ctx.n_slices, voxel=tuple(int(v) for v in ctx.cursor), why=why,
        sides=dict(planes.layout(plane, conv).sides), pixel_mm=planes.pixel_size(ctx.case.grid.spacing, plane),
        base=crop(colormaps.grey_rgba(cut(ctx.image), *ctx.window)),
        fill=crop(None if labels is None else colormaps.label_rgba(labels)),
        outline=crop(None if labels is None else colormaps.outline_rgba(labels)),
        heat=crop(None if heat is None else colormaps.heat_rgba(heat, ctx.colormap)),
        head=crop(cut(ctx.brain_mask())), origin=(r0, c0))


def axial_pixel(ctx: DisplayContext, xyz, origin: tuple[int, int] = (0, 0)) -> tuple[float, float]:
    """Axial display ``(row, col)``, less ``origin``, of a canonical voxel coordinate that may be fractional
    (:func:`planes.voxel_to_pixel`, affine per axis, applied to floats)."""
    at = [np.array(planes.voxel_to_pixel(v, ctx.shape, planes.AXIAL, ctx.convention), float)
          for v in ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1))]
    pixel = at[0] + sum(float(x) * (a - at[0]) for x, a in zip(xyz, at[1:]))
    return float(pixel[0]) - origin[0], float(pixel[1]) - origin[1]


def measured_view(ctx: DisplayContext, summary: dict) -> tuple[PlaneSlices | None, list]:
    """The largest lesion's measured axial slice, cropped around it, and its two diameters as crop pixels."""
    lesions = (summary.get("measurements") or {}).get("lesions") or []
    if not lesions or ctx.labels is None:
        return None, []
    les = lesions[0]
    ends = [axial_pixel(ctx, p) for p in les["longest_ends_voxel"]]
    pix = planes.pixel_size(ctx.case.grid.spacing, planes.AXIAL)
    half_mm = max(MEASURED_HALF_MM, 0.8 * float(les["longest_mm"]))
    (rc, cc), (hr, hc) = np.mean(ends, axis=0), (half_mm / pix[0], half_mm / pix[1])
    box = (int(np.floor(rc - hr)), int(np.ceil(rc + hr)), int(np.floor(cc - hc)), int(np.ceil(cc + hc)))
    ps = plane_slices(ctx, planes.AXIAL, les["slice"] - 1, f"lesion {les['index']}'s measured slice", box)
    return ps, [tuple(axial_pixel(ctx, p, ps.origin) for p in les[key])
                for key in ("longest_ends_voxel", "perpendicular_ends_voxel")]
