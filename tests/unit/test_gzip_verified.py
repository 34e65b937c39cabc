"""Compressed volumes are verified as they are read: a damaged .nii.gz never loads with changed voxels.

nibabel alone stops reading a .nii.gz after the voxel data and never reaches the gzip trailer (CRC-32
and length), so most single-bit flips in the payload load silently with changed voxels. Here every
flip is refused by name, or - in a gzip header field that carries no data (MTIME, XFL, OS) - loads
unchanged; with ISA-L's igzip and with the standard-library fallback.
"""

from __future__ import annotations

import gzip
import random
import re

import nibabel as nib
import numpy as np
import pytest

import braingui.gzip_io as gzip_io
from braingui.errors import CaseError
from braingui.nifti import open_header, read_array
from helpers import LPS_AFFINE, write_nifti

FLIP_SEED = 2024
N_FLIPS = 60
HARMLESS = set(range(4, 10))  # gzip header: MTIME (4-7), XFL (8), OS (9) - no data depend on them
REFUSAL = re.compile(r"^(corrupt|truncated|not a NIfTI file|unreadable|invalid|unsupported|the header)")


@pytest.fixture(params=["isal", "zlib"])
def backend(request, monkeypatch):
    """Run with ISA-L's igzip and with the standard library's gzip (isal missing)."""
    if request.param == "isal":
        pytest.importorskip("isal")
        assert gzip_io.backend() == "isal"
    else:
        monkeypatch.setattr(gzip_io, "_igzip", None)
        assert gzip_io.backend() == "zlib"
    return request.param


def _volume(shape=(48, 40, 30)) -> np.ndarray:
    """Smooth int16 'anatomy' with noise: compresses like MRI, and its data outgrow the header read."""
    rng = np.random.default_rng(7)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    brain = 400 * np.exp(-(x**2 + y**2 + z**2) * 2) + rng.normal(0, 5, shape)
    return np.round(brain).astype(np.int16)


