"""The case model: four co-registered MRI volumes (and an optional label map) on one RAS+ grid.

:func:`load_case` discovers, reads and validates a case. It refuses, with a :class:`CaseError` that
names the file and the problem, anything that cannot be analysed correctly (missing modality,
unreadable, truncated or empty file, not NIfTI, 2D or 4D data, grids of different shape, affines that
differ, an absurd header, a broken link). It warns and goes on for NaN/inf voxels (set to 0), an all-zero
modality and label values outside the known conventions; the warnings stay with the case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from braingui import labels as lab
from braingui.discovery import MODALITIES, MODALITY_TITLES, MSD_CHANNELS, SCHEME_BRATS2023, SCHEME_MSD, CaseFiles, discover
from braingui.errors import CaseError
from braingui.geometry import Grid
from braingui.nifti import open_header, read_array

AFFINE_ROT_TOL = 1e-3
"""Largest difference allowed between the 3x3 parts of two modalities' affines (mm per voxel)."""
AFFINE_SHIFT_TOL = 1e-2
"""Largest difference allowed between two modalities' origins (mm)."""


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
              label_convention: str | None = None) -> Case:
    """Discover, read and validate a case.

    Args:
        path: a case folder (or an MSD 4D image file); ``None`` when ``explicit`` names every file.
        explicit: modality -> file overrides (``flair``, ``t1``, ``t1ce``, ``t2``, ``seg``).
        label_convention: force ``brats``, ``brats2023`` or ``msd`` instead of detecting it.

    Returns:
        The loaded case.

    Raises:
        CaseError: see the module docstring.
    """
    if label_convention is not None and label_convention not in lab.CONVENTIONS:
        raise CaseError(f"unknown label convention {label_convention!r} (use one of {', '.join(lab.CONVENTIONS)})")
    files = discover(path, explicit)
    warnings: list[str] = []
    if files.msd_image is not None:
        grid, images = _read_msd(files.msd_image, warnings)
    else:
        grid, images = _read_modalities(files, warnings)
    labels, convention = None, None
    if files.seg is not None:
        hint = label_convention or (lab.MSD if files.scheme == SCHEME_MSD else
                                    lab.BRATS2023 if files.scheme == SCHEME_BRATS2023 else None)
        labels, convention = _read_labels(files.seg, grid, hint, warnings)
    return Case(files.case_id, files, grid, images, labels, convention, warnings)


def _read_modalities(files: CaseFiles, warnings: list[str]) -> tuple[Grid, dict[str, np.ndarray]]:
    headers = {m: open_header(files.images[m]) for m in MODALITIES}
    for m, img in headers.items():
        _require_3d(img.shape, files.images[m])
    ref = MODALITIES[0]
    for m in MODALITIES[1:]:
        _check_same_grid(headers[ref], files.images[ref], headers[m], files.images[m])
    grid = Grid.from_original(headers[ref].shape[:3], headers[ref].affine)
    images = {}
    for m in MODALITIES:
        data = read_array(headers[m], files.images[m]).reshape(headers[m].shape[:3])
        images[m] = _finish_volume(grid.to_canonical(data), MODALITY_TITLES[m], files.images[m], warnings)
    return grid, images


def _read_msd(path: Path, warnings: list[str]) -> tuple[Grid, dict[str, np.ndarray]]:
    img = open_header(path)
    if len(img.shape) != 4 or img.shape[3] != len(MSD_CHANNELS):
        raise CaseError(f"an MSD image must be 4D with {len(MSD_CHANNELS)} channels "
                        f"(FLAIR, T1w, T1gd, T2w); this one has shape {img.shape}", path)
    grid = Grid.from_original(img.shape[:3], img.affine)
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


def _check_same_grid(ref_img, ref_path: Path, img, path: Path) -> None:
    if tuple(img.shape[:3]) != tuple(ref_img.shape[:3]):
        raise CaseError(f"grid {tuple(img.shape[:3])} differs from {ref_path.name} {tuple(ref_img.shape[:3])}; "
                        "the modalities must be co-registered on one grid", path)
    a, b = ref_img.affine, img.affine
    rot = float(np.abs(a[:3, :3] - b[:3, :3]).max())
    shift = float(np.abs(a[:3, 3] - b[:3, 3]).max())
    if rot > AFFINE_ROT_TOL or shift > AFFINE_SHIFT_TOL:
        raise CaseError(f"affine differs from {ref_path.name} (by {max(rot, shift):.3g} mm); the modalities are "
                        "not co-registered - register them to one grid first", path)


def _finish_volume(data: np.ndarray, title: str, path: Path, warnings: list[str]) -> np.ndarray:
    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if n_bad:
        data[bad] = 0.0
        warnings.append(f"{path}: {title} has {n_bad} NaN/inf voxels; set to 0")
    if not np.any(data):
        warnings.append(f"{path}: {title} is all zero; results that use it are meaningless")
    data.flags.writeable = False
    return data


def _read_labels(path: Path, grid: Grid, hint: str | None, warnings: list[str]) -> tuple[np.ndarray, str]:
    img = open_header(path)
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
    convention, note = lab.detect_convention(nonzero, hint, dict(zip(values.tolist(), counts.tolist())))
    if note:
        warnings.append(f"{path}: {note}")
    labels, unknown = lab.to_internal(raw, convention)
    if unknown:
        warnings.append(f"{path}: label values {unknown} are not in the {lab.CONVENTION_TITLES[convention]} "
                        "convention; ignored")
    labels.flags.writeable = False
    return labels, convention


def _read_label_array(img, path: Path) -> np.ndarray:
    """Label data in its stored integer type when unscaled (faster, exact), else float32."""
    slope, inter = img.dataobj.slope, img.dataobj.inter
    if img.get_data_dtype().kind in "iu" and slope in (1.0, None) and inter in (0.0, None):
        try:
            return np.asarray(img.dataobj.get_unscaled())
        except (EOFError, OSError, ValueError) as exc:
            raise CaseError(f"unreadable: the image data is truncated or corrupt ({exc})", path) from exc
    return read_array(img, path)
