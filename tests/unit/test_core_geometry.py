"""Grid reorientation, boxes, resampling and the network-grid affine, against nibabel and torch."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest

from braingui.geometry import (
    Box,
    Grid,
    GridMap,
    bounding_box,
    box_centered,
    box_multiple,
    resize_linear,
    resize_nearest,
)


def _rotation(axis: int, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(4)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _perm_affine(codes: str, spacing=(1.0, 2.0, 3.0), origin=(-10.0, 20.0, 5.0)) -> np.ndarray:
    """An affine whose voxel axes point along ``codes`` (e.g. 'PIR'), built from first principles."""
    world_axis = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    aff = np.zeros((4, 4))
    for vox_axis, code in enumerate(codes):
        w, sign = world_axis[code]
        aff[w, vox_axis] = sign * spacing[vox_axis]
    aff[:3, 3] = origin
    aff[3, 3] = 1
    return aff


AFFINES = {
    "RAS": _perm_affine("RAS"),
    "LPS": _perm_affine("LPS"),
    "PIR": _perm_affine("PIR"),
    "ASL": _perm_affine("ASL"),
    "ILP": _perm_affine("ILP"),
    "oblique LPS (12 deg about z)": _rotation(2, 12.0) @ _perm_affine("LPS"),
    "oblique PIR (20 deg about x, 7 about y)": _rotation(0, 20.0) @ _rotation(1, 7.0) @ _perm_affine("PIR"),
    "oblique SAR (30 deg about y)": _rotation(1, 30.0) @ _perm_affine("SAR", spacing=(0.9, 1.1, 2.5)),
}
SHAPE = (5, 6, 7)


@pytest.mark.parametrize("name", list(AFFINES))
def test_grid_agrees_with_as_closest_canonical(name):
    affine = AFFINES[name]
    data = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)
    canon = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    grid = Grid.from_original(SHAPE, affine)
    assert grid.shape == canon.shape
    np.testing.assert_allclose(grid.affine, canon.affine, atol=1e-12)
    np.testing.assert_array_equal(grid.to_canonical(data), np.asarray(canon.dataobj))
    assert grid.original_shape == SHAPE
    np.testing.assert_array_equal(grid.original_affine, affine)
    assert grid.original_axcodes == nib.aff2axcodes(affine)
    assert nib.aff2axcodes(grid.affine) == ("R", "A", "S")


@pytest.mark.parametrize("name", list(AFFINES))
def test_to_canonical_and_to_original_are_inverses(name):
    grid = Grid.from_original(SHAPE, AFFINES[name])
    rng = np.random.default_rng(2)
    orig = rng.normal(size=SHAPE)
    np.testing.assert_array_equal(grid.to_original(grid.to_canonical(orig)), orig)
    canon = rng.normal(size=grid.shape)
    np.testing.assert_array_equal(grid.to_canonical(grid.to_original(canon)), canon)
    # leading (channel) axes are carried along untouched
    stack = rng.normal(size=(3,) + SHAPE)
    np.testing.assert_array_equal(grid.to_canonical(stack)[1], grid.to_canonical(stack[1]))
    np.testing.assert_array_equal(grid.to_original(grid.to_canonical(stack)), stack)


@pytest.mark.parametrize("name", list(AFFINES))
def test_every_voxel_keeps_its_world_position(name):
    """A voxel's value sits at the same world point on the original and on the canonical grid."""
    affine = AFFINES[name]
    grid = Grid.from_original(SHAPE, affine)
    ids = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE)  # value = original flat index
    canon = grid.to_canonical(ids)
    for ijk in itertools.product(*(range(n) for n in grid.shape)):
        orig_ijk = np.unravel_index(int(canon[ijk]), SHAPE)
        np.testing.assert_allclose(grid.voxel_to_world(np.array(ijk, float)),
                                   nib.affines.apply_affine(affine, np.array(orig_ijk, float)), atol=1e-9)


def test_reorientation_returns_copies():
    """Both maps document "(a copy)": writing into the result must never change the input."""
    for affine in (AFFINES["RAS"], AFFINES["LPS"]):
        grid = Grid.from_original(SHAPE, affine)
        a = np.zeros(SHAPE, dtype=np.float32)
        for out in (grid.to_canonical(a), grid.to_original(a)):
            assert out.flags.c_contiguous and out.flags.writeable
            assert not np.shares_memory(out, a)
            out[...] = 5
        assert not a.any()


def test_world_and_voxel_coordinates_are_inverse():
    grid = Grid.from_original(SHAPE, AFFINES["oblique PIR (20 deg about x, 7 about y)"])
    pts = np.random.default_rng(3).uniform(-5, 10, size=(20, 3))
    np.testing.assert_allclose(grid.world_to_voxel(grid.voxel_to_world(pts)), pts, atol=1e-9)


