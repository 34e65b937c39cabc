"""Safe NIfTI reading and atomic NIfTI writing.

:func:`open_header` checks a file and its header *before* any voxel data is read (so a header that
claims an absurd size is refused without allocating it); :func:`read_array` reads the data and turns
every low-level failure (truncated gzip stream, short file) into a :class:`~braingui.errors.CaseError`
naming the file. :func:`save_atomic` writes through a temporary file and a rename.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from braingui.errors import CaseError

MAX_BYTES = 2 * 1024**3
"""Largest float32 volume (bytes) accepted; a header claiming more is refused before reading."""
MAX_DIM = 4096
"""Largest size along one axis accepted."""

_READ_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError, MemoryError)


def open_header(path: str | os.PathLike) -> nib.Nifti1Image:
    """Open a NIfTI file and validate its header without reading voxel data.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.

    Returns:
        The nibabel image (data not yet read).

    Raises:
        CaseError: broken link, missing, empty, not NIfTI, unreadable header, absurd or invalid
            dimensions, voxel sizes or affine, or (uncompressed files) fewer bytes than the header needs.
    """
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise CaseError(f"broken symbolic link (points to {os.readlink(p)}, which does not exist)", p)
    if not p.exists():
        raise CaseError("file not found", p)
    if p.is_dir():
        raise CaseError("is a folder, not a NIfTI file", p)
    size = p.stat().st_size
    if size == 0:
        raise CaseError("empty file (0 bytes)", p)
    try:
        img = nib.load(os.fspath(p))
    except nib.filebasedimages.ImageFileError as exc:
        cut = _cut_in_header(p)
        if cut:
            raise CaseError(f"unreadable: the file is {cut} (it breaks off before the NIfTI header can be read)",
                            p) from exc
        raise CaseError(f"not a NIfTI file ({_short(exc)})", p) from exc
    except _READ_ERRORS as exc:
        raise CaseError(f"unreadable: the file is truncated or corrupt ({_short(exc)})", p) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise CaseError(f"not a NIfTI file (nibabel reads it as {type(img).__name__})", p)
    _check_header(img, p, size)
    return img


def _cut_in_header(path: Path) -> str | None:
    """``"truncated"``/``"corrupt"`` when the file (or its gzip stream) breaks off inside a NIfTI header.

    nibabel reports such files as "Cannot work out file type", which would wrongly tell the user that
    a cut-off download is not NIfTI at all.
    """
    try:
        with (gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")) as fh:
            head = fh.read(1024)  # nibabel sniffs up to 1024 bytes; a gzip stream cut before that fails
    except EOFError:
        return "truncated"
    except zlib.error:
        return "corrupt"
    except OSError:
        return None
    for order in ("little", "big"):
        claimed = int.from_bytes(head[:4], order) if len(head) >= 4 else 0
        if claimed in (348, 540):  # sizeof_hdr of NIfTI-1 / NIfTI-2
            return "truncated" if len(head) < claimed else None
    return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


def _check_header(img: nib.Nifti1Image, path: Path, file_size: int) -> None:
    shape = tuple(int(d) for d in img.shape)
    if any(d <= 0 for d in shape) or not shape:
        raise CaseError(f"the header gives an invalid shape {shape}", path)
    if any(d > MAX_DIM for d in shape):
        raise CaseError(f"the header claims an absurd size {shape} (more than {MAX_DIM} voxels along an axis)", path)
    n_vox = int(np.prod(shape, dtype=np.int64))
    if n_vox * 4 > MAX_BYTES:
        raise CaseError(f"the header claims an absurd size {shape} ({n_vox * 4 / 1024**3:.1f} GiB as float32, "
                        f"limit {MAX_BYTES / 1024**3:.0f} GiB)", path)
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise CaseError(f"unsupported voxel type {dtype} (only integer and real scalar data)", path)
    zooms = img.header.get_zooms()[:3]
    if len(zooms) < min(3, len(shape)) or not all(np.isfinite(z) and z > 0 for z in zooms[: len(shape)]):
        raise CaseError(f"invalid voxel size {tuple(float(z) for z in zooms)} in the header", path)
    affine = img.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise CaseError("invalid affine in the header (not finite or singular)", path)
    if not _is_gzip(path):
        needed = int(img.dataobj.offset) + n_vox * dtype.itemsize
        if file_size < needed:
            raise CaseError(f"truncated: the header needs {needed} bytes of data, the file has {file_size}", path)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def read_array(img: nib.Nifti1Image, path: str | os.PathLike) -> np.ndarray:
    """Read the voxel data of an image opened with :func:`open_header` as float32 (scaling applied).

    Raises:
        CaseError: the data cannot be read (truncated or corrupt stream).
    """
    try:
        return np.asarray(img.dataobj, dtype=np.float32)
    except _READ_ERRORS as exc:
        raise CaseError(f"unreadable: the image data is truncated or corrupt ({_short(exc)})", path) from exc


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and not thread-safe


def _default_mode() -> int:
    """The permission bits a plain ``open()`` would give a new file (0666 minus the umask)."""
    return 0o666 & ~_UMASK


def save_atomic(img: nib.Nifti1Image, path: str | os.PathLike) -> Path:
    """Write ``img`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and an existing file is replaced only once the new one
    is complete.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if target.name.lower().endswith(".gz") else ".nii"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        nib.save(img, tmp)
        os.chmod(tmp, _default_mode())  # mkstemp makes 0600; exports should be readable like any file
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
