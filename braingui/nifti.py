"""Safe NIfTI reading and atomic NIfTI writing.

:func:`open_header` checks a file and its header *before* any voxel data is converted (so a header
that claims an absurd size is refused without allocating it); :func:`read_array` reads the data. Every
low-level failure becomes a :class:`~braingui.errors.CaseError` naming the file and the problem.

A gzip-compressed file (``.nii.gz``, ``.mgz``) is read once into memory: its first bytes are
decompressed to check the header, then the whole file is decompressed and verified - the CRC-32 and
length of every gzip member (:mod:`braingui.gzip_io`, ISA-L's igzip when installed) - and nibabel reads
the image from the verified bytes. nibabel alone would stop after the voxel data and never read the
checksum, so a damaged file would load with changed voxels. nibabel's log lines (header fixes it made)
become the case's warnings, or prefixed warnings on stderr, never bare lines.
:func:`save_atomic` writes through :mod:`braingui.atomic`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np

from braingui import gzip_io
from braingui.atomic import write_atomic
from braingui.errors import CaseError
from braingui.formats import format_title, image_extension, is_itk, refusal, unreadable_format
from braingui.geometry import c_order_copy

MAX_BYTES = 2 * 1024**3
"""Largest float32 volume (bytes) accepted; a header claiming more is refused before reading."""
MAX_DIM = 4096
"""Largest size along one axis accepted."""

HEADER_FIX_NOTE = "the header needed a fix when read"
"""How a warning that carries one of nibabel's header notes starts (after the file name)."""

_HEAD = 64 * 1024  # decompressed bytes read first: the header and, nearly always, its extensions
_TRAILING_SLACK = 64 * 1024**2  # decompressed bytes allowed beyond the header's need when ISIZE claims more
_NIFTI = (nib.Nifti1Image, nib.Nifti2Image)
_MGH_HEADER = 284  # bytes before the data of a FreeSurfer MGH file


# ------------------------------------------------------------------ nibabel's log lines

class _NibabelLog(logging.Handler):
    """Routes nibabel's log records: into the list of the current :func:`_capture` (per thread), else to
    stderr prefixed ``braingui: warning: nibabel:`` - never a bare line."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        sink = getattr(self.local, "sink", None)
        if sink is not None:
            sink.append(text)
        else:
            sys.stderr.write(f"braingui: warning: nibabel: {text}\n")


def _install_log_route() -> _NibabelLog:
    chatty = logging.getLogger("nibabel.global")  # nibabel gives it a bare StreamHandler to stderr
    for handler in list(chatty.handlers):
        if type(handler) is logging.StreamHandler:
            chatty.removeHandler(handler)
    logger = logging.getLogger("nibabel")
    for handler in logger.handlers:
        if type(handler).__name__ == "_NibabelLog":  # a reloaded module keeps one route
            return handler
    handler = _NibabelLog()
    logger.addHandler(handler)
    logger.propagate = False
    return handler


_LOG = _install_log_route()


@contextlib.contextmanager
def _capture(path: Path, warnings: list[str] | None, keep: bool = True) -> Iterator[None]:
    """Collect nibabel's log lines while the block runs; ``keep`` adds them (once each) to ``warnings``
    as ``<path>: the header needed a fix when read (<nibabel's words>)`` (to stderr, prefixed, when
    ``warnings`` is ``None``)."""
    outer = getattr(_LOG.local, "sink", None)
    sink: list[str] = []
    _LOG.local.sink = sink
    try:
        yield
    finally:
        _LOG.local.sink = outer
        for text in dict.fromkeys(sink) if keep else ():
            line = f"{path}: {HEADER_FIX_NOTE} ({text})"
            if warnings is not None:
                warnings.append(line)
            else:
                sys.stderr.write(f"braingui: warning: {line}\n")


def quiet_nibabel() -> contextlib.AbstractContextManager[None]:
    """A block in which nibabel's log lines are dropped (a header read again, or only sniffed)."""
    return _capture(Path(), None, keep=False)


# ------------------------------------------------------------------ opening

