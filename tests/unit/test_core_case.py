"""The case model: RAS+, float32, read-only, one affine; warnings; label conventions and region volumes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from braingui.case import load_case
from braingui.discovery import MODALITIES
from helpers import LPS_AFFINE, MODS, SHAPE, brain_volumes, canonical, make_case_folder, tumour_labels, write_nifti

# Independent statement of the conventions (value sets per region), from the BraTS / MSD documentation.
REGION_VALUES = {
    "brats": {"ET": {4}, "TC": {1, 4}, "WT": {1, 2, 4}},
    "brats2023": {"ET": {3}, "TC": {1, 3}, "WT": {1, 2, 3}},
    "msd": {"ET": {3}, "TC": {2, 3}, "WT": {1, 2, 3}},
}


def _expected_ml(raw: np.ndarray, convention: str, voxel_mm3: float) -> dict[str, float]:
    return {r: float(np.isin(raw, list(v)).sum()) * voxel_mm3 / 1000.0 for r, v in REGION_VALUES[convention].items()}


PIR_AFFINE = np.array([[0, 0, -1.0, 4], [-1.0, 0, 0, 5], [0, -1.0, 0, 6], [0, 0, 0, 1]])


@pytest.mark.parametrize("affine", [LPS_AFFINE, np.diag([1.0, 1, 1, 1]), PIR_AFFINE], ids=["LPS", "RAS", "PIR"])
def test_volumes_are_ras_float32_readonly_with_one_affine(tmp_path, affine):
    vols = {m: v.astype(np.int16) for m, v in brain_volumes().items()}
    paths = make_case_folder(tmp_path / "c", volumes=vols, affine=affine, labels=None)
    case = load_case(tmp_path / "c")
    ref_affine = None
    for m in MODS:
        img = nib.as_closest_canonical(nib.load(paths[m]))
        expected = np.asarray(img.dataobj, dtype=np.float32)
        arr = case.images[m]
        assert arr.dtype == np.float32
        np.testing.assert_array_equal(arr, expected)
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0, 0, 0] = 1.0
        ref_affine = img.affine if ref_affine is None else ref_affine
        np.testing.assert_allclose(img.affine, ref_affine)
    np.testing.assert_allclose(case.grid.affine, ref_affine)
    assert nib.aff2axcodes(case.grid.affine) == ("R", "A", "S")
    assert case.grid.shape == expected.shape
    assert "".join(case.grid.original_axcodes) == "".join(nib.aff2axcodes(affine))
    # The file on disk is not touched by loading.
    np.testing.assert_array_equal(np.asarray(nib.load(paths["t1"]).dataobj), vols["t1"])


def test_float32_uncompressed_ras_volume_is_a_private_copy(tmp_path):
    """A RAS float32 .nii is memory-mapped by nibabel; the case must not alias the file's mapping."""
    vols = brain_volumes()
    vols["flair"][3, 3, 3] = np.nan
    paths = make_case_folder(tmp_path / "c", volumes=vols, affine=np.eye(4), ext=".nii", labels=None)
    case = load_case(tmp_path / "c")
    assert case.images["flair"][3, 3, 3] == 0.0
    for m in MODS:
        assert not isinstance(case.images[m].base, np.memmap)
        base = case.images[m]
        while base.base is not None and isinstance(base.base, np.ndarray):
            base = base.base
        assert not isinstance(base, np.memmap), m
    assert np.isnan(np.asarray(nib.load(paths["flair"]).dataobj)[3, 3, 3])


def test_scaled_integer_data_is_read_as_scaled_float32(tmp_path):
    paths = make_case_folder(tmp_path / "c", labels=None)
    raw = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    img = nib.Nifti1Image(raw, LPS_AFFINE)
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, paths["t2"])
    case = load_case(tmp_path / "c")
    expected, _ = canonical(raw.astype(np.float64) * 0.5 + 10.0, LPS_AFFINE)
    np.testing.assert_allclose(case.images["t2"], expected.astype(np.float32))


def test_stack_follows_the_requested_channel_order(tmp_path):
    make_case_folder(tmp_path / "c", labels=None)
    case = load_case(tmp_path / "c")
    order = ("t2", "flair", "t1ce", "t1")
    stack = case.stack(order)
    assert stack.shape == (4,) + case.grid.shape and stack.dtype == np.float32
    for i, m in enumerate(order):
        np.testing.assert_array_equal(stack[i], case.images[m])
    np.testing.assert_array_equal(case.stack()[0], case.images[MODALITIES[0]])


