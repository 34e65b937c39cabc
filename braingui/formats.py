"""Image file formats by name: which files braingui reads, and what to say about the ones it cannot.

Readable (:data:`READABLE`): NIfTI (``.nii``, ``.nii.gz``) and FreeSurfer MGH (``.mgz``, ``.mgh``) through
nibabel (:mod:`braingui.nifti`); MetaImage (``.mha``, ``.mhd``) and NRRD (``.nrrd``, ``.nhdr``) through
SimpleITK (:mod:`braingui.itk_io`). Extensions match case-insensitively.

Formats met in brain-MRI folders that braingui does not read (DICOM, Analyze, NumPy arrays, archives,
pictures, ...) are named by :func:`unreadable_format`, so a user is told "a DICOM file" with what to do,
never "missing modality (found: none)". Nothing here imports SimpleITK or reads voxel data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")
MGH_EXTENSIONS: tuple[str, ...] = (".mgz", ".mgh")
ITK_EXTENSIONS: tuple[str, ...] = (".mha", ".mhd", ".nrrd", ".nhdr")
READABLE_EXTENSIONS: tuple[str, ...] = NIFTI_EXTENSIONS + ITK_EXTENSIONS + MGH_EXTENSIONS

READABLE = ("NIfTI (.nii, .nii.gz), MetaImage (.mha, .mhd), NRRD (.nrrd, .nhdr) "
            "and FreeSurfer MGH (.mgz, .mgh)")
"""The readable formats, as the messages name them."""


@dataclass(frozen=True)
class Unreadable:
    """A format braingui recognises but does not read.

    Attributes:
        name: the format, e.g. ``DICOM``.
        hint: what to do with such a file (may be empty).
    """

    name: str
    hint: str = ""

    def describe(self, count: int = 1) -> str:
        """``"a DICOM file"`` or ``"3 DICOM files"``."""
        if count == 1:
            article = "an" if self.name[0].lower() in "aeiou" else "a"
            return f"{article} {self.name} file"
        return f"{count} {self.name} files"


_DICOM = Unreadable("DICOM", "open the folder that holds the DICOM series (braingui converts it with dcm2niix), "
                                "or convert it to NIfTI")
_CONVERT = "convert it to NIfTI (.nii.gz)"
_NO_GEOMETRY = "it holds no voxel size or orientation; save the volume as NIfTI with its affine"
_UNREADABLE: tuple[tuple[tuple[str, ...], Unreadable], ...] = (
    ((".nii.zip", ".nii.gz.zip", ".zip", ".tar.gz", ".tgz", ".tar", ".7z", ".rar", ".gz", ".bz2", ".xz"),
     Unreadable("archive", "unpack it first")),
    ((".dcm", ".dicom", ".ima"), _DICOM),
    ((".img", ".hdr"), Unreadable("Analyze 7.5 / NIfTI-pair", "convert the .hdr/.img pair to one .nii.gz file")),
    ((".npy", ".npz"), Unreadable("NumPy array", _NO_GEOMETRY)),
    ((".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"),
     Unreadable("picture", _NO_GEOMETRY)),
    ((".mnc", ".mnc2"), Unreadable("MINC", _CONVERT)),
    ((".par", ".rec"), Unreadable("Philips PAR/REC", _CONVERT)),
    ((".vtk", ".vti"), Unreadable("VTK", _CONVERT)),
    ((".h5", ".hdf5", ".mat"), Unreadable("MATLAB / HDF5", _CONVERT)),
    ((".gipl",), Unreadable("GIPL", _CONVERT)),
)


def _lower_name(name: str | os.PathLike) -> str:
    return Path(name).name.lower()


def image_extension(name: str | os.PathLike) -> str | None:
    """The readable extension of a file name (lower case, e.g. ``".nii.gz"``), or ``None``."""
    lower = _lower_name(name)
    for ext in READABLE_EXTENSIONS:
        if lower.endswith(ext) and len(lower) > len(ext):
            return ext
    return None


def image_stem(name: str | os.PathLike) -> str | None:
    """The file name without its readable extension (case kept), or ``None`` if not readable-named."""
    ext = image_extension(name)
    base = Path(name).name
    return base[: -len(ext)] if ext else None


def is_itk(name: str | os.PathLike) -> bool:
    """True for the names read through SimpleITK (MetaImage, NRRD)."""
    return image_extension(name) in ITK_EXTENSIONS


def format_title(name: str | os.PathLike) -> str | None:
    """``NIfTI``, ``MetaImage``, ``NRRD`` or ``FreeSurfer MGH`` for a readable name, else ``None``."""
    ext = image_extension(name)
    if ext in NIFTI_EXTENSIONS:
        return "NIfTI"
    if ext in (".mha", ".mhd"):
        return "MetaImage"
    if ext in (".nrrd", ".nhdr"):
        return "NRRD"
    return "FreeSurfer MGH" if ext in MGH_EXTENSIONS else None


def unreadable_stem(name: str | os.PathLike) -> str | None:
    """The name without the extension of a recognised unreadable format, or ``None``."""
    lower, base = _lower_name(name), Path(name).name
    for suffixes, _ in _UNREADABLE:
        for ext in suffixes:
            if lower.endswith(ext) and len(lower) > len(ext):
                return base[: -len(ext)]
    return None


def unreadable_format(path: str | os.PathLike, sniff: bool = False) -> Unreadable | None:
    """The format of a file braingui cannot read, if it is one it recognises.

    Args:
        path: the file.
        sniff: also look for the ``DICM`` magic of DICOM files named without a known extension
            (``IM0001``, ``1.3.12.2...``; reads 132 bytes).

    Returns:
        The format, or ``None`` (a readable name, or nothing recognised).
    """
    if image_extension(path) is not None:
        return None
    lower = _lower_name(path)
    for suffixes, fmt in _UNREADABLE:
        if any(lower.endswith(ext) and len(lower) > len(ext) for ext in suffixes):
            return fmt
    if sniff:
        try:
            with open(path, "rb") as fh:
                if fh.read(132)[128:132] == b"DICM":
                    return _DICOM
        except OSError:
            return None
    return None


def refusal(fmt: Unreadable, count: int = 1) -> str:
    """The message for a file (or ``count`` files) in an unreadable format, without the file name."""
    text = f"{fmt.describe(count)}; braingui reads {READABLE}"
    return f"{text} ({fmt.hint})" if fmt.hint else text