def test_spacing_and_voxel_volume():
    grid = Grid.from_original(SHAPE, AFFINES["oblique SAR (30 deg about y)"])
    # SAR with spacing (0.9, 1.1, 2.5): canonical x is the third original axis, y the second, z the first
    np.testing.assert_allclose(grid.spacing, (2.5, 1.1, 0.9))
    assert grid.voxel_ml == pytest.approx(0.9 * 1.1 * 2.5 / 1000)


# ----------------------------------------------------------------------------------------- boxes

def test_bounding_box_matches_argwhere():
    mask = np.zeros((9, 10, 11), bool)
    mask[2, 3, 4] = mask[6, 8, 5] = mask[4, 4, 9] = True
    idx = np.argwhere(mask)
    assert bounding_box(mask) == (tuple(idx.min(0)), tuple(idx.max(0) + 1))
    assert bounding_box(np.zeros((3, 3, 3), bool)) is None


@pytest.mark.parametrize("start, size", [((2, 1, 3), (4, 5, 2)), ((-3, -2, 0), (14, 12, 11)), ((5, -4, 7), (6, 6, 6))])
def test_box_extract_paste_identity(start, size):
    rng = np.random.default_rng(4)
    vol = rng.normal(size=(2, 9, 10, 11)).astype(np.float32)
    box = Box(start, size)
    patch = box.extract(vol, fill=-7.0)
    assert patch.shape == (2,) + size
    # every patch voxel is the volume voxel at start + offset, or the fill outside the volume
    for off in itertools.product(*(range(n) for n in size)):
        src = tuple(s + o for s, o in zip(start, off))
        inside = all(0 <= c < n for c, n in zip(src, vol.shape[1:]))
        expected = vol[(slice(None),) + src] if inside else np.full(2, -7.0, np.float32)
        np.testing.assert_array_equal(patch[(slice(None),) + off], expected)
    back = box.paste(patch, vol.shape[1:], fill=0.0)
    inside = np.zeros(vol.shape[1:], bool)
    lo = [max(s, 0) for s in start]
    hi = [min(s + n, m) for s, n, m in zip(start, size, vol.shape[1:])]
    inside[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    np.testing.assert_array_equal(back[:, inside], vol[:, inside])
    assert not back[:, ~inside].any()
    with pytest.raises(ValueError):
        box.paste(patch[..., :-1], vol.shape[1:])


def test_box_centered_and_box_multiple():
    lo, hi = (3, 10, 0), (20, 15, 9)
    b = box_centered(lo, hi, (24, 8, 16))
    assert b.size == (24, 8, 16)
    for l, h, s, n in zip(lo, hi, b.start, b.size):
        centre_bounds, centre_box = (l + h) / 2, s + n / 2
        assert abs(centre_bounds - centre_box) <= 0.5
    m = box_multiple(lo, hi, multiple=8, margin=2)
    for l, h, s, n in zip(lo, hi, m.start, m.size):
        assert n % 8 == 0 and n >= (h - l) + 4 and n < (h - l) + 4 + 8
        assert s <= l - 2 and s + n >= h + 2


# -------------------------------------------------------------------------------------- resampling

@pytest.mark.parametrize("in_shape, out_shape", [
    ((5, 7, 9), (8, 4, 13)),
    ((12, 10, 6), (5, 10, 11)),
    ((3, 4, 5), (9, 16, 2)),
    ((6, 6, 6), (6, 6, 6)),
])
def test_resize_linear_matches_torch_trilinear(in_shape, out_shape):
    torch = pytest.importorskip("torch")
    data = np.random.default_rng(5).normal(size=(2,) + in_shape).astype(np.float32)
    ours = resize_linear(data, out_shape)
    ref = torch.nn.functional.interpolate(torch.from_numpy(data)[None], size=out_shape, mode="trilinear",
                                          align_corners=False)[0].numpy()
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)


def test_resize_linear_accepts_3d_and_keeps_constants():
    ours = resize_linear(np.full((4, 5, 6), 3.5), (7, 2, 9))
    assert ours.shape == (7, 2, 9)
    np.testing.assert_allclose(ours, 3.5)


@pytest.mark.parametrize("in_shape, out_shape", [((5, 7, 9), (8, 4, 13)), ((12, 10, 6), (5, 10, 11))])
def test_resize_nearest_matches_torch_nearest_exact(in_shape, out_shape):
    torch = pytest.importorskip("torch")
    labels = np.random.default_rng(6).integers(0, 5, size=in_shape).astype(np.uint8)
    ours = resize_nearest(labels, out_shape)
    ref = torch.nn.functional.interpolate(torch.from_numpy(labels.astype(np.float32))[None, None], size=out_shape,
                                          mode="nearest-exact")[0, 0].numpy()
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, ref.astype(np.uint8))


