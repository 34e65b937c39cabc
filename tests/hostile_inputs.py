"""A generator of broken and awkward inputs: hostile case folders and fuzzed NIfTI headers.

Each entry of :data:`BROKEN` writes one small case folder (8x9x10 volumes from :mod:`helpers`) with one
thing wrong and says what the loader must do: refuse it (``"refuse"``) naming a given file, or load it
with a warning (``"warn"``) that names the file and matches a pattern. :func:`header_mutations` gives
reproducible mutations of the 348-byte NIfTI-1 header (random bytes or awkward values written into
dims, datatype, bitpix, pixdim, vox_offset, scl_slope/inter, qform/sform codes and parameters, magic,
...). Field offsets come from nibabel's header layout, not from the code under test.
"""

from __future__ import annotations

import gzip
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from helpers import LPS_AFFINE, MODS, SHAPE, make_case_folder, write_nifti

HEADER_FIELDS = ("dim", "datatype", "bitpix", "pixdim", "vox_offset", "scl_slope", "scl_inter", "qform_code",
                 "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "srow_x", "srow_y", "srow_z",
                 "magic", "sizeof_hdr", "dim_info", "xyzt_units", "intent_code", "slice_code", "cal_max")
"""The NIfTI-1 header fields the fuzz writes into."""

_LAYOUT = nib.nifti1.header_dtype  # field -> (numpy dtype, byte offset); little-endian as nibabel writes


def field_span(name: str) -> tuple[int, int, np.dtype]:
    """``(offset, size in bytes, element dtype)`` of a NIfTI-1 header field."""
    dtype, offset = _LAYOUT.fields[name][:2]
    base = dtype.base if dtype.subdtype else dtype
    return offset, dtype.itemsize, base


_AWKWARD = {
    "i": [0, -1, 1, 2, 7, 8, 255, 256, 1000, 4096, 16384, 32767, -32768, 2**31 - 1, -(2**31)],
    "f": [0.0, -1.0, 1e-30, 1e30, 1e38, -1e38, float("nan"), float("inf"), float("-inf"), 0.5, 1e6, 352.0,
          351.0, 353.5, 2**31],
}


