"""The paper's preprocessing and its exact inverses; heat maps land at the right world position."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from braingui.case import load_case
from braingui.preprocess import (
    PAPER_CLS_SHAPE,
    ClassificationPrep,
    SegmentationPrep,
    foreground_mask,
    prepare_classification,
    prepare_segmentation,
    zscore_nonzero,
)
from helpers import MODS, make_case_folder

BRAIN_LO, BRAIN_HI = (4, 3, 5), (21, 27, 19)
GRID = (26, 31, 24)


def _stack(seed: int = 0, grid=GRID, lo=BRAIN_LO, hi=BRAIN_HI) -> np.ndarray:
    """(4, X, Y, Z) float32, brain (> 0, different scales per channel) in [lo, hi), exact zeros elsewhere."""
    rng = np.random.default_rng(seed)
    out = np.zeros((4,) + grid, np.float32)
    sl = tuple(slice(l, h) for l, h in zip(lo, hi))
    for c in range(4):
        out[(c,) + sl] = rng.uniform(10, 100, size=[h - l for l, h in zip(lo, hi)]) * (c + 1)
    return out


def _brain_mask(grid=GRID, lo=BRAIN_LO, hi=BRAIN_HI) -> np.ndarray:
    m = np.zeros(grid, bool)
    m[tuple(slice(l, h) for l, h in zip(lo, hi))] = True
    return m


# ------------------------------------------------------------------------------------------ z-score

def test_zscore_nonzero_mean0_std1_inside_zero_outside():
    vol = _stack()[2]
    out = zscore_nonzero(vol)
    inside = vol != 0
    assert out.dtype == np.float32
    assert abs(float(out[inside].astype(np.float64).mean())) < 1e-5
    assert float(out[inside].astype(np.float64).std()) == pytest.approx(1.0, abs=1e-5)
    assert not out[~inside].any()
    expected = (vol[inside] - vol[inside].astype(np.float64).mean()) / vol[inside].astype(np.float64).std()
    np.testing.assert_allclose(out[inside], expected, rtol=1e-5, atol=1e-5)


def test_zscore_degenerate_volumes_stay_finite():
    assert not zscore_nonzero(np.zeros((3, 4, 5), np.float32)).any()
    const = np.zeros((3, 4, 5), np.float32)
    const[1:, 1:, 1:] = 42.0
    out = zscore_nonzero(const)
    assert np.isfinite(out).all() and not out.any()


# ------------------------------------------------------------------------------------- segmentation

def test_segmentation_bbox_crop_uncrop_is_identity_on_the_brain():
    stack = _stack()
    net = prepare_segmentation(stack, SegmentationPrep(crop="bbox", multiple=8))
    c, *size = net.array.shape
    assert c == 4 and all(n % 8 == 0 for n in size) and net.array.dtype == np.float32
    # the box contains the brain and is no bigger than needed (< 8 more per axis)
    for l, h, s, n in zip(BRAIN_LO, BRAIN_HI, net.grid_map.box.start, net.grid_map.box.size):
        assert s <= l and s + n >= h and n < (h - l) + 8
    zs = np.stack([zscore_nonzero(v) for v in stack])
    back = net.grid_map.inverse(net.array)
    assert back.shape == stack.shape
    brain = _brain_mask()
    np.testing.assert_array_equal(back[:, brain], zs[:, brain])
    np.testing.assert_array_equal(back, zs)  # the background is 0 both ways


@pytest.mark.parametrize("crop", [(16, 16, 8), (40, 48, 32)], ids=["smaller-than-brain", "larger-than-volume"])
def test_segmentation_fixed_crop_and_padding_inverse(crop):
    stack = _stack()
    net = prepare_segmentation(stack, SegmentationPrep(crop=crop))
    assert net.array.shape == (4,) + crop
    box = net.grid_map.box
    assert box.size == crop
    # centred on the brain (within half a voxel)
    for l, h, s, n in zip(BRAIN_LO, BRAIN_HI, box.start, box.size):
        assert abs((l + h) / 2 - (s + n / 2)) <= 0.5
    zs = np.stack([zscore_nonzero(v) for v in stack])
    back = net.grid_map.inverse(net.array)
    covered = np.zeros(GRID, bool)
    covered[tuple(slice(max(s, 0), min(s + n, g)) for s, n, g in zip(box.start, box.size, GRID))] = True
    np.testing.assert_array_equal(back[:, covered], zs[:, covered])
    assert not back[:, ~covered].any()
    if all(c >= g for c, g in zip(crop, GRID)):
        assert covered.all()  # padding: the whole volume comes back
        # the padded part of the input is exactly 0
        assert np.count_nonzero(net.array) == np.count_nonzero(zs)


def test_segmentation_zoom_halves_the_grid():
    stack = _stack()
    net = prepare_segmentation(stack, SegmentationPrep(crop="bbox", zoom=0.5, multiple=8))
    box = net.grid_map.box
    assert all(n % 8 == 0 for n in net.array.shape[1:])
    for n_box, n_net in zip(box.size, net.array.shape[1:]):
        assert n_net == pytest.approx(n_box * 0.5, abs=8)
    assert net.grid_map.inverse(net.array).shape == stack.shape


def test_channel_order_is_a_parameter_and_permutes_channels():
    stack = _stack(seed=3)
    order = ("t2", "t1ce", "flair", "t1")
    perm = [MODS.index(m) for m in order]
    default = prepare_segmentation(stack, SegmentationPrep())
    permuted = prepare_segmentation(stack[perm], SegmentationPrep(channels=order))
    assert permuted.channels == order and default.channels == MODS
    np.testing.assert_array_equal(permuted.array, default.array[perm])
    assert not np.array_equal(permuted.array, default.array)
    cls_default = prepare_classification(stack, ClassificationPrep(shape=(10, 12, 8)))
    cls_perm = prepare_classification(stack[perm], ClassificationPrep(channels=order, shape=(10, 12, 8)))
    np.testing.assert_array_equal(cls_perm.array, cls_default.array[perm])


def test_channel_order_through_the_case_stack(tmp_path):
    make_case_folder(tmp_path / "c", labels=None)
    case = load_case(tmp_path / "c")
    prep = SegmentationPrep(channels=("t1ce", "t1", "t2", "flair"))  # the MONAI model-zoo order
    net = prepare_segmentation(case.stack(prep.channels), prep)
    full = net.grid_map.inverse(net.array)
    for i, m in enumerate(prep.channels):
        np.testing.assert_allclose(full[i], zscore_nonzero(case.images[m]), atol=1e-6)


# ------------------------------------------------------------------------------------ classification

def test_classification_crop_uses_tolerance_1e8():
    stack = _stack()
    below = stack.copy()
    below[0, 0, 0, 0] = 0.9e-8          # below the tolerance: background
    below[3, GRID[0] - 1, GRID[1] - 1, GRID[2] - 1] = -0.5e-8
    above = stack.copy()
    above[1, 0, 0, 0] = 2e-8            # above the tolerance: extends the box to the corner
    prep = ClassificationPrep(shape=(12, 14, 10))
    assert prep.tolerance == 1e-8 and ClassificationPrep().shape == PAPER_CLS_SHAPE == (120, 148, 120)
    box = prepare_classification(below, prep).grid_map.box
    assert box.start == BRAIN_LO and box.stop == BRAIN_HI
    box = prepare_classification(above, prep).grid_map.box
    assert box.start == (0, 0, 0) and box.stop == BRAIN_HI
    mask = foreground_mask(below)
    np.testing.assert_array_equal(mask, _brain_mask())


def test_classification_shape_is_a_parameter():
    stack = _stack()
    net = prepare_classification(stack, ClassificationPrep(shape=(11, 13, 7)))
    assert net.array.shape == (4, 11, 13, 7)
    assert net.grid_map.inverse(net.array[0]).shape == GRID


def _lps_case(tmp_path):
    """A case stored LPS with anisotropic spacing; brain bbox (canonical) 60 x 74 x 60 = half the paper grid."""
    spacing = (1.2, 0.9, 1.5)
    grid = (66, 80, 64)  # canonical = stored shape (LPS only flips x and y)
    lo = (2, 3, 1)
    hi = (lo[0] + 60, lo[1] + 74, lo[2] + 60)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (80.0, 60.0, -40.0)
    rng = np.random.default_rng(9)
    vols = {}
    for k, m in enumerate(MODS):
        canon = np.zeros(grid, np.float32)
        canon[tuple(slice(l, h) for l, h in zip(lo, hi))] = rng.uniform(1, 50, size=(60, 74, 60)) + 100 * k
        vols[m] = np.ascontiguousarray(canon[::-1, ::-1, :])  # stored LPS
    make_case_folder(tmp_path / "c", scheme="brats", volumes=vols, affine=affine, labels=None, shape=grid)
    return load_case(tmp_path / "c"), lo, hi


@pytest.mark.parametrize("v", [(37, 90, 61), (0, 147, 119), (80, 5, 22)])
def test_heat_map_voxel_lands_at_its_world_position(tmp_path, v):
    case, lo, hi = _lps_case(tmp_path)
    assert case.grid.original_axcodes == ("L", "P", "S")
    net = prepare_classification(case.stack(), ClassificationPrep())
    gm = net.grid_map
    assert net.array.shape == (4,) + PAPER_CLS_SHAPE
    assert gm.box.start == lo and gm.box.stop == hi

    # Where the network voxel v is in the world, derived from first principles: the network grid
    # spans the brain box [lo - 0.5, hi - 0.5] (voxel edges), with voxel centres at (v + 0.5) / n.
    case_coord = np.array([l - 0.5 + (vi + 0.5) * (h - l) / n for l, h, vi, n in zip(lo, hi, v, PAPER_CLS_SHAPE)])
    world = nib.affines.apply_affine(case.grid.affine, case_coord)
    np.testing.assert_allclose(nib.affines.apply_affine(gm.affine(case.grid.affine), v), world, atol=1e-9)

    heat = np.zeros(PAPER_CLS_SHAPE, np.float32)
    heat[v] = 1.0
    on_case = gm.inverse(heat)
    assert on_case.shape == case.grid.shape and on_case.max() > 0
    peak = np.unravel_index(int(np.argmax(on_case)), on_case.shape)
    # the peak is the case voxel whose centre is nearest to the heat voxel's centre
    np.testing.assert_array_equal(peak, np.clip(np.floor(case_coord + 0.5), lo, np.subtract(hi, 1)))
    spacing = np.array(case.grid.spacing)
    assert np.all(np.abs(nib.affines.apply_affine(case.grid.affine, peak) - world) <= spacing / 2 + 1e-9)

    # Onto the file's own (LPS) grid: the peak keeps its world position under the original affine.
    on_file = case.grid.to_original(on_case)
    assert on_file.shape == case.grid.original_shape
    peak_file = np.unravel_index(int(np.argmax(on_file)), on_file.shape)
    world_file = nib.affines.apply_affine(case.grid.original_affine, peak_file)
    np.testing.assert_allclose(world_file, nib.affines.apply_affine(case.grid.affine, peak), atol=1e-9)
    assert np.all(np.abs(world_file - world) <= spacing / 2 + 1e-9)
    # and a NIfTI written with the original affine, read back canonically, agrees with the case grid
    img = nib.as_closest_canonical(nib.Nifti1Image(on_file, case.grid.original_affine))
    np.testing.assert_allclose(img.affine, case.grid.affine, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(img.dataobj), on_case)


def test_smooth_heat_map_centroid_lands_at_its_world_position(tmp_path):
    case, lo, hi = _lps_case(tmp_path)
    gm = prepare_classification(case.stack(), ClassificationPrep()).grid_map
    centre = np.array([50.0, 70.0, 64.0])
    axes = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in PAPER_CLS_SHAPE), indexing="ij", sparse=True)
    heat = np.exp(-sum((a - c) ** 2 for a, c in zip(axes, centre)) / (2 * 6.0 ** 2)).astype(np.float32)
    on_file = case.grid.to_original(gm.inverse(heat))
    idx = np.indices(on_file.shape).reshape(3, -1).astype(np.float64)
    w = on_file.ravel().astype(np.float64)
    centroid_vox = (idx * w).sum(1) / w.sum()
    centroid_world = nib.affines.apply_affine(case.grid.original_affine, centroid_vox)
    expected = nib.affines.apply_affine(gm.affine(case.grid.affine), centre)
    np.testing.assert_allclose(centroid_world, expected, atol=0.05)


def test_foreground_mask_is_any_channel_beyond_the_tolerance_in_magnitude():
    rng = np.random.default_rng(3)
    v = rng.choice([0.0, 5e-9, -5e-9, 2e-8, -2e-8, 1.0], size=(4, 6, 5, 7)).astype(np.float32)
    assert np.array_equal(foreground_mask(v), (np.abs(v) > 1e-8).any(axis=0))
    assert np.array_equal(foreground_mask(v, 0.5), (np.abs(v) > 0.5).any(axis=0))


def test_a_shared_z_scored_stack_gives_the_same_inputs():
    from braingui.preprocess import zscore_stack

    rng = np.random.default_rng(4)
    stack = np.zeros((4, 40, 44, 36), np.float32)
    stack[:, 8:30, 10:34, 6:28] = rng.random((4, 22, 24, 22), dtype=np.float32) * 100 + 1
    normed = zscore_stack(stack)
    assert np.array_equal(normed[2], zscore_nonzero(stack[2]))
    seg = SegmentationPrep(zoom=0.5)
    cls = ClassificationPrep(shape=(16, 16, 16))
    assert np.array_equal(prepare_segmentation(stack, seg, normed).array, prepare_segmentation(stack, seg).array)
    assert np.array_equal(prepare_classification(stack, cls, normed).array, prepare_classification(stack, cls).array)
