"""What the panes draw on top of the images, Qt-free: the RANO diameters of the measured lesions and the
ruler, as segments in display pixels, and the ruler's length in millimetres.

Display pixels are the ``(row, col)`` of :mod:`braingui.display.planes` (row 0 at the top); a point's
coordinates are fractional, pixel *centres* at integers, as the measured ends
(:class:`braingui.measurements.Lesion`: canonical voxel coordinates, half-integers on the outline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braingui.display import planes

Point = tuple[float, float]


@dataclass(frozen=True)
class Segment:
    """A line to draw: ``start``/``end`` in display pixels ``(row, col)``, its ``label`` and ``kind``
    (``longest``, ``perpendicular`` or ``ruler``)."""

    start: Point
    end: Point
    label: str
    kind: str


voxel_to_display = planes.voxel_to_display
display_to_voxel = planes.display_to_voxel


def lesion_segments(measurements, shape: tuple[int, ...], plane: str, slice_index: int,
                    convention: str = planes.RADIOLOGICAL) -> list[Segment]:
    """The two diameters of every lesion measured on this slice (axial plane only: RANO measures axially).

    Args:
        measurements: a :class:`braingui.measurements.Measurements` (or ``None``).
        shape: canonical grid shape ``(X, Y, Z)``.
        plane, slice_index, convention: what the pane shows.
    """
    if measurements is None or plane != planes.AXIAL:
        return []
    out = []
    for lesion in measurements.lesions:
        if lesion.slice_index != slice_index:
            continue
        for kind, ends, mm in (("longest", lesion.longest_ends, lesion.longest_mm),
                               ("perpendicular", lesion.perpendicular_ends, lesion.perpendicular_mm)):
            a, b = (voxel_to_display(p, shape, plane, convention) for p in ends)
            label = f"{lesion.index}: {mm:.0f} mm" if kind == "longest" else f"{mm:.0f} mm"
            out.append(Segment(a, b, label, kind))
    return out


def ruler_mm(start: Point, end: Point, affine: np.ndarray, shape: tuple[int, ...], plane: str, slice_index: int,
             convention: str = planes.RADIOLOGICAL) -> float:
    """Length in mm of a line drawn between two display points of one slice.

    Args:
        start, end: display ``(row, col)`` (fractional).
        affine: the canonical grid's voxel-to-world affine (``Grid.affine``; anisotropic and oblique
            voxels are measured exactly).
    """
    a = np.array(display_to_voxel(*start, slice_index, shape, plane, convention))
    b = np.array(display_to_voxel(*end, slice_index, shape, plane, convention))
    return float(np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3] @ (b - a)))


def ruler_segment(start: Point, end: Point, affine: np.ndarray, shape: tuple[int, ...], plane: str,
                  slice_index: int, convention: str = planes.RADIOLOGICAL) -> Segment:
    """The ruler as a :class:`Segment` labelled with its length."""
    mm = ruler_mm(start, end, affine, shape, plane, slice_index, convention)
    return Segment(tuple(start), tuple(end), f"{mm:.1f} mm", "ruler")
