"""The one display transform (braingui.display.planes), checked against first principles.

Expectations come from anatomy, not from the code: ITK-SNAP's default (radiological) shows axial slices
from the feet with the patient's left on screen right and anterior at the top, coronal slices with the
patient's left on screen right and superior at the top, sagittal slices with anterior on screen left
and superior at the top. Arrays are RAS+: x grows to the patient's right, y to anterior, z to superior.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from braingui.display import planes
from helpers import LPS_AFFINE, make_case_folder

SHAPE = (10, 12, 14)  # all different, so a transposed slice has the wrong shape


def coded_volume(shape=SHAPE) -> np.ndarray:
    """Each voxel holds its own index: v[x, y, z] = 10000 x + 100 y + z."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (10000 * x + 100 * y + z).astype(np.int64)


def decode(v: int) -> tuple[int, int, int]:
    return v // 10000, (v // 100) % 100, v % 100


@pytest.mark.parametrize("convention", planes.CONVENTIONS)
@pytest.mark.parametrize("plane", planes.PLANES)
def test_every_pixel_shows_the_voxel_anatomy_predicts(plane, convention):
    vol = coded_volume()
    X, Y, Z = SHAPE
    k = 5
    sl = planes.display_slice(vol, plane, k, convention)
    radiological = convention == planes.RADIOLOGICAL
    for r in range(sl.shape[0]):
        for c in range(sl.shape[1]):
            x, y, z = decode(int(sl[r, c]))
            if plane == "axial":      # top = anterior (y max); left = patient right (x max) if radiological
                assert (z, y, x) == (k, Y - 1 - r, X - 1 - c if radiological else c)
            elif plane == "coronal":  # top = superior (z max)
                assert (y, z, x) == (k, Z - 1 - r, X - 1 - c if radiological else c)
            else:                     # sagittal: left = anterior (y max), top = superior
                assert (x, z, y) == (k, Z - 1 - r, Y - 1 - c)


@pytest.mark.parametrize("plane,shape2d", [("axial", (12, 10)), ("coronal", (14, 10)), ("sagittal", (14, 12))])
def test_slice_shape_and_count(plane, shape2d):
    vol = coded_volume()
    assert planes.display_slice(vol, plane, 0).shape == shape2d
    assert planes.slice_shape(SHAPE, plane) == shape2d
    assert planes.n_slices(SHAPE, plane) == SHAPE[planes.NORMAL_AXIS[plane]]


@pytest.mark.parametrize("convention", planes.CONVENTIONS)
@pytest.mark.parametrize("plane", planes.PLANES)
def test_pixel_voxel_round_trip(plane, convention):
    vol = coded_volume()
    rng = np.random.default_rng(1)
    for _ in range(30):
        ijk = tuple(int(rng.integers(0, n)) for n in SHAPE)
        index = ijk[planes.NORMAL_AXIS[plane]]
        r, c = planes.voxel_to_pixel(ijk, SHAPE, plane, convention)
        assert planes.display_slice(vol, plane, index, convention)[r, c] == vol[ijk]
        assert planes.pixel_to_voxel(r, c, index, SHAPE, plane, convention) == ijk


@pytest.mark.parametrize("plane,convention,sides", [
    ("axial", "radiological", {"left": "R", "right": "L", "top": "A", "bottom": "P"}),
    ("axial", "neurological", {"left": "L", "right": "R", "top": "A", "bottom": "P"}),
    ("coronal", "radiological", {"left": "R", "right": "L", "top": "S", "bottom": "I"}),
    ("sagittal", "radiological", {"left": "A", "right": "P", "top": "S", "bottom": "I"}),
    ("sagittal", "neurological", {"left": "A", "right": "P", "top": "S", "bottom": "I"}),
])
def test_side_letters(plane, convention, sides):
    assert planes.layout(plane, convention).sides == sides


def test_out_of_range_slice_and_bad_names_are_refused():
    vol = coded_volume()
    with pytest.raises(IndexError):
        planes.display_slice(vol, "axial", SHAPE[2])
    with pytest.raises(ValueError):
        planes.layout("oblique")
    with pytest.raises(ValueError):
        planes.layout("axial", "upside-down")


def test_pixel_size_follows_the_axes():
    spacing = (0.9, 1.1, 3.0)
    assert planes.pixel_size(spacing, "axial") == (1.1, 0.9)      # rows run along y, columns along x
    assert planes.pixel_size(spacing, "coronal") == (3.0, 0.9)
    assert planes.pixel_size(spacing, "sagittal") == (3.0, 1.1)


@pytest.mark.parametrize("plane,convention,quadrant", [
    ("axial", "radiological", ("top", "right")),     # patient left -> screen right; anterior -> top
    ("axial", "neurological", ("top", "left")),
    ("coronal", "radiological", ("top", "right")),   # superior -> top
    ("coronal", "neurological", ("top", "left")),
    ("sagittal", "radiological", ("top", "left")),   # anterior -> left; superior -> top
])
def test_a_left_anterior_superior_marker_in_an_lps_file_lands_where_itk_snap_shows_it(tmp_path, plane, convention, quadrant):
    """Marker placed by *world* position in a BraTS-like LPS file; read through the real case loader."""
    from braingui.case import load_case

    shape = (20, 22, 24)
    vols = {m: np.full(shape, 10.0, dtype=np.float32) for m in ("flair", "t1", "t1ce", "t2")}
    inv = np.linalg.inv(LPS_AFFINE)
    lo = nib.affines.apply_affine(LPS_AFFINE, [0, 0, 0])
    hi = nib.affines.apply_affine(LPS_AFFINE, np.array(shape) - 1)
    world_min, world_max = np.minimum(lo, hi), np.maximum(lo, hi)
    # patient left = low RAS x; anterior = high y; superior = high z (a few mm inside the edges)
    target = np.array([world_min[0] + 2, world_max[1] - 2, world_max[2] - 2])
    i, j, k = np.rint(nib.affines.apply_affine(inv, target)).astype(int)
    for v in vols.values():
        v[i, j, k] = 1000.0
    make_case_folder(tmp_path / "case", volumes=vols, shape=shape, affine=LPS_AFFINE, labels=None)
    case = load_case(tmp_path / "case")
    img = case.images["flair"]
    ijk = np.argwhere(img == 1000.0)[0]
    index = int(ijk[planes.NORMAL_AXIS[plane]])
    sl = planes.display_slice(img, plane, index, convention)
    r, c = np.argwhere(sl == 1000.0)[0]
    rows, cols = sl.shape
    assert (r < rows / 2) == (quadrant[0] == "top")
    assert (c < cols / 2) == (quadrant[1] == "left")


def test_per_slice_reduces_over_the_plane():
    vol = np.zeros(SHAPE)
    vol[3, 4, 5] = 2.0
    vol[3, 1, 5] = 1.0
    assert np.argmax(planes.per_slice(vol, "axial")) == 5
    assert np.argmax(planes.per_slice(vol, "sagittal", "max")) == 3
    assert planes.per_slice(vol, "coronal")[4] == 2.0


@pytest.mark.parametrize("convention", planes.CONVENTIONS)
@pytest.mark.parametrize("plane", planes.PLANES)
def test_slice_stack_holds_the_display_slices(plane, convention):
    vol = coded_volume()
    stack = planes.slice_stack(vol, plane, convention)
    assert stack.flags.c_contiguous and len(stack) == planes.n_slices(SHAPE, plane)
    for k in range(len(stack)):
        np.testing.assert_array_equal(stack[k], planes.display_slice(vol, plane, k, convention))