def check_shape(shape: tuple[int, ...], path) -> int:
    """The voxel count of a header's ``shape``, after refusing an empty, invalid or absurd one (any format).

    Raises:
        CaseError: a non-positive or missing dimension, more than :data:`MAX_DIM` along an axis, or more
            than :data:`MAX_BYTES` as float32.
    """
    if any(d <= 0 for d in shape) or not shape:
        raise CaseError(f"the header gives an invalid shape {shape}", path)
    if any(d > MAX_DIM for d in shape):
        raise CaseError(f"the header claims an absurd size {shape} (more than {MAX_DIM} voxels along an axis)", path)
    n_vox = int(np.prod(shape, dtype=np.int64))
    if n_vox * 4 > MAX_BYTES:
        raise CaseError(f"the header claims an absurd size {shape} ({n_vox * 4 / 1024**3:.1f} GiB as float32, "
                        f"limit {MAX_BYTES / 1024**3:.0f} GiB)", path)
    return n_vox


def open_header(path: str | os.PathLike, warnings: list[str] | None = None) -> nib.Nifti1Image:
    """Open an image file and validate its header before any voxel data is converted.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file (also ``.mgz``/``.mgh``; ``.mha``, ``.mhd``, ``.nrrd`` and
            ``.nhdr`` go to :func:`braingui.itk_io.open_itk_header`).
        warnings: where nibabel's notes on the header (fixes it made while reading) go, as
            ``<path>: the header needed a fix when read (...)``; ``None`` prints them to stderr with the
            ``braingui: warning:`` prefix.

    Returns:
        The nibabel image (a compressed file: decompressed and verified, in memory), or an
        :class:`~braingui.itk_io.ItkImage` (data not yet read).

    Raises:
        CaseError: broken link or link loop, missing, a folder, a pipe or device, empty, not readable
            (permissions), a format braingui does not read (named), not NIfTI, a damaged or truncated gzip
            stream (checksum, length), an unreadable header, absurd or invalid dimensions, voxel type,
            voxel sizes or affine, or fewer data bytes than the header needs.
    """
    p = Path(path)
    size = _check_file(p)
    fmt = unreadable_format(p)
    if fmt is not None:
        raise CaseError(refusal(fmt), p)
    if is_itk(p):  # MetaImage / NRRD: SimpleITK, imported only now
        from braingui.itk_io import open_itk_header

        return open_itk_header(p)
    with _capture(p, warnings):
        if _read_start(p, 2) == gzip_io.MAGIC:
            return _open_gzip(p)
        return _open_plain(p, size)


def _check_file(p: Path) -> int:
    """The file's size, after refusing what is not a readable regular file (without opening it)."""
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise CaseError(f"broken symbolic link (points to {os.readlink(p)}, which does not exist)", p) from None
        raise CaseError("file not found", p) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CaseError("symbolic link loop (the link leads back to itself); point it at the image file",
                            p) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise CaseError("cannot be read: permission denied (a folder on its path cannot be searched)", p) from None
        raise CaseError(f"cannot be read ({exc.strerror or exc})", p) from None
    if stat.S_ISDIR(st.st_mode):
        raise CaseError("is a folder, not a NIfTI file", p)
    if stat.S_ISFIFO(st.st_mode):
        raise CaseError("is a named pipe (FIFO), not a file; give the image file itself", p)
    if not stat.S_ISREG(st.st_mode):
        raise CaseError("is a device or socket, not a regular file; give the image file itself", p)
    if st.st_size == 0:
        raise CaseError("empty file (0 bytes)", p)
    return st.st_size


def _read_start(p: Path, n: int | None = None) -> bytes:
    """The first ``n`` bytes of the file (all of it for ``None``), permission problems named as such."""
    try:
        with open(p, "rb") as fh:
            return fh.read() if n is None else fh.read(n)
    except PermissionError:
        raise CaseError("cannot be read: permission denied (the file's permissions do not allow reading it)",
                        p) from None
    except OSError as exc:
        raise CaseError(f"cannot be read ({exc.strerror or exc})", p) from None


