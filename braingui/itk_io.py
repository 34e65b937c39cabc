"""MetaImage (``.mha``/``.mhd``) and NRRD (``.nrrd``/``.nhdr``) volumes read through SimpleITK.

:func:`open_itk_header` validates a file the way :func:`braingui.nifti.open_header` validates a NIfTI
file, before any voxel data is read: the header (dimensions, size, voxel type, spacing, direction,
origin) and, for an uncompressed file, that the file - or the detached data file an ``.mhd``/``.nhdr``
names - holds as many bytes as the header needs. It returns an :class:`ItkImage`, which offers the part
of nibabel's image interface that :mod:`braingui.case` uses (``shape``, ``affine``, ``get_data_dtype()``,
``dataobj``), so the rest of the app sees one model whatever the format.

Geometry: ITK holds physical points in LPS (x to the left, y to the back, z up); NIfTI affines map to
RAS. The voxel -> RAS affine of an image with spacing ``s``, direction ``D`` and origin ``o`` is
``A[:3, :3] = diag(-1, -1, 1) @ D @ diag(s)`` and ``A[:3, 3] = diag(-1, -1, 1) @ o``. SimpleITK arrays are
indexed ``[z, y, x]``; they are transposed here to ``[x, y, z]`` (nibabel's order), so that
:class:`braingui.geometry.Grid` and the NIfTI writers of :mod:`braingui.export` work unchanged and an
exported segmentation overlays the input in world coordinates.

SimpleITK is imported only when such a file is opened.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from braingui.errors import CaseError
from braingui.formats import format_title
from braingui.nifti import check_shape

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
"""Flips ITK's LPS physical axes to NIfTI's RAS ones (its own inverse)."""

_HEADER_LIMIT = 1 << 20  # bytes of a header that are parsed (a MetaImage / NRRD header is a few hundred)


def _sitk(path: Path):
    try:
        import SimpleITK as sitk
    except ImportError as exc:  # pragma: no cover - SimpleITK is a dependency
        raise CaseError("reading MetaImage / NRRD files needs SimpleITK (pip install SimpleITK)", path) from exc
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK warnings would go to the console, not the user
    return sitk


def _pixel_dtypes(sitk) -> dict[int, np.dtype]:
    names = {"sitkUInt8": np.uint8, "sitkInt8": np.int8, "sitkUInt16": np.uint16, "sitkInt16": np.int16,
             "sitkUInt32": np.uint32, "sitkInt32": np.int32, "sitkUInt64": np.uint64, "sitkInt64": np.int64,
             "sitkFloat32": np.float32, "sitkFloat64": np.float64}
    return {getattr(sitk, n): np.dtype(t) for n, t in names.items() if hasattr(sitk, n)}


def _reason(exc: BaseException) -> str:
    """The useful line of a SimpleITK exception (its first lines are C++ source locations)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    nrrd = [ln for ln in lines if ln.startswith("[nrrd]")]
    if nrrd:
        return nrrd[-1].removeprefix("[nrrd]").strip()
    for ln in lines:
        if "ERROR:" in ln:
            text = ln.split("ERROR:", 1)[1]
            return re.sub(r"^\s*\w+\(0x[0-9a-f]+\):\s*", "", text).strip()[:160]
    return (lines[-1] if lines else type(exc).__name__)[:160]


def itk_affine(spacing, direction, origin) -> np.ndarray:
    """The NIfTI-style voxel -> RAS affine of an ITK image.

    Args:
        spacing: voxel size along each image axis (2 to 4 values; only the first 3 axes are spatial).
        direction: the direction cosines, row-major ``n x n`` (``Image.GetDirection()``).
        origin: physical position (LPS, mm) of voxel 0.

    Returns:
        float64 ``(4, 4)`` affine mapping ``[x, y, z]`` voxel indices to RAS millimetres.
    """
    n = len(spacing)
    d = np.asarray(direction, dtype=np.float64).reshape(n, n)
    rot, s, o = np.eye(3), np.ones(3), np.zeros(3)
    k = min(n, 3)
    rot[:k, :k], s[:k], o[:k] = d[:k, :k], np.asarray(spacing[:k], float), np.asarray(origin[:k], float)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ rot @ np.diag(s)
    affine[:3, 3] = LPS_TO_RAS @ o
    return affine


