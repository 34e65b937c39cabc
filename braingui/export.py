"""Writing results: NIfTI volumes on the input's original grid and ``results.json`` (numpy + nibabel, no torch).

Every volume of an :class:`~braingui.results.AnalysisResult` lives on the case's canonical RAS+ grid;
here it is put back into the files' original voxel order (``Grid.to_original``) and written with the
files' original affine, so it opens on top of the input in ITK-SNAP, 3D Slicer or FSLeyes with no
shift or flip. Each file is written atomically (temporary file + rename). The GUI reuses these writers.

Files of :func:`export_result`:

* ``segmentation.nii.gz`` — uint8 BraTS labels (1 necrotic / non-enhancing core, 2 edema, 4 enhancing);
* ``gradcam.nii.gz`` — float32 Grad-CAM in [0, 1] of the predicted class
  (``gradcam_<class>.nii.gz`` for every class with ``all_cams``);
* ``results.json`` — :meth:`AnalysisResult.summary` (probabilities, predicted class, volumes,
  timings, models with sha256, software version, warnings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from braingui.geometry import Grid
from braingui.nifti import save_atomic, write_bytes_atomic
from braingui.results import AnalysisResult

SEGMENTATION_FILE = "segmentation.nii.gz"
GRADCAM_FILE = "gradcam.nii.gz"
RESULTS_FILE = "results.json"
NOTICE = b"braingui result - research software, not for clinical use"


def original_image(volume: np.ndarray, grid: Grid, dtype: type | np.dtype, description: bytes = NOTICE) -> nib.Nifti1Image:
    """A NIfTI image of a canonical-grid volume on the files' original grid and affine.

    Args:
        volume: ``(X, Y, Z)`` on ``grid.shape`` (canonical RAS+ order).
        grid: the case grid.
        dtype: the stored voxel type (``np.uint8`` for labels, ``np.float32`` for maps).
    """
    if tuple(volume.shape) != tuple(grid.shape):
        raise ValueError(f"volume shape {volume.shape} is not the case grid {grid.shape}")
    data = np.ascontiguousarray(grid.to_original(np.asarray(volume)).astype(dtype, copy=False))
    affine = np.asarray(grid.original_affine, dtype=np.float64)
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(np.dtype(dtype))
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = description[:79]
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def write_segmentation(labels: np.ndarray, grid: Grid, path: str | os.PathLike) -> Path:
    """Write a BraTS label map (uint8) on the original grid; returns the path."""
    img = original_image(labels, grid, np.uint8)
    img.header["intent_name"] = b"BraTS labels"
    img.header["cal_min"], img.header["cal_max"] = 0, 4
    return save_atomic(img, path)


def write_map(volume: np.ndarray, grid: Grid, path: str | os.PathLike) -> Path:
    """Write a float32 map (a Grad-CAM, a probability) on the original grid; returns the path."""
    img = original_image(volume, grid, np.float32)
    img.header["cal_min"], img.header["cal_max"] = 0.0, 1.0
    return save_atomic(img, path)


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_bytes_atomic((json.dumps(data, indent=2, allow_nan=False) + "\n").encode("utf-8"), path)


def export_result(result: AnalysisResult, grid: Grid, out_dir: str | os.PathLike,
                  all_cams: bool = False) -> dict[str, Path]:
    """Write a result's files into ``out_dir`` (created when missing).

    Args:
        result: the pipeline's result.
        grid: the case's grid (``Case.grid``).
        out_dir: the output folder.
        all_cams: also write ``gradcam_<class>.nii.gz`` for every class that has a map.

    Returns:
        ``{"segmentation": path, "gradcam": path, "gradcam_<class>": path ..., "results": path}`` for the
        files written (no segmentation without a segmentation model, no Grad-CAM without a map).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if result.labels is not None:
        written["segmentation"] = write_segmentation(result.labels, grid, out / SEGMENTATION_FILE)
    if result.predicted_class in result.cams:
        written["gradcam"] = write_map(result.cams[result.predicted_class], grid, out / GRADCAM_FILE)
    if all_cams:
        for code, cam in sorted(result.cams.items()):
            written[f"gradcam_{code}"] = write_map(cam, grid, out / f"gradcam_{_safe(code)}.nii.gz")
    written["results"] = write_json(result.summary(), out / RESULTS_FILE)
    return written


def _safe(code: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in code)