def _open_gzip(p: Path) -> nib.Nifti1Image:
    """Header from the first decompressed bytes, checked; then the whole file decompressed and verified."""
    raw = _read_start(p)
    first = _head(raw, _HEAD, p)
    klass, hdr = _classify(first, p, decompressed=True)
    offset = _data_offset(hdr, klass)
    if offset > len(first) and len(first) == _HEAD:  # long header extensions
        if offset > gzip_io.largest_output(len(raw)):
            raise CaseError(f"invalid header: the data offset {offset} lies beyond what the file can hold", p)
        first = _head(raw, offset, p)
    img = _from_bytes(klass, first, p)
    needed = _check_header(img, p)
    if needed > gzip_io.largest_output(len(raw)):
        raise CaseError(f"truncated or a wrong header: the header needs {needed} bytes of data, more than a "
                        f"{len(raw)}-byte gzip file can hold", p)
    isize = gzip_io.trailer_size(raw)  # the last member's length mod 2**32: a cut file ends in arbitrary bytes
    odd = isize is not None and needed < 2**32 and isize > needed + _TRAILING_SLACK
    try:  # memory: what the file really holds, not what the header claims - and, if the length field is
        # out of line, never more than the header needs plus a margin
        data = gzip_io.decompress(raw, limit=needed + _TRAILING_SLACK if odd else None)
    except gzip_io.GzipError as exc:
        raise CaseError(exc.message(), p) from exc
    del raw
    if len(data) < needed:
        raise CaseError(f"truncated: the header needs {needed} bytes of data, the decompressed file has "
                        f"{len(data)}", p)
    with quiet_nibabel():  # the same header again: its notes are already kept
        return _from_bytes(klass, data, p)


def _open_plain(p: Path, size: int) -> nib.Nifti1Image:
    first = _read_start(p, _HEAD)
    klass, _ = _classify(first, p, decompressed=False)
    try:
        if image_extension(p) in (".nii", ".mgh"):
            img = klass.from_filename(os.fspath(p))  # memory-mapped
        else:  # named compressed but stored plain (nibabel would gunzip by the name), or another name
            img = klass.from_stream(io.BytesIO(_read_start(p)))
    except CaseError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for a bad header
        raise CaseError(f"unreadable header ({_short(exc)})", p) from exc
    needed = _check_header(img, p)
    if size < needed:
        raise CaseError(f"truncated: the header needs {needed} bytes of data, the file has {size}", p)
    return img


def _head(raw: bytes, n: int, p: Path) -> bytes:
    try:
        return gzip_io.head(raw, n)
    except gzip_io.GzipError as exc:
        raise CaseError(exc.message(), p) from exc


def _classify(first: bytes, p: Path, decompressed: bool):
    """The nibabel image class for a file starting with ``first``, and its raw header (not checked).

    Raises:
        CaseError: not NIfTI (no header, a wrong magic string), the file ends inside the header, or a
            voxel type nibabel cannot read.
    """
    if image_extension(p) in (".mgz", ".mgh"):
        if len(first) < _MGH_HEADER:
            raise CaseError("truncated: the file ends inside the MGH header", p)
        return nib.MGHImage, None
    for klass in _NIFTI:
        n = klass.header_class.sizeof_hdr
        claims = {int.from_bytes(first[:4], order) for order in ("little", "big")} if len(first) >= 4 else set()
        if n not in claims:
            continue
        if len(first) < n:
            raise CaseError("unreadable: the file is truncated (it breaks off before the NIfTI header can be read)", p)
        try:
            hdr = klass.header_class(binaryblock=first[:n], check=False)
            magic = bytes(hdr["magic"])
        except Exception as exc:  # noqa: BLE001
            raise CaseError(f"unreadable header ({_short(exc)})", p) from exc
        if magic.rstrip(b"\x00") not in (b"n+1", b"n+2"):
            raise CaseError(f"not a NIfTI file (bad magic string {magic!r} in the header, expected b'n+1')", p)
        _check_datatype(hdr, p)
        return klass, hdr
    what = "the decompressed data do not" if decompressed else "the file does not"
    raise CaseError(f"not a {format_title(p) or 'NIfTI'} file ({what} start with a NIfTI header)", p)


def _check_datatype(hdr, p: Path) -> None:
    code = int(hdr["datatype"])
    if code == 1:
        raise CaseError("unsupported voxel type: 1 bit per voxel (NIfTI datatype 1, binary); save the volume "
                        "as uint8 or int16", p)
    codes = hdr._data_type_codes
    if code not in codes.value_set("code") or codes.dtype[code].kind not in "biuf" or code in (0, 255):
        name = codes.label[code] if code in codes.value_set("code") else "unknown"
        raise CaseError(f"unsupported voxel type: NIfTI datatype {code} ({name}); braingui reads integer and "
                        "real scalar volumes", p)


def _data_offset(hdr, klass) -> int:
    if hdr is None or klass not in _NIFTI:
        return 0
    value = float(hdr["vox_offset"])
    return int(value) if np.isfinite(value) and 0 <= value < 2**40 else 0


def _from_bytes(klass, data: bytes, p: Path):
    try:
        return klass.from_stream(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for a bad header
        raise CaseError(f"unreadable header ({_short(exc)})", p) from exc


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) if str(exc).strip() else type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