class ItkArrayProxy:
    """The voxel data of an :class:`ItkImage`, read when first asked for (as nibabel's ``ArrayProxy``).

    ``np.asarray(proxy, dtype)`` and :meth:`get_unscaled` give an ``(X, Y, Z[, T])`` array in the file's
    voxel type, indexed ``[x, y, z]``. ``slope``/``inter`` are 1 and 0: ITK applies no scaling.
    """

    slope = 1.0
    inter = 0.0

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.shape, self.dtype = path, shape, dtype

    def get_unscaled(self) -> np.ndarray:
        """Read the data: ``shape`` array of ``dtype``, axes ``[x, y, z(, t)]``.

        Raises:
            CaseError: SimpleITK cannot read the data (truncated or corrupt).
        """
        sitk = _sitk(self.path)
        try:
            image = sitk.ReadImage(os.fspath(self.path))
        except RuntimeError as exc:
            raise CaseError(f"unreadable: the image data is truncated or corrupt ({_reason(exc)})", self.path) from exc
        array = sitk.GetArrayFromImage(image)  # [z, y, x] (or [t, z, y, x])
        array = array.transpose(tuple(range(array.ndim))[::-1])
        if array.shape != self.shape:
            raise CaseError(f"unreadable: the data has shape {array.shape}, the header {self.shape}", self.path)
        return array

    def __array__(self, dtype=None, copy=None):
        array = self.get_unscaled()
        return array if dtype is None else array.astype(dtype, copy=False)


