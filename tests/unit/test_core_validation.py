"""Loading refuses what cannot be analysed: a CaseError naming the file and the problem."""

from __future__ import annotations

import gzip
import os
import re
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import braingui.case
import braingui.nifti
from braingui.case import load_case
from braingui.errors import CaseError
from braingui.nifti import open_header, read_array
from helpers import LPS_AFFINE, MODS, SHAPE, brain_volumes, make_case_folder, tumour_labels, write_nifti


def _refused(folder, *, names: Path | str, match: str, **kwargs) -> CaseError:
    """Load ``folder`` and check the CaseError names ``names`` and matches ``match`` (regex, case-insensitive)."""
    with pytest.raises(CaseError) as info:
        load_case(folder, **kwargs)
    msg = str(info.value)
    assert str(names) in msg, msg
    # match the problem only: pytest's tmp_path holds the test name (words like "truncated")
    problem = re.sub(r"/[^\s\"']*", "<path>", info.value.problem)
    assert re.search(match, problem, re.IGNORECASE), msg
    assert "\n" not in msg.strip(), "one-line message expected"
    return info.value


@pytest.fixture
def case(tmp_path):
    """A valid BraTS-named case (.nii.gz) and its paths."""
    return tmp_path / "case", make_case_folder(tmp_path / "case", scheme="brats")


@pytest.fixture
def case_nii(tmp_path):
    """A valid BraTS-named case (.nii)."""
    return tmp_path / "case", make_case_folder(tmp_path / "case", scheme="brats", ext=".nii")


def test_valid_fixture_loads(case):
    folder, _ = case
    assert load_case(folder).images["t1"].shape == (SHAPE[0], SHAPE[1], SHAPE[2])


def test_missing_modality(case):
    folder, paths = case
    paths["t2"].unlink()
    _refused(folder, names=folder, match="missing modality t2")


def test_empty_file(case):
    folder, paths = case
    paths["t1"].write_bytes(b"")
    _refused(folder, names=paths["t1"], match="empty")


@pytest.mark.parametrize("content", [b"this is not an image\n" * 40, b"x"])
def test_not_nifti_plain(case, content):
    folder, paths = case
    paths["flair"].write_bytes(content)
    _refused(folder, names=paths["flair"], match="not a nifti|truncated")


def test_not_nifti_valid_gzip_of_text(case):
    folder, paths = case
    paths["t1ce"].write_bytes(gzip.compress(b"hello, not a NIfTI header at all\n" * 30))
    _refused(folder, names=paths["t1ce"], match="not a nifti")


def test_truncated_nii_data(case_nii):
    folder, paths = case_nii
    data = paths["t2"].read_bytes()
    paths["t2"].write_bytes(data[: len(data) - 100])
    _refused(folder, names=paths["t2"], match="truncated")


def test_truncated_nii_gz_data(case):
    folder, paths = case
    data = paths["t1"].read_bytes()
    paths["t1"].write_bytes(data[: len(data) // 2])
    _refused(folder, names=paths["t1"], match="truncated")


@pytest.mark.parametrize("ext, keep", [(".nii", 200), (".nii.gz", 40), (".nii.gz", 120), (".nii.gz", 300)])
def test_truncated_inside_the_header(tmp_path, ext, keep):
    """A download cut inside the header is reported as truncated, not as 'not a NIfTI file'."""
    paths = make_case_folder(tmp_path / "case", scheme="brats", ext=ext)
    data = paths["t1"].read_bytes()
    assert len(data) > keep
    paths["t1"].write_bytes(data[:keep])
    _refused(tmp_path / "case", names=paths["t1"], match="truncated")


def test_corrupt_gzip_stream(case):
    folder, paths = case
    data = bytearray(paths["t2"].read_bytes())
    # Destroy the deflate stream right after the gzip header: the header cannot be decompressed.
    for i in range(12, min(len(data) - 8, 60)):
        data[i] = 0xFF
    paths["t2"].write_bytes(bytes(data))
    _refused(folder, names=paths["t2"], match="truncated|corrupt|not a nifti")


def test_broken_symlink_as_a_modality(case):
    folder, paths = case
    paths["flair"].unlink()
    os.symlink(folder / "does_not_exist.nii.gz", paths["flair"])
    _refused(folder, names=paths["flair"], match="broken symbolic link")


def test_2d_image_refused(case):
    folder, paths = case
    write_nifti(paths["t1"], np.ones(SHAPE[:2], np.float32), LPS_AFFINE)
    _refused(folder, names=paths["t1"], match=r"2D .*3D volume is needed")


def test_4d_modality_refused(case):
    folder, paths = case
    write_nifti(paths["t2"], np.ones(SHAPE + (2,), np.float32), LPS_AFFINE)
    _refused(folder, names=paths["t2"], match=r"4D .*3D volume is needed")


def test_4d_with_one_volume_is_accepted_as_3d(case):
    folder, paths = case
    t2 = brain_volumes()["t2"]
    write_nifti(paths["t2"], t2[..., None], LPS_AFFINE)
    loaded = load_case(folder)
    expected = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(t2, LPS_AFFINE)).dataobj)
    np.testing.assert_array_equal(loaded.images["t2"], expected)