# ------------------------------------------------------------------ header checks

def _check_header(img, path: Path) -> int:
    """Refuse an absurd or invalid header; return the bytes the file must hold (data offset + data)."""
    try:
        shape = tuple(int(d) for d in img.shape)
        dtype = img.get_data_dtype()
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        affine = np.asarray(img.affine, dtype=np.float64)
        offset = int(img.dataobj.offset)
    except CaseError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for a bad header
        raise CaseError(f"unreadable header ({_short(exc)})", path) from exc
    n_vox = check_shape(shape, path)
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise CaseError(f"unsupported voxel type {dtype} (only integer and real scalar data)", path)
    if len(zooms) < min(3, len(shape)) or not all(np.isfinite(z) and z > 0 for z in zooms[: len(shape)]):
        raise CaseError(f"invalid voxel size {zooms} in the header (pixdim; each must be a positive number of mm)",
                        path)
    if not np.all(np.isfinite(affine)):
        raise CaseError("invalid affine in the header: the sform/qform holds NaN or infinite values", path)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise CaseError("invalid affine in the header: the sform/qform is singular (a zero axis)", path)
    if offset < 0:
        raise CaseError(f"invalid data offset {offset} in the header (vox_offset)", path)
    return offset + n_vox * dtype.itemsize


# ------------------------------------------------------------------ reading

_READ_ERRORS = (EOFError, OSError, ValueError, MemoryError, TypeError, OverflowError)


def read_array(img: nib.Nifti1Image, path: str | os.PathLike) -> np.ndarray:
    """Read the voxel data of an image opened with :func:`open_header` as float32 (scaling applied).

    Returns:
        float32 array in the file's voxel order and shape (``img.shape``).

    Raises:
        CaseError: the data cannot be read (a short file, a bad scale factor).
    """
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a huge scale factor gives inf: the loader warns
            return np.asarray(img.dataobj, dtype=np.float32)
    except CaseError:
        raise
    except _READ_ERRORS as exc:
        raise CaseError(f"unreadable: the image data is truncated or corrupt ({_short(exc)})", path) from exc


def stored_integers(img: nib.Nifti1Image) -> bool:
    """True when the image stores integers without a scale factor: its values are the stored integers."""
    slope, inter = getattr(img.dataobj, "slope", None), getattr(img.dataobj, "inter", None)
    return img.get_data_dtype().kind in "iu" and slope in (1.0, None) and inter in (0.0, None)


def read_stored(img: nib.Nifti1Image, path: str | os.PathLike) -> np.ndarray:
    """The voxel data in its stored type, unscaled (for :func:`stored_integers` images: exact, no float copy).

    Raises:
        CaseError: the data cannot be read (a short file).
    """
    try:
        return np.asarray(img.dataobj.get_unscaled())
    except CaseError:
        raise
    except _READ_ERRORS as exc:
        raise CaseError(f"unreadable: the image data is truncated or corrupt ({_short(exc)})", path) from exc


def read_array_viewed(img: nib.Nifti1Image, path: str | os.PathLike, view) -> np.ndarray:
    """:func:`read_array` of a 3D image, then ``view`` (e.g. :meth:`braingui.geometry.Grid.canonical_view`), as
    one C-ordered float32 array.

    Integer data without scaling of up to 16 bits (most scanners' and BraTS files) is converted and reordered
    in one tiled pass from the file's own integers (:func:`braingui.geometry.c_order_copy`), instead of a float32
    copy in file order and a second, reordered one; the values are the same (such integers are exact in
    float32). Anything else goes the general way.

    Raises:
        CaseError: as :func:`read_array`.
    """
    if stored_integers(img) and img.get_data_dtype().itemsize <= 2:
        return c_order_copy(view(read_stored(img, path).reshape(img.shape[:3])), np.float32)
    return c_order_copy(view(read_array(img, path).reshape(img.shape[:3])))


def save_atomic(img: nib.Nifti1Image, path: str | os.PathLike) -> Path:
    """Write ``img`` to ``path`` atomically (see :mod:`braingui.atomic`); returns the path.

    A reader never sees a half-written file, and an existing file is replaced only once the new one
    is complete.
    """
    suffix = ".nii.gz" if Path(path).name.lower().endswith(".gz") else ".nii"  # nibabel picks the format by name
    return write_atomic(path, lambda tmp: nib.save(img, tmp), suffix=suffix)
