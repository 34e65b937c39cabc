"""Tests of the synthetic phantom (braingui.phantom): anatomy, contrast, labels, determinism, writing."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from braingui.phantom import DESCRIP, MODALITIES, TISSUES, Phantom, TumourSpec, make_phantom, write_case

SHAPE = (48, 56, 40)
SPACING = (1.5, 1.25, 2.0)  # anisotropic on purpose, to catch axis mix-ups in affines


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(SHAPE, SPACING, seed=0)


def _mean(ph, modality, tissue):
    mask = ph.tissues == TISSUES[tissue]
    assert mask.sum() >= 5, f"too few {tissue} voxels to compare"
    return float(ph.images[modality][mask].mean())


def test_arrays_have_the_documented_types(phantom):
    assert set(phantom.images) == set(MODALITIES)
    for image in phantom.images.values():
        assert image.shape == SHAPE and image.dtype == np.float32
    assert phantom.labels.shape == SHAPE and phantom.labels.dtype == np.uint8
    assert phantom.tissues.shape == SHAPE and phantom.tissues.dtype == np.uint8
    np.testing.assert_array_equal(phantom.affine, np.diag([*SPACING, 1.0]))
    assert phantom.spacing == SPACING
    with pytest.raises(ValueError):
        phantom.images["t1"][0, 0, 0] = 1.0  # read-only


def test_same_seed_is_bit_identical_and_other_seed_differs():
    a, b, c = (make_phantom(SHAPE, seed=s) for s in (7, 7, 8))
    for m in MODALITIES:
        assert np.array_equal(a.images[m], b.images[m])
        assert not np.array_equal(a.images[m], c.images[m])
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.tissues, b.tissues)
    assert not np.array_equal(a.tissues, c.tissues)


def test_healthy_anatomy_does_not_depend_on_the_tumour():
    healthy = make_phantom(SHAPE, seed=3, tumour=None)
    sick = make_phantom(SHAPE, seed=3)
    untouched = sick.tissues < TISSUES["necrosis"]
    assert untouched.sum() > 0.5 * (sick.tissues > 0).sum()
    np.testing.assert_array_equal(healthy.tissues[untouched], sick.tissues[untouched])


@pytest.mark.parametrize("noise", [0.03, 0.5])
def test_background_is_exactly_zero_and_brain_positive(noise):
    ph = make_phantom(SHAPE, seed=1, noise=noise)
    brain = ph.tissues > 0
    assert 0.15 < brain.mean() < 0.6
    for m in MODALITIES:
        assert np.all(ph.images[m][~brain] == 0), m
        assert np.all(np.rint(ph.images[m][brain]) >= 1), m  # still > 0 once stored as int16


def test_brain_fills_the_central_part_of_each_axis(phantom):
    brain = phantom.tissues > 0
    for axis, n in enumerate(SHAPE):
        hit = np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != axis)))
        extent = (hit[-1] - hit[0] + 1) / n
        middle = (hit[-1] + hit[0] + 1) / 2 / n
        assert 0.55 <= extent <= 0.85, (axis, extent)
        assert 0.4 <= middle <= 0.6, (axis, middle)


def test_ventricles_are_symmetric_about_the_midline():
    ph = make_phantom((80, 80, 52), tumour=None, noise=0)
    csf = ph.tissues == TISSUES["csf"]
    deep = csf[:, 20:60, 20:45]  # central block: ventricles, not the surface CSF
    left, right = deep[:40].sum(), deep[40:].sum()
    assert left > 20 and right > 20
    assert abs(left - right) / (left + right) < 0.25


def test_labels_follow_brats_2018_and_stay_in_the_brain(phantom):
    assert set(np.unique(phantom.labels)) == {0, 1, 2, 4}
    assert np.all(phantom.tissues[phantom.labels > 0] > 0)
    for m in MODALITIES:
        assert np.all(phantom.images[m][phantom.labels > 0] > 0)


@pytest.mark.parametrize("shape", [(32, 36, 28), (24, 24, 16), (40, 64, 20), (120, 120, 78)])
def test_every_label_is_present_at_any_grid(shape):
    assert set(np.unique(make_phantom(shape).labels)) == {0, 1, 2, 4}


def test_labels_and_intensities_derive_from_the_same_masks():
    ph = make_phantom(SHAPE, seed=2, noise=0, bias_field=0, smoothing=0)
    for m in MODALITIES:
        for code in np.unique(ph.tissues):
            values = np.unique(ph.images[m][ph.tissues == code])
            assert values.size == 1, (m, code, values[:5])
    for code in np.unique(ph.tissues):
        assert np.unique(ph.labels[ph.tissues == code]).size == 1


@pytest.mark.parametrize(
    "modality, order",
    [
        ("t1", ("wm", "gm", "csf")),
        ("t1ce", ("wm", "gm", "csf")),
        ("t2", ("csf", "gm", "wm")),
        ("flair", ("gm", "wm", "csf")),
        ("flair", ("edema", "gm")),
        ("t2", ("edema", "wm")),
        ("t1", ("wm", "edema")),
        ("t1", ("wm", "necrosis")),
        ("t2", ("necrosis", "wm")),
    ],
)
def test_tissue_contrast_is_mri_like(phantom, modality, order):
    means = [_mean(phantom, modality, t) for t in order]
    assert all(hi > lo * 1.1 for hi, lo in zip(means, means[1:])), dict(zip(order, means))


def test_enhancing_rim_is_the_brightest_thing_on_t1ce_only(phantom):
    enh = phantom.labels == 4
    others = {t: _mean(phantom, "t1ce", t) for t in ("csf", "gm", "wm", "deep_gm", "necrosis", "edema")}
    assert _mean(phantom, "t1ce", "enhancing") > 1.3 * max(others.values()), others
    assert phantom.images["t1ce"][enh].mean() > 1.5 * phantom.images["t1"][enh].mean()


def test_enhancement_scales_the_rim_brightness():
    faint = make_phantom(SHAPE, tumour=TumourSpec(enhancement=0.3))
    bright = make_phantom(SHAPE, tumour=TumourSpec(enhancement=1.5))
    assert _mean(bright, "t1ce", "enhancing") > 1.4 * _mean(faint, "t1ce", "enhancing")


def test_no_rim_gives_a_non_enhancing_tumour():
    ph = make_phantom(SHAPE, tumour=TumourSpec(rim_mm=0.0, necrosis_fraction=0.0, edema_mm=4.0))
    assert 4 not in ph.labels and 1 in ph.labels and 2 in ph.labels
    assert _mean(ph, "flair", "non_enhancing") > 1.3 * _mean(ph, "flair", "wm")


def test_healthy_brain_has_empty_labels():
    ph = make_phantom(SHAPE, tumour=None)
    assert not ph.labels.any()
    assert ph.tissues.max() < TISSUES["necrosis"]


def test_patchy_enhancement_leaves_spots_instead_of_a_rim():
    shape = (96, 96, 62)
    rim = (make_phantom(shape, tumour=TumourSpec(patchy_enhancement=0.0)).labels == 4).sum()
    spots = (make_phantom(shape, tumour=TumourSpec(patchy_enhancement=1.0)).labels == 4).sum()
    assert 0 < spots < 0.5 * rim


def test_calcifications_are_dark_foci_in_the_core():
    # No partial-volume blur: at 6 mm voxels it would spread each 2 mm focus over its neighbours.
    ph = make_phantom(SHAPE, tumour=TumourSpec(calcifications=4), smoothing=0)
    calc = ph.tissues == TISSUES["calcification"]
    assert calc.any() and np.all(ph.labels[calc] == 1)
    core = np.isin(ph.tissues, [TISSUES["non_enhancing"], TISSUES["enhancing"], TISSUES["necrosis"]])
    for m in MODALITIES:
        assert ph.images[m][calc].mean() < 0.6 * ph.images[m][core].mean(), m
    assert not (make_phantom(SHAPE).tissues == TISSUES["calcification"]).any()


def test_tumour_is_clipped_to_the_brain():
    # Centred on the right edge of the brain: about half of the tumour would lie outside.
    ph = make_phantom(SHAPE, tumour=TumourSpec(center=(1.0, 0.5, 0.5), radius_mm=30.0))
    assert (ph.labels == 1).any() and (ph.labels == 2).any()
    assert np.all(ph.tissues[ph.labels > 0] > 0)
    right_edge = np.flatnonzero((ph.tissues > 0).any(axis=(1, 2)))[-1]
    assert ph.labels[right_edge].any() and not ph.labels[right_edge + 1 :].any()


def test_lumpier_tumours_are_less_spherical():
    def radial_spread(irregularity):  # (96, 96, 62) has isotropic 2.5 mm voxels in reference mm
        ph = make_phantom((96, 96, 62), tumour=TumourSpec(irregularity=irregularity, edema_mm=0.0))
        core = ph.labels > 0
        surface = np.argwhere(core & ~ndimage.binary_erosion(core))
        radii = np.linalg.norm(surface - np.argwhere(core).mean(axis=0), axis=1)
        return radii.std() / radii.mean()

    assert radial_spread(0.0) < 0.06
    assert radial_spread(1.0) > 2 * radial_spread(0.0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(necrosis_fraction=1.0), dict(enhancement=2.0), dict(radius_mm=0.0), dict(center=(0.5, 1.2, 0.5)),
     dict(patchy_enhancement=-0.1), dict(calcifications=-1)],
)
def test_bad_tumour_specs_are_refused(kwargs):
    with pytest.raises(ValueError):
        TumourSpec(**kwargs)


def test_bad_phantom_arguments_are_refused():
    with pytest.raises(ValueError):
        make_phantom(SHAPE, bias_field=1.0)
    with pytest.raises(ValueError):
        make_phantom((2, 40, 40))


@pytest.mark.parametrize("orientation, codes", [("LPS", ("L", "P", "S")), ("RAS", ("R", "A", "S"))])
def test_write_case_round_trips_through_as_closest_canonical(tmp_path, orientation, codes):
    ph = make_phantom(SHAPE, SPACING, seed=5)
    paths = write_case(tmp_path / "new" / "case", "SYNTHETIC_test", SHAPE, SPACING, seed=5, orientation=orientation)
    assert set(paths) == {*MODALITIES, "seg"}
    for name, path in paths.items():
        assert path.name == f"SYNTHETIC_test_{name}.nii.gz" and path.is_file()
        img = nib.load(path)
        assert nib.aff2axcodes(img.affine) == codes
        assert img.get_data_dtype() == (np.uint8 if name == "seg" else np.int16)
        assert img.header["descrip"].item() == DESCRIP
        canonical = nib.as_closest_canonical(img)
        np.testing.assert_allclose(canonical.affine, ph.affine, atol=1e-6)
        expected = ph.labels if name == "seg" else np.rint(ph.images[name]).astype(np.int16)
        np.testing.assert_array_equal(np.asarray(canonical.dataobj), expected)
    assert sorted(os.listdir(paths["seg"].parent)) == sorted(p.name for p in paths.values())


def test_lps_files_use_the_brats_2018_affine(tmp_path):
    (nx, ny, _), (sx, sy, sz) = SHAPE, SPACING
    paths = write_case(tmp_path, "SYNTHETIC_x", SHAPE, SPACING, with_labels=False)
    assert "seg" not in paths and len(paths) == 4
    expected = [[-sx, 0, 0, (nx - 1) * sx], [0, -sy, 0, (ny - 1) * sy], [0, 0, sz, 0], [0, 0, 0, 1]]
    np.testing.assert_allclose(nib.load(paths["t1"]).affine, expected, atol=1e-6)


def test_existing_files_are_never_overwritten(tmp_path):
    paths = write_case(tmp_path, "SYNTHETIC_a", SHAPE, seed=0)
    before = {n: p.read_bytes() for n, p in paths.items()}
    with pytest.raises(FileExistsError, match="SYNTHETIC_a_flair.nii.gz"):
        write_case(tmp_path, "SYNTHETIC_a", SHAPE, seed=1)
    assert {n: p.read_bytes() for n, p in paths.items()} == before
    assert len(os.listdir(tmp_path)) == 5  # no temp files left behind
    # A single existing target blocks the whole case, before anything is written.
    paths["t2"].rename(tmp_path / "SYNTHETIC_b_t2.nii.gz")
    with pytest.raises(FileExistsError, match="SYNTHETIC_b_t2"):
        write_case(tmp_path, "SYNTHETIC_b", SHAPE)
    assert not (tmp_path / "SYNTHETIC_b_flair.nii.gz").exists()


@pytest.mark.parametrize(
    "kwargs", [dict(orientation="LAS"), dict(case_id="patient_001"), dict(case_id="SYNTHETIC/../x")]
)
def test_write_case_refuses_bad_arguments_without_writing(tmp_path, kwargs):
    folder = tmp_path / "out"
    with pytest.raises(ValueError):
        write_case(folder, **{"case_id": "SYNTHETIC_ok", "shape": SHAPE, **kwargs})
    assert not folder.exists() or not os.listdir(folder)