# -------------------------------------------------------------------------------------------- GridMap

def test_gridmap_affine_without_resampling_is_a_pure_shift():
    case_aff = AFFINES["oblique LPS (12 deg about z)"]
    gm = GridMap(Box((2, -1, 3), (4, 5, 6)), (4, 5, 6), (9, 9, 9))
    net_aff = gm.affine(case_aff)
    for ijk in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        case_ijk = np.add(ijk, (2, -1, 3))
        np.testing.assert_allclose(nib.affines.apply_affine(net_aff, ijk), nib.affines.apply_affine(case_aff, case_ijk))


def test_gridmap_affine_fov_edges_coincide():
    """align_corners=False: the network grid's outer voxel faces coincide with the box's faces."""
    case_aff = _perm_affine("RAS", spacing=(1.5, 2.0, 0.5))
    box = Box((3, 4, 5), (10, 12, 8))
    gm = GridMap(box, (25, 6, 8), (20, 20, 20))
    net_aff = gm.affine(case_aff)
    net_lo = nib.affines.apply_affine(net_aff, [-0.5, -0.5, -0.5])
    net_hi = nib.affines.apply_affine(net_aff, np.subtract(gm.out_shape, 0.5))
    np.testing.assert_allclose(net_lo, nib.affines.apply_affine(case_aff, np.subtract(box.start, 0.5)))
    np.testing.assert_allclose(net_hi, nib.affines.apply_affine(case_aff, np.subtract(box.stop, 0.5)))


def test_gridmap_resampling_agrees_with_its_affine():
    """Resample a linear ramp (value = case voxel coordinate); interior network voxels must hold the case
    coordinate that the network affine assigns to them."""
    shape = (12, 14, 10)
    case_aff = AFFINES["oblique PIR (20 deg about x, 7 about y)"]
    box = Box((1, 2, 0), (9, 10, 8))
    gm = GridMap(box, (21, 6, 16), shape)
    ramps = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij"))
    net = gm.forward(ramps)
    assert net.shape == (3, 21, 6, 16)
    to_case = np.linalg.inv(case_aff) @ gm.affine(case_aff)
    for ijk in itertools.product(range(2, 19), range(1, 5), range(2, 14)):
        expected = nib.affines.apply_affine(to_case, ijk)
        np.testing.assert_allclose(net[(slice(None),) + ijk], expected, atol=1e-4)


def test_gridmap_inverse_is_exact_without_resampling():
    gm = GridMap(Box((-2, 1, 3), (8, 6, 5)), (8, 6, 5), (7, 9, 10))
    vol = np.random.default_rng(7).normal(size=(7, 9, 10)).astype(np.float32)
    back = gm.inverse(gm.forward(vol))
    inside = np.zeros(vol.shape, bool)
    inside[0:6, 1:7, 3:8] = True
    np.testing.assert_array_equal(back[inside], vol[inside])
    assert not back[~inside].any()


@pytest.mark.parametrize("view", [
    lambda a: a[::-1, ::-1, :],                 # LPS Fortran file seen in RAS (BraTS)
    lambda a: a.transpose(2, 0, 1)[:, ::-1],    # an oblique-ish axis swap
    lambda a: a,                                # already C-ordered
    lambda a: a[:, :, ::-1][1:, 3:],            # cropped, odd sizes
])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, bool])
def test_c_order_copy_equals_numpy_copy_of_any_view(view, dtype):
    """The tiled copy (several tiles on each axis: 150 > 64, 37 > 8) gives numpy's values, C-ordered, a copy."""
    from braingui.geometry import c_order_copy

    rng = np.random.default_rng(3)
    base = np.asfortranarray((rng.random((150, 37, 11)) * 3000).astype(dtype))
    seen = view(base)
    for target in (None, np.float32):
        out = c_order_copy(seen, target)
        expected = np.array(seen, dtype=target, order="C")
        assert out.flags.c_contiguous and out.dtype == expected.dtype
        assert np.array_equal(out, expected)
        assert not np.shares_memory(out, base)


def test_c_order_copy_of_leading_axes_and_empty_arrays():
    from braingui.geometry import c_order_copy

    four = np.asfortranarray(np.arange(3 * 70 * 9 * 5, dtype=np.int32).reshape(3, 70, 9, 5))[:, ::-1, :, ::-1]
    assert np.array_equal(c_order_copy(four, np.float32), np.array(four, dtype=np.float32, order="C"))
    empty = np.zeros((0, 4, 5), dtype=np.int16).T
    assert c_order_copy(empty).shape == (5, 4, 0)