class ItkImage:
    """A MetaImage / NRRD volume with its header validated and its data not yet read.

    Attributes:
        path: the file.
        shape: ``(X, Y, Z[, T])`` in ``[x, y, z]`` order (ITK's size).
        affine: voxel -> RAS affine (see the module docstring).
        dataobj: the :class:`ItkArrayProxy`.
        format: ``MetaImage`` or ``NRRD``.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], affine: np.ndarray, dtype: np.dtype):
        self.path, self.shape, self.affine = path, shape, affine
        self.dataobj = ItkArrayProxy(path, shape, dtype)
        self.format = format_title(path) or "ITK"

    def get_data_dtype(self) -> np.dtype:
        """The voxel type stored in the file."""
        return self.dataobj.dtype


def open_itk_header(path: str | os.PathLike) -> ItkImage:
    """Open a MetaImage or NRRD file and validate it without reading voxel data.

    Args:
        path: an existing, non-empty ``.mha``, ``.mhd``, ``.nrrd`` or ``.nhdr`` file.

    Returns:
        The image, data not yet read.

    Raises:
        CaseError: not such a file, a detached data file that is missing or short, a file shorter than
            its header needs, more than 4 dimensions, several values per voxel, an unsupported voxel
            type, an absurd size, or an invalid spacing, direction or origin.
    """
    p = Path(path)
    title = format_title(p) or "MetaImage / NRRD"
    layout = _data_layout(p)  # a missing detached data file is named before SimpleITK trips over it
    sitk = _sitk(p)
    reader = sitk.ImageFileReader()
    reader.SetFileName(os.fspath(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CaseError(f"not a readable {title} file ({_reason(exc)})", p) from exc
    shape = tuple(int(d) for d in reader.GetSize())
    if not 2 <= len(shape) <= 4:
        raise CaseError(f"{len(shape)}D image {shape}; a 3D volume is needed", p)
    if reader.GetNumberOfComponents() != 1:
        raise CaseError(f"{reader.GetNumberOfComponents()} values per voxel (a vector image); a volume with one "
                        "value per voxel is needed", p)
    dtype = _pixel_dtypes(sitk).get(reader.GetPixelID())
    if dtype is None:
        raise CaseError(f"unsupported voxel type {sitk.GetPixelIDValueAsString(reader.GetPixelID())} "
                        "(only integer and real scalar data)", p)
    n_vox = check_shape(shape, p)
    spacing = np.asarray(reader.GetSpacing(), dtype=np.float64)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise CaseError(f"invalid voxel size {tuple(float(s) for s in spacing)} in the header", p)
    direction, origin = np.asarray(reader.GetDirection(), float), np.asarray(reader.GetOrigin(), float)
    if not (np.all(np.isfinite(direction)) and np.all(np.isfinite(origin))):
        raise CaseError("invalid direction or origin in the header (not finite)", p)
    affine = itk_affine(spacing, direction, origin)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise CaseError("invalid direction in the header (singular)", p)
    _check_data_size(p, layout, n_vox * dtype.itemsize)
    return ItkImage(p, shape, affine, dtype)


# ------------------------------------------------------------------ where the voxel data lies

def _header_text(path: Path, nrrd: bool) -> tuple[list[str], int | None]:
    """The header lines and the byte offset where attached data starts (``None``: not found)."""
    with open(path, "rb") as fh:
        head = fh.read(_HEADER_LIMIT)
    if nrrd:
        if path.suffix.lower() == ".nhdr":
            return head.decode("latin-1").splitlines(), None
        end = re.search(rb"\r?\n\r?\n", head)
        return head[: end.start() if end else len(head)].decode("latin-1").splitlines(), end.end() if end else None
    lines, pos = [], 0
    for raw in head.splitlines(keepends=True):
        pos += len(raw)
        line = raw.decode("latin-1").strip()
        lines.append(line)
        if line.split("=", 1)[0].strip().lower() == "elementdatafile":
            return lines, pos
    return lines, None


def _data_layout(path: Path) -> dict:
    """Where the data of ``path`` is: ``file``, ``offset``, and whether its size can be checked (``raw``).

    Raises:
        CaseError: a detached data file named by the header does not exist.
    """
    nrrd = path.suffix.lower() in (".nrrd", ".nhdr")
    lines, attached_at = _header_text(path, nrrd)
    sep = ":" if nrrd else "="
    fields: dict[str, str] = {}
    for line in lines:
        if sep in line and not line.startswith("#") and ":=" not in line:
            key, value = line.split(sep, 1)
            fields[key.strip().lower().replace(" ", "")] = value.strip()
    if nrrd:
        name = fields.get("datafile")
        raw = fields.get("encoding", "raw").lower() == "raw" and fields.get("lineskip", "0") in ("0", "")
        skip = fields.get("byteskip", "0")
    else:
        name = fields.get("elementdatafile")
        name = None if name is not None and name.upper() == "LOCAL" else name
        raw = (fields.get("compresseddata", "false").lower() != "true"
               and fields.get("binarydata", "true").lower() == "true")
        skip = fields.get("headersize", "0")
        if name is None and fields.get("elementdatafile") is None:
            raw = False  # not a MetaImage header SimpleITK will accept; it reports that
    try:
        skip_bytes = int(skip)
    except ValueError:
        skip_bytes, raw = 0, False
    raw = raw and skip_bytes >= 0  # -1: the data is at the end of the file, any size will do
    if name is None:
        return {"file": path, "offset": (attached_at or 0) + skip_bytes, "raw": raw and attached_at is not None,
                "detached": False}
    if name.upper().startswith("LIST") or "%" in name or len(name.split()) > 1:
        return {"file": None, "offset": 0, "raw": False, "detached": True}  # a multi-file series
    data = (path.parent / name) if not os.path.isabs(name) else Path(name)
    if not data.is_file():
        raise CaseError(f"its data file {name} is missing (the header names it; keep it beside {path.name})", path)
    return {"file": data, "offset": skip_bytes, "raw": raw, "detached": True}


def _check_data_size(path: Path, layout: dict, data_bytes: int) -> None:
    if not layout["raw"] or layout["file"] is None:
        return
    needed = layout["offset"] + data_bytes
    size = layout["file"].stat().st_size
    if size >= needed:
        return
    if layout["detached"]:
        raise CaseError(f"truncated: its data file {layout['file'].name} has {size} bytes, the header needs "
                        f"{needed}", path)
    raise CaseError(f"truncated: the header needs {needed} bytes of data, the file has {size}", path)
