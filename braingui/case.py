"""The case model: four co-registered MRI volumes (and an optional label map) on one RAS+ grid.

:func:`load_case` discovers, reads and validates a case (NIfTI through nibabel, MetaImage and NRRD
through :mod:`braingui.itk_io`). It refuses, with a :class:`CaseError` that names the file and the
problem, anything that cannot be analysed correctly (missing modality, unreadable, truncated or empty
file, a format it does not read, 2D or 4D data, grids of different shape, affines that differ, an absurd
header, a broken link; the odd file out is the one named). It warns and goes on for NaN/inf voxels
(set to 0), an all-zero or constant modality, a grid under 8 voxels along an axis, voxel sizes outside
0.05-20 mm, one file (or identical voxels) used for several modalities, header fixes nibabel made and
label values outside the known conventions; the warnings stay with the case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from braingui import dicom
from braingui import labels as lab
from braingui.discovery import MODALITIES, MODALITY_TITLES, MSD_CHANNELS, SCHEME_BRATS2023, SCHEME_MSD, CaseFiles, discover
from braingui.errors import CaseError
from braingui.geometry import Grid
from braingui.nifti import HEADER_FIX_NOTE, open_header, read_array, read_array_viewed, read_stored, stored_integers
from braingui.skull import skull_warning

AFFINE_ROT_TOL = 1e-3
"""Largest difference allowed between the 3x3 parts of two modalities' affines (mm per voxel)."""
AFFINE_SHIFT_TOL = 1e-2
"""Largest difference allowed between two modalities' origins (mm)."""
MIN_AXIS_VOXELS = 8
"""A volume with fewer voxels along an axis loads with a warning: results on it are meaningless (the
networks work on multiples of 8; the test suite's synthetic cases are 8 x 9 x 10)."""
VOXEL_MM_RANGE = (0.05, 20.0)
"""Voxel sizes (mm) outside this range load with a warning (a wrong pixdim or affine, most likely)."""


@dataclass(frozen=True)
class IntensityStats:
    """Intensity summary of one modality (for the pre-flight report and window/level)."""

    minimum: float
    maximum: float
    p1: float
    p99: float
    nonzero_fraction: float


