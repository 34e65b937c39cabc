"""The one display transform: which voxel of a RAS+ volume lands on which screen pixel.

Every pane, the cursor read-out, the crosshair, the jump buttons and the PNG export go through this
module; nothing else in the app transposes or flips a slice.

Volumes are RAS+ arrays indexed ``[x, y, z]`` (x: patient left -> right, y: posterior -> anterior,
z: inferior -> superior; see :mod:`braingui`). A *display slice* is a 2D array indexed ``[row, col]``
with row 0 at the top of the screen and column 0 at the left, which is how every pane draws it.

Orientation follows ITK-SNAP (and most radiology viewers):

============  ==============================  ===================================
plane         screen left / right             screen top / bottom
============  ==============================  ===================================
axial         R / L (radiological),           A / P (viewed from the feet)
              L / R (neurological)
coronal       R / L (radiological),           S / I
              L / R (neurological)
sagittal      A / P (both conventions)        S / I
============  ==============================  ===================================

The display works in voxel space; an oblique acquisition is shown along its closest RAS axes (as
``nibabel.as_closest_canonical`` and ITK-SNAP's default do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AXIAL, CORONAL, SAGITTAL = "axial", "coronal", "sagittal"
PLANES: tuple[str, ...] = (AXIAL, CORONAL, SAGITTAL)
RADIOLOGICAL, NEUROLOGICAL = "radiological", "neurological"
CONVENTIONS: tuple[str, ...] = (RADIOLOGICAL, NEUROLOGICAL)

NORMAL_AXIS = {SAGITTAL: 0, CORONAL: 1, AXIAL: 2}
"""The volume axis each plane cuts across (its slice index runs along it)."""


@dataclass(frozen=True)
class PlaneLayout:
    """How one plane is laid out on screen.

    Attributes:
        plane: ``axial``, ``coronal`` or ``sagittal``.
        convention: ``radiological`` or ``neurological``.
        normal_axis: volume axis of the slice index.
        row_axis: volume axis that runs down the screen rows.
        col_axis: volume axis that runs along the screen columns.
        row_flip: True when row 0 holds the *highest* index of ``row_axis``.
        col_flip: True when column 0 holds the *highest* index of ``col_axis``.
        sides: anatomical letter at each screen edge: ``left``, ``right``, ``top``, ``bottom``.
    """

    plane: str
    convention: str
    normal_axis: int
    row_axis: int
    col_axis: int
    row_flip: bool
    col_flip: bool
    sides: dict[str, str]


def layout(plane: str, convention: str = RADIOLOGICAL) -> PlaneLayout:
    """The screen layout of ``plane`` in ``convention`` (see the module table)."""
    if plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r}; use one of {PLANES}")
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; use one of {CONVENTIONS}")
    radiological = convention == RADIOLOGICAL
    lr = {"left": "R", "right": "L"} if radiological else {"left": "L", "right": "R"}
    if plane == AXIAL:  # rows: y (anterior at top); columns: x
        return PlaneLayout(plane, convention, 2, 1, 0, True, radiological, {**lr, "top": "A", "bottom": "P"})
    if plane == CORONAL:  # rows: z (superior at top); columns: x
        return PlaneLayout(plane, convention, 1, 2, 0, True, radiological, {**lr, "top": "S", "bottom": "I"})
    # sagittal: rows z (superior at top); columns y (anterior at left), whatever the L/R convention
    return PlaneLayout(plane, convention, 0, 2, 1, True, True, {"left": "A", "right": "P", "top": "S", "bottom": "I"})


def n_slices(shape: tuple[int, ...], plane: str) -> int:
    """Number of slices of a volume of ``shape`` (X, Y, Z) in ``plane``."""
    return int(shape[NORMAL_AXIS[plane]])


def _orient(array: np.ndarray, lay: PlaneLayout, lead: int) -> np.ndarray:
    """THE transform: put the two in-plane axes of ``array`` (at positions ``lead``, ``lead + 1``, in
    volume order) into screen order and flip them as ``lay`` says. Every display path goes through here."""
    if lay.row_axis > lay.col_axis:
        array = np.swapaxes(array, lead, lead + 1)
    index = [slice(None)] * array.ndim
    index[lead] = slice(None, None, -1 if lay.row_flip else 1)
    index[lead + 1] = slice(None, None, -1 if lay.col_flip else 1)
    return array[tuple(index)]


def display_slice(volume: np.ndarray, plane: str, index: int, convention: str = RADIOLOGICAL) -> np.ndarray:
    """Slice ``index`` of ``volume`` in ``plane``, as shown on screen.

    Args:
        volume: ``(X, Y, Z)`` RAS+ array of any dtype (or ``(X, Y, Z, C)``: the trailing axis is kept).
        plane: ``axial``, ``coronal`` or ``sagittal``.
        index: slice number along the plane's normal axis, ``0 <= index < n_slices``.
        convention: ``radiological`` or ``neurological``.

    Returns:
        ``(rows, cols[, C])``: row 0 is the top of the screen, column 0 the left.
    """
    lay = layout(plane, convention)
    n = volume.shape[lay.normal_axis]
    if not 0 <= index < n:
        raise IndexError(f"slice {index} outside 0..{n - 1} of the {plane} plane")
    return _orient(np.take(volume, index, axis=lay.normal_axis), lay, 0)  # remaining axes keep their order


def slice_stack(volume: np.ndarray, plane: str, convention: str = RADIOLOGICAL) -> np.ndarray:
    """Every display slice of ``volume`` in ``plane`` as one C-contiguous array ``(n_slices, rows, cols)``.

    ``slice_stack(v, p, c)[i]`` equals ``display_slice(v, p, i, c)`` (the same transform, done once for
    the whole volume); the panes keep one per shown volume so a slider step reads contiguous memory
    instead of gathering a strided slice.
    """
    lay = layout(plane, convention)
    return np.ascontiguousarray(_orient(np.moveaxis(volume, lay.normal_axis, 0), lay, 1))


def slice_shape(shape: tuple[int, ...], plane: str) -> tuple[int, int]:
    """``(rows, cols)`` of a display slice of a volume of ``shape``."""
    lay = layout(plane)
    return int(shape[lay.row_axis]), int(shape[lay.col_axis])


def pixel_size(spacing: tuple[float, float, float], plane: str) -> tuple[float, float]:
    """``(row height, column width)`` in mm of a display pixel, from the voxel ``spacing`` (x, y, z)."""
    lay = layout(plane)
    return float(spacing[lay.row_axis]), float(spacing[lay.col_axis])


def voxel_to_display(ijk, shape: tuple[int, ...], plane: str, convention: str = RADIOLOGICAL) -> tuple[float, float]:
    """Fractional screen ``(row, col)`` of a fractional voxel ``ijk`` in its slice of ``plane`` (pixel centres
    at integers; what the panes' drawn lines use)."""
    lay = layout(plane, convention)
    r, c = float(ijk[lay.row_axis]), float(ijk[lay.col_axis])
    if lay.row_flip:
        r = shape[lay.row_axis] - 1 - r
    if lay.col_flip:
        c = shape[lay.col_axis] - 1 - c
    return r, c


def display_to_voxel(row: float, col: float, index: float, shape: tuple[int, ...], plane: str,
                     convention: str = RADIOLOGICAL) -> tuple[float, float, float]:
    """Fractional voxel shown at fractional screen ``(row, col)`` of slice ``index`` (inverse of
    :func:`voxel_to_display`)."""
    lay = layout(plane, convention)
    ijk = [0.0, 0.0, 0.0]
    ijk[lay.normal_axis] = float(index)
    ijk[lay.row_axis] = shape[lay.row_axis] - 1 - float(row) if lay.row_flip else float(row)
    ijk[lay.col_axis] = shape[lay.col_axis] - 1 - float(col) if lay.col_flip else float(col)
    return tuple(ijk)


def voxel_to_pixel(ijk, shape: tuple[int, ...], plane: str, convention: str = RADIOLOGICAL) -> tuple[int, int]:
    """Screen ``(row, col)`` of voxel ``ijk`` in its slice of ``plane``."""
    r, c = voxel_to_display(tuple(int(v) for v in ijk), shape, plane, convention)
    return int(r), int(c)


def pixel_to_voxel(row: int, col: int, index: int, shape: tuple[int, ...], plane: str,
                   convention: str = RADIOLOGICAL) -> tuple[int, int, int]:
    """Voxel ``(i, j, k)`` shown at screen ``(row, col)`` of slice ``index`` (inverse of :func:`voxel_to_pixel`)."""
    return tuple(int(v) for v in display_to_voxel(int(row), int(col), int(index), shape, plane, convention))


def per_slice(volume: np.ndarray, plane: str, reduce: str = "sum") -> np.ndarray:
    """Reduce ``volume`` over each slice of ``plane`` (``sum`` or ``max``); result indexed by slice number."""
    axes = tuple(a for a in range(3) if a != NORMAL_AXIS[plane])
    return volume.sum(axis=axes, dtype=np.float64) if reduce == "sum" else volume.max(axis=axes)
