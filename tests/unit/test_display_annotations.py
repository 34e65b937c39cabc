"""RANO diameters and the ruler as display segments (braingui.display.annotations), without Qt."""

from __future__ import annotations

import numpy as np
import pytest

from braingui.display import annotations as ann
from braingui.display import planes
from braingui.measurements import measure

SHAPE = (40, 50, 20)


def ellipse_labels(a_vox: int, b_vox: int, z: int = 10) -> np.ndarray:
    """An enhancing 'lesion': an axis-aligned ellipse (semi-axes a along x, b along y) on slices z-1..z+1."""
    lab = np.zeros(SHAPE, np.uint8)
    x, y = np.mgrid[: SHAPE[0], : SHAPE[1]]
    inside = ((x - 20) / a_vox) ** 2 + ((y - 25) / b_vox) ** 2 <= 1.0
    for k in (z - 1, z, z + 1):
        lab[..., k][inside] = 4
    return lab


@pytest.mark.parametrize("plane", planes.PLANES)
@pytest.mark.parametrize("convention", planes.CONVENTIONS)
def test_display_coordinates_round_trip_and_agree_with_the_integer_transform(plane, convention):
    ijk = (7, 13, 4)
    r, c = ann.voxel_to_display(ijk, SHAPE, plane, convention)
    assert (r, c) == planes.voxel_to_pixel(ijk, SHAPE, plane, convention)
    index = ijk[planes.NORMAL_AXIS[plane]]
    assert ann.display_to_voxel(r, c, index, SHAPE, plane, convention) == pytest.approx(ijk)
    half = ann.display_to_voxel(r + 0.5, c + 0.5, index, SHAPE, plane, convention)  # fractions follow the flips
    assert ann.voxel_to_display(half, SHAPE, plane, convention) == pytest.approx((r + 0.5, c + 0.5))


def test_lesion_segments_lie_on_the_measured_slice_with_the_measured_lengths():
    affine = np.diag([0.8, 1.2, 3.0, 1.0])  # anisotropic voxels
    m = measure(ellipse_labels(12, 6), affine)
    (lesion,) = m.lesions
    segs = ann.lesion_segments(m, SHAPE, "axial", lesion.slice_index, "radiological")
    assert [s.kind for s in segs] == ["longest", "perpendicular"]
    for seg, mm in zip(segs, (lesion.longest_mm, lesion.perpendicular_mm)):
        assert ann.ruler_mm(seg.start, seg.end, affine, SHAPE, "axial", lesion.slice_index) == pytest.approx(mm, abs=1e-6)
    assert segs[0].label.startswith("1: ")
    assert ann.lesion_segments(m, SHAPE, "axial", lesion.slice_index + 5) == []  # other slices: nothing
    assert ann.lesion_segments(m, SHAPE, "coronal", lesion.slice_index) == []  # RANO measures axially
    assert ann.lesion_segments(None, SHAPE, "axial", 0) == []


def test_the_ruler_measures_millimetres_along_the_plane_axes():
    affine = np.diag([0.5, 2.0, 4.0, 1.0])
    # axial: rows run along y (2 mm), columns along x (0.5 mm)
    assert ann.ruler_mm((0, 0), (10, 0), affine, SHAPE, "axial", 3) == pytest.approx(20.0)
    assert ann.ruler_mm((0, 0), (0, 10), affine, SHAPE, "axial", 3) == pytest.approx(5.0)
    # sagittal: rows along z (4 mm), columns along y (2 mm)
    assert ann.ruler_mm((0, 0), (3, 4), affine, SHAPE, "sagittal", 7) == pytest.approx(np.hypot(12.0, 8.0))
    seg = ann.ruler_segment((1, 1), (1, 11), affine, SHAPE, "axial", 3)
    assert seg.kind == "ruler" and seg.label == "5.0 mm"