@dataclass
class Case:
    """One case on its canonical grid.

    Attributes:
        case_id: identifier; contains ``SYNTHETIC`` for generated phantoms.
        files: where each volume came from.
        grid: the canonical grid and the way back to the files' grid.
        images: modality -> read-only float32 ``(X, Y, Z)`` RAS+ array.
        labels: read-only uint8 ``(X, Y, Z)`` label map in the internal BraTS convention, or ``None``.
        label_convention: the convention the label file was read in (``brats``, ``brats2023``, ``msd``).
        warnings: problems that did not stop loading.
    """

    case_id: str
    files: CaseFiles
    grid: Grid
    images: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    label_convention: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def is_synthetic(self) -> bool:
        """True for generated phantoms (their id says ``SYNTHETIC``)."""
        return "synthetic" in self.case_id.lower()

    def stack(self, channels: tuple[str, ...] = MODALITIES) -> np.ndarray:
        """The modalities in ``channels`` order as one float32 array ``(C, X, Y, Z)``."""
        return np.stack([self.images[c] for c in channels])

    def intensity_stats(self, modality: str) -> IntensityStats:
        """Range and robust percentiles (over non-zero voxels) of one modality."""
        data = self.images[modality]
        nz = data[data != 0]
        if nz.size == 0:
            return IntensityStats(0.0, 0.0, 0.0, 0.0, 0.0)
        sample = nz[:: max(1, nz.size // 200_000)]
        p1, p99 = np.percentile(sample, [1, 99])
        return IntensityStats(float(data.min()), float(data.max()), float(p1), float(p99), nz.size / data.size)

    def region_volumes_ml(self) -> dict[str, float] | None:
        """ET / TC / WT volumes (mL) of the label map, or ``None`` without one."""
        if self.labels is None:
            return None
        return lab.region_volumes_ml(self.labels, self.grid.voxel_ml)


def load_case(path: str | os.PathLike | None = None, explicit: dict[str, str | os.PathLike] | None = None,
              label_convention: str | None = None, keep_patient_id: bool | None = None) -> Case:
    """Discover, read and validate a case.

    Args:
        path: a case folder (or an MSD 4D image file); ``None`` when ``explicit`` names every file.
        explicit: modality -> file overrides (``flair``, ``t1``, ``t1ce``, ``t2``, ``seg``).
        label_convention: force one of :data:`braingui.labels.CONVENTIONS` (``brats``, ``brats2023``,
            ``msd``, ``brats2013``, ``brats2012``) instead of detecting it.
        keep_patient_id: for a DICOM folder (:mod:`braingui.dicom`; ``explicit`` then names series by
            number or description), make the case id of the PatientID; default ``$BRAINGUI_KEEP_PATIENT_ID``.

    Returns:
        The loaded case.

    Raises:
        CaseError: see the module docstring.
    """
    if label_convention is not None and label_convention not in lab.CONVENTIONS:
        raise CaseError(f"unknown label convention {label_convention!r} (use one of {', '.join(lab.CONVENTIONS)})")
    warnings: list[str] = []
    if dicom.is_dicom_folder(path):
        keep = keep_patient_id if keep_patient_id is not None else os.environ.get("BRAINGUI_KEEP_PATIENT_ID") == "1"
        files = dicom.case_files(path, explicit, warnings, keep_patient_id=keep)
    else:
        files = discover(path, explicit)
    if files.msd_image is not None:
        grid, images = _read_msd(files.msd_image, warnings)
    else:
        grid, images = _read_modalities(files, warnings)
    labels, convention = None, None
    if files.seg is not None:
        hint = label_convention or (lab.MSD if files.scheme == SCHEME_MSD else
                                    lab.BRATS2023 if files.scheme == SCHEME_BRATS2023 else None)
        labels, convention = _read_labels(files.seg, grid, hint, warnings)
    skull = skull_warning(images, grid.spacing)
    if skull:
        warnings.append(skull)
    return Case(files.case_id, files, grid, images, labels, convention, warnings)


def _read_modalities(files: CaseFiles, warnings: list[str]) -> tuple[Grid, dict[str, np.ndarray]]:
    headers = {m: open_header(files.images[m], warnings) for m in MODALITIES}
    for m, img in headers.items():
        _require_3d(img.shape, files.images[m])
    ref = _check_same_grid(headers, files.images, warnings)
    grid = Grid.from_original(headers[ref].shape[:3], headers[ref].affine)
    _grid_warnings(grid, files.images[ref], warnings)
    images = {}
    for m in MODALITIES:
        data = read_array_viewed(headers[m], files.images[m], grid.canonical_view)
        images[m] = _finish_volume(data, MODALITY_TITLES[m], files.images[m], warnings)
    _duplicate_warnings(images, files.images, warnings)
    return grid, images


def _read_msd(path: Path, warnings: list[str]) -> tuple[Grid, dict[str, np.ndarray]]:
    img = open_header(path, warnings)
    if len(img.shape) != 4 or img.shape[3] != len(MSD_CHANNELS):
        raise CaseError(f"an MSD image must be 4D with {len(MSD_CHANNELS)} channels "
                        f"(FLAIR, T1w, T1gd, T2w); this one has shape {img.shape}", path)
    grid = Grid.from_original(img.shape[:3], img.affine)
    _grid_warnings(grid, path, warnings)
    data = read_array(img, path)
    images = {}
    for i, m in enumerate(MSD_CHANNELS):
        images[m] = _finish_volume(grid.to_canonical(data[..., i]), f"{MODALITY_TITLES[m]} (channel {i})", path, warnings)
    return grid, images


def _require_3d(shape: tuple[int, ...], path: Path) -> None:
    if len(shape) == 4 and shape[3] == 1:
        return
    if len(shape) < 3:
        raise CaseError(f"{len(shape)}D image {tuple(shape)}; a 3D volume is needed", path)
    if len(shape) > 3:
        raise CaseError(f"{len(shape)}D image {tuple(shape)}; a 3D volume is needed "
                        "(for an MSD 4D image, open that file on its own)", path)


def _check_same_grid(headers: dict, paths: dict[str, Path], warnings: list[str]) -> str:
    """Refuse modalities off one grid; return the reference modality.

    The reference is the modality most others agree with (FLAIR on a tie), so the one odd file is the
    one named - not the first file compared with it - with any fix nibabel made to its header (a zero
    pixdim set to 1 mm, say), which is often why it differs.
    """
    mods = list(headers)

    def agree(a: str, b: str) -> bool:
        return _grid_difference(headers[a], paths[a], headers[b], paths[b]) is None

    ref = max(mods, key=lambda m: sum(agree(m, o) for o in mods))
    for m in mods:
        problem = _grid_difference(headers[ref], paths[ref], headers[m], paths[m])
        if problem:
            fixes = [w.split(f"{paths[m]}: ", 1)[1] for w in warnings if w.startswith(f"{paths[m]}: {HEADER_FIX_NOTE}")]
            raise CaseError(problem + "".join(f"; {fix}" for fix in fixes), paths[m])
    return ref


def _grid_difference(ref_img, ref_path: Path, img, path: Path) -> str | None:
    if tuple(img.shape[:3]) != tuple(ref_img.shape[:3]):
        return (f"grid {tuple(img.shape[:3])} differs from {ref_path.name} {tuple(ref_img.shape[:3])}; "
                "the modalities must be co-registered on one grid")
    a, b = ref_img.affine, img.affine
    rot = float(np.abs(a[:3, :3] - b[:3, :3]).max())
    shift = float(np.abs(a[:3, 3] - b[:3, 3]).max())
    if rot > AFFINE_ROT_TOL or shift > AFFINE_SHIFT_TOL:
        return (f"affine differs from {ref_path.name} (by {max(rot, shift):.3g} mm); the modalities are "
                "not co-registered - register them to one grid first")
    return None


def _grid_warnings(grid: Grid, path: Path, warnings: list[str]) -> None:
    """Warn for a grid too small, or voxels too large or small, for the results to mean anything."""
    shape = tuple(int(s) for s in grid.original_shape)
    if min(shape) < MIN_AXIS_VOXELS:
        warnings.append(f"{path}: the volume is only {' x '.join(map(str, shape))} voxels (fewer than "
                        f"{MIN_AXIS_VOXELS} along an axis); results are meaningless")
    spacing = tuple(float(s) for s in grid.spacing)
    low, high = VOXEL_MM_RANGE
    if any(not low <= s <= high for s in spacing):
        warnings.append(f"{path}: voxel size {' x '.join(f'{s:.3g}' for s in spacing)} mm is outside "
                        f"{low}-{high:g} mm (check pixdim and the affine); volumes and results are meaningless")


def _duplicate_warnings(images: dict[str, np.ndarray], paths: dict[str, Path], warnings: list[str]) -> None:
    """Warn when one file is used for several modalities, or two modalities hold identical voxels.

    Args:
        images: modality -> float32 ``(X, Y, Z)`` array (all on one grid).
        paths: modality -> the file it was read from.
    """
    groups: dict[str, list[str]] = {}
    for m in images:
        groups.setdefault(os.path.realpath(paths[m]), []).append(m)
    for mods in groups.values():
        if len(mods) > 1:
            titles = [MODALITY_TITLES[m] for m in mods]
            warnings.append(f"{paths[mods[0]]}: one file used for {', '.join(titles[:-1])} and {titles[-1]}; "
                            "the analysis needs four different scans")
    firsts = [mods[0] for mods in groups.values()]
    seen: dict[bytes, list[str]] = {}
    for m in firsts:  # a cheap fingerprint first, then a full comparison
        sample = np.ascontiguousarray(images[m].reshape(-1)[:: max(1, images[m].size // 4096)]).tobytes()
        for other in seen.get(sample, []):
            if np.array_equal(images[m], images[other]):
                warnings.append(f"{paths[m]}: {MODALITY_TITLES[m]} is identical to {MODALITY_TITLES[other]} "
                                f"({paths[other].name}); one file was probably copied in place of another")
                break
        seen.setdefault(sample, []).append(m)


def _finish_volume(data: np.ndarray, title: str, path: Path, warnings: list[str]) -> np.ndarray:
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # min / max are NaN or inf exactly when a voxel is
        bad = ~np.isfinite(data)
        data[bad] = 0.0
        warnings.append(f"{path}: {title} has {int(bad.sum())} NaN/inf voxels; set to 0")
        lo, hi = float(data.min()), float(data.max())
    if lo == hi == 0.0:
        warnings.append(f"{path}: {title} is all zero; results that use it are meaningless")
    elif lo == hi:
        warnings.append(f"{path}: {title} is constant (every voxel is {lo:g}); results that use it are meaningless")
    data.flags.writeable = False
    return data


def _read_labels(path: Path, grid: Grid, hint: str | None, warnings: list[str]) -> tuple[np.ndarray, str]:
    img = open_header(path, warnings)
    _require_3d(img.shape, path)
    if tuple(img.shape[:3]) != tuple(grid.original_shape):
        raise CaseError(f"label map grid {tuple(img.shape[:3])} differs from the images' {grid.original_shape}", path)
    rot = float(np.abs(img.affine[:3, :3] - grid.original_affine[:3, :3]).max())
    shift = float(np.abs(img.affine[:3, 3] - grid.original_affine[:3, 3]).max())
    if rot > AFFINE_ROT_TOL or shift > AFFINE_SHIFT_TOL:
        raise CaseError(f"label map affine differs from the images' (by {max(rot, shift):.3g} mm)", path)
    raw = grid.to_canonical(_read_label_array(img, path).reshape(img.shape[:3]))
    if raw.dtype.kind == "f":
        finite = np.isfinite(raw)
        if not finite.all() or np.any(raw[finite] != np.round(raw[finite])):
            warnings.append(f"{path}: label map has non-integer or NaN values; they are rounded / set to 0")
            raw = np.where(finite, np.round(raw), 0)
        raw = raw.astype(np.int64)
    values, counts = lab.value_counts(raw)
    nonzero = {int(v) for v in values if v != 0}
    convention, note = lab.detect_convention(nonzero, hint, dict(zip(values.tolist(), counts.tolist())), path.name)
    if note:
        warnings.append(f"{path}: {note}")
    labels, unknown = lab.to_internal(raw, convention, values)
    if unknown:
        warnings.append(f"{path}: label values {unknown} are not in the {lab.CONVENTION_TITLES[convention]} "
                        "convention; ignored")
    labels.flags.writeable = False
    return labels, convention


def _read_label_array(img, path: Path) -> np.ndarray:
    """Label data in its stored integer type when unscaled (faster, exact), else float32."""
    return read_stored(img, path) if stored_integers(img) else read_array(img, path)