def mutate_header(block: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One mutation of a 348-byte NIfTI-1 header: a field gets random bytes or an awkward value.

    Returns:
        The mutated header and a description (for test ids and failure messages).
    """
    name = rng.choice(HEADER_FIELDS)
    offset, size, base = field_span(name)
    out = bytearray(block)
    n_elem = size // base.itemsize
    i = rng.randrange(n_elem)
    start = offset + i * base.itemsize
    if base.kind == "S" or rng.random() < 0.4:  # random bytes over one element (or the whole string)
        width = size if base.kind == "S" else base.itemsize
        start = offset if base.kind == "S" else start
        value = bytes(rng.randrange(256) for _ in range(width))
        out[start:start + width] = value
        what = f"{name}[{i}] = bytes {value.hex()}"
    else:
        choice = rng.choice(_AWKWARD["f" if base.kind == "f" else "i"])
        info = np.iinfo(base) if base.kind in "iu" else None
        if info is not None:
            choice = int(np.clip(choice, info.min, info.max))
        out[start:start + base.itemsize] = np.array(choice, dtype=base.newbyteorder("<")).tobytes()
        what = f"{name}[{i}] = {choice!r}"
    return bytes(out), what


def header_mutations(n: int, seed: int) -> list[tuple[int, str, bytes]]:
    """``n`` reproducible ``(index, description, header)`` mutations of a valid 8x9x10 int16 header."""
    rng = random.Random(seed)
    base = _valid_image().header.binaryblock
    out = []
    for k in range(n):
        block, what = mutate_header(base, rng)
        if rng.random() < 0.25:  # a second field at once
            block, second = mutate_header(block, rng)
            what += "; " + second
        out.append((k, what, block))
    return out


def _valid_image() -> nib.Nifti1Image:
    data = np.arange(int(np.prod(SHAPE)), dtype=np.int16).reshape(SHAPE) % 97 + 50
    img = nib.Nifti1Image(data, LPS_AFFINE)
    img.set_data_dtype(np.int16)
    img.set_qform(LPS_AFFINE, code=1)
    img.set_sform(LPS_AFFINE, code=1)
    return img


def write_with_header(path: Path, header: bytes, compress: bool) -> Path:
    """A valid 8x9x10 int16 image's bytes with its first 348 bytes replaced by ``header``."""
    body = bytearray(_valid_image().to_bytes())
    body[:348] = header
    path.write_bytes(gzip.compress(bytes(body), mtime=0) if compress else bytes(body))
    return path


# ------------------------------------------------------------------ broken case folders

@dataclass(frozen=True)
class Broken:
    """One hostile input.

    Attributes:
        name: short id.
        make: ``make(tmp_path) -> (case folder, file the message must name)``.
        outcome: ``"refuse"`` (a CaseError) or ``"warn"`` (loads, with a warning naming the file).
        pattern: regex the problem (refusal) or one warning must match (case-insensitive).
    """

    name: str
    make: Callable[[Path], tuple[Path, Path]]
    outcome: str
    pattern: str


def _case(tmp: Path, **kwargs) -> tuple[Path, dict[str, Path]]:
    folder = tmp / "case"
    return folder, make_case_folder(folder, **kwargs)


def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(change(path.read_bytes()))


def _truncated_gzip(tmp):
    folder, paths = _case(tmp)
    _rewrite(paths["t1"], lambda b: b[: len(b) * 2 // 3])
    return folder, paths["t1"]


def _crc_flip(tmp):
    folder, paths = _case(tmp)

    def flip(b: bytes) -> bytes:
        out = bytearray(b)
        out[-6] ^= 0x10  # inside the CRC-32 of the gzip trailer
        return bytes(out)

    _rewrite(paths["t2"], flip)
    return folder, paths["t2"]


def set_header(path: Path, **fields) -> None:
    """Rewrite header fields of an (uncompressed or gzip) NIfTI file, keeping the data bytes."""
    raw = path.read_bytes()
    packed = raw[:2] == b"\x1f\x8b"
    body = bytearray(gzip.decompress(raw) if packed else raw)
    for name, value in fields.items():
        offset, size, base = field_span(name)
        data = np.asarray(value, dtype=base.newbyteorder("<")).tobytes() if base.kind != "S" else bytes(value)
        body[offset:offset + len(data)] = data
    path.write_bytes(gzip.compress(bytes(body), mtime=0) if packed else bytes(body))


def _bad_magic(tmp):
    folder, paths = _case(tmp)
    set_header(paths["flair"], magic=b"xyz\x00")
    return folder, paths["flair"]


def _bool_image(tmp):
    folder, paths = _case(tmp)
    set_header(paths["t1ce"], datatype=1, bitpix=1)
    return folder, paths["t1ce"]


def _huge_claim(tmp):
    """A ~1 MB uncompressed file whose header claims 1024 x 1024 x 500 int16 voxels."""
    folder, paths = _case(tmp, ext=".nii")
    path = paths["t1"]
    body = bytearray(path.read_bytes()[:352]) + np.random.default_rng(1).bytes(1024 * 1024)
    path.write_bytes(bytes(body))
    set_header(path, dim=[3, 1024, 1024, 500, 1, 1, 1, 1])
    return folder, path


def _huge_claim_gz(tmp):
    """The same claim in a ~1 MB .nii.gz (random, so incompressible, data)."""
    folder, paths = _case(tmp)
    path = paths["t1"]
    head = bytearray(gzip.decompress(path.read_bytes())[:352])
    offset, _, base = field_span("dim")
    head[offset:offset + 16] = np.array([3, 1024, 1024, 500, 1, 1, 1, 1], dtype="<i2").tobytes()
    noise = np.random.default_rng(1).bytes(1024 * 1024)
    path.write_bytes(gzip.compress(bytes(head) + noise, compresslevel=1, mtime=0))
    return folder, path


def _zero_pixdim(tmp):
    """Zero pixdim with the qform in use: nibabel sets them to 1 mm (the case is 1 mm) - a warning."""
    folder, paths = _case(tmp)
    set_header(paths["t2"], pixdim=[1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], qform_code=1, sform_code=0)
    return folder, paths["t2"]


def _zero_pixdim_in_flair(tmp):
    """The same in FLAIR (the first file compared) of a 2 mm case: FLAIR is named, with the fix."""
    folder = tmp / "case"
    paths = make_case_folder(folder, affine=np.diag([-2.0, -2.0, 2.0, 1.0]), labels=False)
    set_header(paths["flair"], pixdim=[1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], qform_code=1, sform_code=0)
    return folder, paths["flair"]


def _nan_affine(tmp):
    folder, paths = _case(tmp)
    nan = float("nan")
    set_header(paths["t1"], sform_code=1, qform_code=0, srow_x=[nan, 0.0, 0.0, 1.0])
    return folder, paths["t1"]


def _symlink_loop(tmp):
    folder, paths = _case(tmp)
    paths["flair"].unlink()
    os.symlink(paths["flair"].name, paths["flair"])  # points at itself
    return folder, paths["flair"]


def _fifo(tmp):
    folder, paths = _case(tmp)
    paths["t1"].unlink()
    os.mkfifo(paths["t1"])
    return folder, paths["t1"]


def _permission_denied(tmp):
    """Mode 000; under root (which reads anyway) the test also makes ``open`` refuse such files."""
    folder, paths = _case(tmp)
    os.chmod(paths["t2"], 0)
    return folder, paths["t2"]


def _folder_named_like_a_file(tmp):
    folder, paths = _case(tmp)
    paths["t1ce"].unlink()
    paths["t1ce"].mkdir()
    (paths["t1ce"] / "notes.txt").write_text("not an image\n")
    return folder, paths["t1ce"]


def _constant_volume(tmp):
    folder, paths = _case(tmp)
    write_nifti(paths["t1"], np.full(SHAPE, 120, np.int16), LPS_AFFINE)
    return folder, paths["t1"]


def _tiny_volume(tmp):
    folder = tmp / "case"
    shape = (3, 3, 3)
    rng = np.random.default_rng(3)
    vols = {m: rng.uniform(50, 200, shape).astype(np.float32) for m in MODS}
    paths = make_case_folder(folder, shape=shape, volumes=vols, labels=False)
    return folder, paths["flair"]


def _absurd_voxels(tmp):
    folder = tmp / "case"
    affine = np.diag([1e30, 1e30, 1e30, 1.0])
    paths = make_case_folder(folder, affine=affine, labels=False)
    return folder, paths["flair"]


def _one_file_for_all(tmp):
    folder, paths = _case(tmp, labels=False)
    source = paths["flair"]
    for m in MODS[1:]:
        paths[m].unlink()
        os.symlink(source.name, paths[m])
    return folder, source


def _same_content_twice(tmp):
    folder, paths = _case(tmp, labels=False)
    paths["t2"].write_bytes(paths["t1"].read_bytes())
    return folder, paths["t2"]


def _not_gzip_text(tmp):
    folder, paths = _case(tmp)
    paths["t1"].write_bytes(gzip.compress(b"plain words, not an image\n" * 20))
    return folder, paths["t1"]


def _short_header(tmp):
    folder, paths = _case(tmp, ext=".nii")
    _rewrite(paths["t2"], lambda b: b[:200])
    return folder, paths["t2"]


def _junk_after_gzip(tmp):
    folder, paths = _case(tmp)
    _rewrite(paths["flair"], lambda b: b + b"JUNK" * 8)
    return folder, paths["flair"]


def _scl_slope_huge(tmp):
    """A scale factor of 1e38: the scaled values overflow float32 to inf."""
    folder, paths = _case(tmp)
    set_header(paths["t1"], scl_slope=1e38)
    return folder, paths["t1"]


def _vox_offset_beyond(tmp):
    folder, paths = _case(tmp, ext=".nii")
    set_header(paths["t1ce"], vox_offset=1e9)
    return folder, paths["t1ce"]


def _gz_isize_flip(tmp):
    folder, paths = _case(tmp)

    def flip(b: bytes) -> bytes:
        out = bytearray(b)
        out[-1] ^= 0x01  # ISIZE's high byte: the length no longer matches
        return bytes(out)

    _rewrite(paths["t1"], flip)
    return folder, paths["t1"]


def _gz_isize_bomb(tmp):
    """The ISIZE trailer claims about 4 GB for a small volume."""
    folder, paths = _case(tmp)
    _rewrite(paths["t2"], lambda b: b[:-4] + struct.pack("<I", 0xFFFF0000))
    return folder, paths["t2"]


BROKEN: tuple[Broken, ...] = (
    Broken("truncated-gzip", _truncated_gzip, "refuse", r"^truncated"),
    Broken("crc-flip", _crc_flip, "refuse", r"^corrupt: the gzip checksum does not match"),
    Broken("isize-flip", _gz_isize_flip, "refuse", r"^corrupt: the gzip length"),
    Broken("isize-4gb", _gz_isize_bomb, "refuse", r"^corrupt: the gzip length field"),
    Broken("junk-after-gzip", _junk_after_gzip, "refuse", r"^corrupt: the gzip stream is followed by data"),
    Broken("not-gzip-text", _not_gzip_text, "refuse", r"^not a NIfTI file \(the decompressed data"),
    Broken("short-header", _short_header, "refuse", r"truncated .*before the NIfTI header"),
    Broken("bad-magic", _bad_magic, "refuse", r"^not a NIfTI file \(bad magic string"),
    Broken("bool-image", _bool_image, "refuse", r"1 bit per voxel"),
    Broken("huge-claim", _huge_claim, "refuse", r"^truncated: the header needs 2097152352 bytes"),
    Broken("huge-claim-gz", _huge_claim_gz, "refuse", r"^truncated.*2097152352 bytes"),
    Broken("zero-pixdim", _zero_pixdim, "warn", r"header needed a fix.*pixdim"),
    Broken("zero-pixdim-in-flair", _zero_pixdim_in_flair, "refuse", r"^affine differs .*pixdim"),
    Broken("nan-affine", _nan_affine, "refuse", r"NaN or infinite"),
    Broken("vox-offset-beyond", _vox_offset_beyond, "refuse", r"truncated: the header needs"),
    Broken("symlink-loop", _symlink_loop, "refuse", r"symbolic link loop"),
    Broken("fifo", _fifo, "refuse", r"named pipe"),
    Broken("permission-denied", _permission_denied, "refuse", r"permission denied"),
    Broken("folder-named-like-a-file", _folder_named_like_a_file, "refuse", r"is a folder, not an image file"),
    Broken("huge-scl-slope", _scl_slope_huge, "warn", r"NaN/inf voxels"),
    Broken("constant-volume", _constant_volume, "warn", r"constant"),
    Broken("3x3x3-volume", _tiny_volume, "warn", r"3 x 3 x 3 voxels"),
    Broken("1e30-mm-voxels", _absurd_voxels, "warn", r"voxel size"),
    Broken("one-file-for-all-four", _one_file_for_all, "warn", r"used for FLAIR, T1, T1ce and T2"),
    Broken("same-content-twice", _same_content_twice, "warn", r"identical"),
)
"""Every hostile input the tests run."""