def test_nan_and_inf_are_zeroed_with_a_warning(tmp_path):
    vols = brain_volumes()
    vols["t1ce"][2, 3, 4] = np.nan
    vols["t1ce"][3, 3, 4] = np.inf
    vols["t1ce"][4, 3, 4] = -np.inf
    paths = make_case_folder(tmp_path / "c", volumes=vols, labels=None)
    case = load_case(tmp_path / "c")
    assert np.isfinite(case.images["t1ce"]).all()
    expected, _ = canonical(np.nan_to_num(vols["t1ce"], nan=0.0, posinf=0.0, neginf=0.0), LPS_AFFINE)
    np.testing.assert_array_equal(case.images["t1ce"], expected)
    warnings = [w for w in case.warnings if "NaN" in w]
    assert len(warnings) == 1 and "3" in warnings[0] and str(paths["t1ce"]) in warnings[0]


def test_all_zero_modality_warns_and_loads(tmp_path):
    vols = brain_volumes()
    vols["t2"][:] = 0
    paths = make_case_folder(tmp_path / "c", volumes=vols, labels=None)
    case = load_case(tmp_path / "c")
    assert not case.images["t2"].any()
    assert any("all zero" in w and str(paths["t2"]) in w for w in case.warnings)
    assert not any(str(paths["t1"]) in w for w in case.warnings)


def test_clean_case_has_no_warnings(tmp_path):
    make_case_folder(tmp_path / "c")
    assert load_case(tmp_path / "c").warnings == []


# ------------------------------------------------------------------------------------------ labels

@pytest.mark.parametrize("scheme, values, convention", [
    ("brats", (1, 2, 4), "brats"),
    ("brats2023", (1, 2, 3), "brats2023"),
])
def test_label_conventions_from_names(tmp_path, scheme, values, convention):
    raw = tumour_labels(values=values)
    make_case_folder(tmp_path / "c", scheme=scheme, labels=raw)
    case = load_case(tmp_path / "c")
    assert case.label_convention == convention
    assert case.labels.dtype == np.uint8 and not case.labels.flags.writeable
    got = case.region_volumes_ml()
    for region, ml in _expected_ml(raw, convention, 1.0).items():
        assert got[region] == pytest.approx(ml, abs=1e-9), region


def test_msd_4d_case_channels_and_labels(tmp_path):
    vols = brain_volumes()
    # MSD channel order: FLAIR, T1w, T1gd, T2w
    image = write_nifti(tmp_path / "imagesTr" / "BRATS_004.nii.gz",
                        np.stack([vols["flair"], vols["t1"], vols["t1ce"], vols["t2"]], axis=-1), LPS_AFFINE)
    # MSD: 1 edema (largest here would also do), 2 non-enhancing, 3 enhancing
    raw = np.zeros(SHAPE, np.uint8)
    raw[1:3, 1:3, 1:3] = 2        # 8 voxels non-enhancing
    raw[3:5, 1:4, 1:4] = 3        # 18 voxels enhancing
    raw[5:7, 1:4, 1:4] = 1        # 18 voxels edema
    write_nifti(tmp_path / "labelsTr" / "BRATS_004.nii.gz", raw, LPS_AFFINE, np.uint8)
    case = load_case(image)
    assert case.label_convention == "msd"
    for m in MODS:
        expected, _ = canonical(vols[m], LPS_AFFINE)
        np.testing.assert_array_equal(case.images[m], expected)
    got = case.region_volumes_ml()
    for region, ml in _expected_ml(raw, "msd", 1.0).items():
        assert got[region] == pytest.approx(ml, abs=1e-9), region
    # Internal map: MSD edema (1) is BraTS 2, MSD non-enhancing (2) is BraTS 1, enhancing 3 -> 4.
    raw_c, _ = canonical(raw, LPS_AFFINE)
    np.testing.assert_array_equal(case.labels, np.select([raw_c == 1, raw_c == 2, raw_c == 3], [2, 1, 4], 0))


def test_msd_channel_order_is_flair_t1_t1gd_t2(tmp_path):
    chans = [np.full(SHAPE, v, np.float32) for v in (11.0, 22.0, 33.0, 44.0)]
    path = write_nifti(tmp_path / "BRATS_010.nii.gz", np.stack(chans, axis=-1), LPS_AFFINE)
    case = load_case(path)
    assert {m: float(case.images[m][0, 0, 0]) for m in MODS} == {"flair": 11.0, "t1": 22.0, "t1ce": 33.0, "t2": 44.0}