def test_grids_of_different_shape(case):
    folder, paths = case
    write_nifti(paths["t1ce"], np.ones((SHAPE[0], SHAPE[1], SHAPE[2] + 1), np.float32), LPS_AFFINE)
    _refused(folder, names=paths["t1ce"], match="grid .* differs")


def test_affine_shift_beyond_tolerance(case):
    folder, paths = case
    moved = LPS_AFFINE.copy()
    moved[0, 3] += 0.5  # half a millimetre: not co-registered
    write_nifti(paths["t2"], brain_volumes()["t2"], moved)
    _refused(folder, names=paths["t2"], match="not co-registered")


def test_affine_rotation_beyond_tolerance(case):
    folder, paths = case
    theta = np.deg2rad(2.0)
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    write_nifti(paths["flair"], brain_volumes()["flair"], rot @ LPS_AFFINE)
    # the odd file out is named (three modalities agree), not the first one compared with it
    _refused(folder, names=paths["flair"], match="not co-registered")


def test_affine_difference_within_tolerance_is_accepted(case):
    folder, paths = case
    nudged = LPS_AFFINE.copy()
    nudged[:3, 3] += 1e-5
    nudged[:3, :3] += 1e-7
    write_nifti(paths["t2"], brain_volumes()["t2"], nudged)
    assert load_case(folder).grid.shape == SHAPE


def test_label_map_on_another_grid_refused(case):
    folder, paths = case
    write_nifti(paths["seg"], np.zeros((4, 4, 4), np.uint8), LPS_AFFINE, np.uint8)
    _refused(folder, names=paths["seg"], match="label map grid")
    moved = LPS_AFFINE.copy()
    moved[2, 3] += 2.0
    write_nifti(paths["seg"], tumour_labels(), moved, np.uint8)
    _refused(folder, names=paths["seg"], match="label map affine differs")


def _absurd_header(path: Path, shape: tuple[int, ...]) -> Path:
    """A bare 352-byte .nii (header + 4 extension bytes) whose header claims ``shape`` float32 voxels."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape(shape)
    hdr.set_zooms((1.0,) * len(shape))
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    block = hdr.binaryblock + b"\x00\x00\x00\x00"
    path.write_bytes(block)
    assert path.stat().st_size == 352
    return path


@pytest.mark.parametrize("shape", [(30000, 30000, 30000), (2000, 2000, 2000)])
def test_absurd_header_refused_without_reading(case_nii, monkeypatch, shape):
    folder, paths = case_nii
    _absurd_header(paths["t1"], shape)

    def no_read(*args, **kwargs):
        raise AssertionError("voxel data was read for an absurd header")

    monkeypatch.setattr(braingui.case, "read_array", no_read)
    monkeypatch.setattr(braingui.nifti, "read_array", no_read)
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", no_read)
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "get_unscaled", no_read)
    tracemalloc.start()
    try:
        err = _refused(folder, names=paths["t1"], match="absurd")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(shape[0]) in str(err)
    assert peak < 50 * 1024**2, f"peak Python allocation {peak} bytes"


def test_open_header_reads_no_data_and_read_array_is_float32(tmp_path):
    path = write_nifti(tmp_path / "x.nii.gz", np.arange(720, dtype=np.int16).reshape(8, 9, 10), LPS_AFFINE)
    img = open_header(path)
    assert img.shape == (8, 9, 10)
    arr = read_array(img, path)
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, np.arange(720, dtype=np.float32).reshape(8, 9, 10))


def test_folder_given_as_a_modality_file(tmp_path):
    paths = make_case_folder(tmp_path / "case", scheme="brats")
    with pytest.raises(CaseError, match="folder") as info:
        load_case(None, explicit={**{m: paths[m] for m in MODS}, "t1": tmp_path})
    assert str(tmp_path) in str(info.value)


def test_explicit_missing_file(tmp_path):
    paths = make_case_folder(tmp_path / "case", scheme="brats")
    missing = tmp_path / "nope_t1.nii.gz"
    with pytest.raises(CaseError, match="not found") as info:
        load_case(None, explicit={**{m: paths[m] for m in MODS}, "t1": missing})
    assert str(missing) in str(info.value)


def test_msd_image_with_wrong_channel_count(tmp_path):
    path = write_nifti(tmp_path / "BRATS_009.nii.gz", np.ones(SHAPE + (3,), np.float32), LPS_AFFINE)
    _refused(path, names=path, match="4 channels")


def test_unknown_forced_label_convention(case):
    folder, _ = case
    with pytest.raises(CaseError, match="unknown label convention"):
        load_case(folder, label_convention="nnunet")