def _flips(raw: bytes, n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` (byte, bit) positions: a fixed few in the gzip header and trailer, the rest in the payload."""
    rng = random.Random(seed)
    fixed = [(5, 3), (9, 0), (len(raw) - 6, 2), (len(raw) - 2, 7)]  # MTIME, OS, CRC-32, ISIZE
    return fixed + [(rng.randrange(10, len(raw) - 8), rng.randrange(8)) for _ in range(n - len(fixed))]


def test_sixty_bit_flips_are_refused_or_harmless(tmp_path, backend):
    data = _volume()
    clean = write_nifti(tmp_path / "clean.nii.gz", data, LPS_AFFINE)
    raw = clean.read_bytes()
    assert len(gzip.decompress(raw)) > 64 * 1024  # larger than the header read: the whole-file check runs
    expected = read_array(open_header(clean), clean)
    np.testing.assert_array_equal(expected, data.astype(np.float32))
    refused = 0
    for k, (pos, bit) in enumerate(_flips(raw, N_FLIPS, FLIP_SEED)):
        broken = bytearray(raw)
        broken[pos] ^= 1 << bit
        path = tmp_path / f"flip{k}_flair.nii.gz"
        path.write_bytes(bytes(broken))
        try:
            got = read_array(open_header(path), path)
        except CaseError as exc:
            assert exc.path == str(path) and REFUSAL.search(exc.problem), f"byte {pos} bit {bit}: {exc}"
            assert "\n" not in str(exc)
            refused += 1
            continue
        assert pos in HARMLESS, f"byte {pos} bit {bit} loaded although it is not in a harmless header field"
        np.testing.assert_array_equal(got, expected, err_msg=f"byte {pos} bit {bit} changed voxels")
    assert refused >= N_FLIPS - 2  # only the MTIME and OS flips may load


def test_a_crc_flip_is_named_as_a_checksum_mismatch(tmp_path, backend):
    path = write_nifti(tmp_path / "t1.nii.gz", _volume(), LPS_AFFINE)
    raw = bytearray(path.read_bytes())
    raw[-7] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CaseError) as info:
        open_header(path)
    assert str(info.value) == (f"{path}: corrupt: the gzip checksum does not match (the file was damaged after it "
                               "was written); re-copy or re-download it")


def test_a_cut_file_is_named_as_truncated(tmp_path, backend):
    path = write_nifti(tmp_path / "t2.nii.gz", _volume(), LPS_AFFINE)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CaseError, match=r": truncated: the compressed data end before the gzip end marker"):
        open_header(path)


@pytest.mark.parametrize("slope, inter, dtype", [(1.0, 0.0, np.int16), (0.5, -3.0, np.int16), (1.0, 0.0, np.float32),
                                                (1.0, 0.0, np.uint8)])
def test_verified_reading_gives_what_nibabel_gives(tmp_path, backend, slope, inter, dtype):
    data = (_volume() % 200).astype(dtype)
    img = nib.Nifti1Image(data, LPS_AFFINE)
    img.set_data_dtype(dtype)
    img.header.set_slope_inter(slope, inter)
    path = tmp_path / "x.nii.gz"
    nib.save(img, path)
    got = read_array(open_header(path), path)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, nib.load(path).get_fdata(), rtol=1e-6)
    np.testing.assert_allclose(open_header(path).affine, LPS_AFFINE)


def test_several_gzip_members_are_all_read_and_verified(tmp_path, backend):
    data = _volume((20, 20, 20))
    body = nib.Nifti1Image(data, LPS_AFFINE).to_bytes()
    cut = 5000
    path = tmp_path / "multi.nii.gz"
    path.write_bytes(gzip.compress(body[:cut]) + gzip.compress(body[cut:]))  # two members, as `cat a.gz b.gz`
    np.testing.assert_array_equal(read_array(open_header(path), path), data.astype(np.float32))
    second = bytearray(path.read_bytes())
    second[-6] ^= 0x04  # the CRC of the second member
    path.write_bytes(bytes(second))
    with pytest.raises(CaseError, match="checksum"):
        open_header(path)


def test_content_not_the_name_decides_compression(tmp_path):
    data = _volume((10, 12, 14))
    body = nib.Nifti1Image(data, LPS_AFFINE).to_bytes()
    packed = tmp_path / "packed_t1.nii"  # gzip content, plain name
    packed.write_bytes(gzip.compress(body))
    plain = tmp_path / "plain_t1.nii.gz"  # plain content, compressed name
    plain.write_bytes(body)
    for path in (packed, plain):
        np.testing.assert_array_equal(read_array(open_header(path), path), data.astype(np.float32))


def test_mgz_is_verified_too(tmp_path):
    data = _volume((16, 18, 20)).astype(np.float32)
    path = tmp_path / "t1.mgz"
    nib.save(nib.MGHImage(data, LPS_AFFINE), path)
    np.testing.assert_array_equal(read_array(open_header(path), path), data)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CaseError, match="gzip"):
        open_header(path)


def test_the_fast_backend_is_installed():
    """isal is a dependency (pyproject.toml); without it loading is about 3x slower, but still verified."""
    pytest.importorskip("isal")
    assert gzip_io.backend() == "isal"


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
@pytest.mark.parametrize("kind", ["nifti2", "big-endian"])
def test_nifti2_and_big_endian_files_read_like_nibabel(tmp_path, ext, kind):
    data = _volume((10, 12, 14))
    if kind == "nifti2":
        img = nib.Nifti2Image(data, LPS_AFFINE)
    else:
        img = nib.Nifti1Image(data, LPS_AFFINE, nib.Nifti1Header(endianness=">"))
    path = tmp_path / f"t1{ext}"
    nib.save(img, path)
    header = open_header(path)
    assert type(header) is type(img) and header.header.endianness == img.header.endianness
    np.testing.assert_array_equal(read_array(header, path), data.astype(np.float32))