def test_unhinted_123_labels_are_detected_by_the_largest_region(tmp_path):
    # Bare names give no hint. Edema is the largest region: value 2 -> BraTS 2023, value 1 -> MSD.
    raw = np.zeros(SHAPE, np.uint8)
    raw[1:7, 1:4, 1:4] = 2   # 54 voxels
    raw[1:3, 5:7, 5:7] = 1   # 8 voxels
    raw[4:6, 5:7, 5:7] = 3   # 8 voxels
    make_case_folder(tmp_path / "a", scheme="bare", labels=raw)
    case = load_case(tmp_path / "a")
    assert case.label_convention == "brats2023"
    assert case.region_volumes_ml()["TC"] == pytest.approx(16 / 1000)
    swapped = np.where(raw == 2, 1, np.where(raw == 1, 2, raw)).astype(np.uint8)
    make_case_folder(tmp_path / "b", scheme="bare", labels=swapped)
    case = load_case(tmp_path / "b")
    assert case.label_convention == "msd"
    assert case.region_volumes_ml()["TC"] == pytest.approx(16 / 1000)
    assert case.region_volumes_ml()["WT"] == pytest.approx(70 / 1000)


def test_forced_convention_overrides_detection(tmp_path):
    raw = tumour_labels(values=(1, 2, 3))
    make_case_folder(tmp_path / "c", scheme="bare", labels=raw)
    case = load_case(tmp_path / "c", label_convention="msd")
    assert case.label_convention == "msd"
    got = case.region_volumes_ml()
    for region, ml in _expected_ml(raw, "msd", 1.0).items():
        assert got[region] == pytest.approx(ml)


def test_unknown_label_values_warn_and_are_dropped(tmp_path):
    raw = tumour_labels(values=(1, 2, 4))
    raw[6, 7, 8] = 7
    raw[6, 7, 7] = 5
    paths = make_case_folder(tmp_path / "c", labels=raw)
    case = load_case(tmp_path / "c")
    assert case.label_convention == "brats"
    warn = [w for w in case.warnings if str(paths["seg"]) in w]
    assert len(warn) == 1 and "5" in warn[0] and "7" in warn[0]
    assert set(np.unique(case.labels)) <= {0, 1, 2, 4}
    assert case.region_volumes_ml()["WT"] == pytest.approx((raw > 0).sum() / 1000 - 2 / 1000)


def test_region_volumes_use_the_voxel_spacing(tmp_path):
    spacing = (1.5, 2.0, 3.0)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (10.0, 20.0, -5.0)
    raw = tumour_labels(values=(1, 2, 4))
    make_case_folder(tmp_path / "c", affine=affine, labels=raw)
    case = load_case(tmp_path / "c")
    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]
    np.testing.assert_allclose(case.grid.spacing, spacing)
    assert case.grid.voxel_ml == pytest.approx(voxel_mm3 / 1000)
    got = case.region_volumes_ml()
    for region, ml in _expected_ml(raw, "brats", voxel_mm3).items():
        assert got[region] == pytest.approx(ml, rel=1e-9), region
    assert got["WT"] == pytest.approx(24 * 9.0 / 1000)


def test_label_map_is_reoriented_with_the_images(tmp_path):
    raw = tumour_labels()
    make_case_folder(tmp_path / "c", labels=raw, affine=PIR_AFFINE)
    case = load_case(tmp_path / "c")
    expected, _ = canonical(raw, PIR_AFFINE)
    np.testing.assert_array_equal(case.labels, expected)
    assert case.labels.shape == case.images["t1"].shape


def test_case_without_labels(tmp_path):
    make_case_folder(tmp_path / "c", labels=None)
    case = load_case(tmp_path / "c")
    assert case.labels is None and case.label_convention is None and case.region_volumes_ml() is None


def test_intensity_stats_over_the_whole_volume(tmp_path):
    vols = brain_volumes()
    make_case_folder(tmp_path / "c", volumes=vols, labels=None)
    case = load_case(tmp_path / "c")
    s = case.intensity_stats("t2")
    nz = vols["t2"][vols["t2"] != 0]
    assert s.minimum == 0.0 and s.maximum == pytest.approx(float(vols["t2"].max()))
    assert s.p1 == pytest.approx(float(np.percentile(nz, 1)), rel=1e-5)
    assert s.p99 == pytest.approx(float(np.percentile(nz, 99)), rel=1e-5)
    assert s.nonzero_fraction == pytest.approx(nz.size / vols["t2"].size)
