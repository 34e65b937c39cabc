"""Writing results: NIfTI volumes on the input's original grid and ``results.json`` (numpy + nibabel, no torch).

Every volume of an :class:`~braingui.results.AnalysisResult` lives on the case's canonical RAS+ grid;
here it is put back into the files' original voxel order (``Grid.to_original``) and written with the
files' original affine, so it opens on top of the input in ITK-SNAP, 3D Slicer or FSLeyes with no
shift or flip. Each file is written atomically (temporary file + rename), and :func:`export_result`
puts the whole set in place as one step, never over a file braingui did not write
(:mod:`braingui.export_set`). The GUI reuses these writers.

Files of :func:`export_result`:

* ``segmentation.nii.gz`` — uint8 labels: 1 necrotic / non-enhancing core, 2 edema, 4 enhancing (BraTS,
  the default) or 3 enhancing (``label_convention="brats2023"``, ``--export-labels brats2023``);
* ``segmentation_labels.txt`` and ``segmentation.ctbl`` — the label names and colours for ITK-SNAP and
  3D Slicer (:mod:`braingui.label_tables`), in the same convention;
* ``gradcam.nii.gz`` — float32 Grad-CAM in [0, 1] of the predicted class
  (``gradcam_<class>.nii.gz`` for every class with ``all_cams``);
* ``uncertainty.nii.gz`` — float32 voxel uncertainty in [0, 0.5] across the test-time augmentation views
  (:mod:`braingui.uncertainty`; only when the analysis used more than one view);
* ``results.json`` — :meth:`AnalysisResult.summary` (probabilities, predicted class, volumes,
  timings, models with sha256, software version, warnings).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

from braingui import atomic
from braingui import label_tables
from braingui.geometry import Grid
from braingui.nifti import save_atomic
from braingui.results import AnalysisResult
from braingui.uncertainty import MAX_STD

SEGMENTATION_FILE = "segmentation.nii.gz"
GRADCAM_FILE = "gradcam.nii.gz"
UNCERTAINTY_FILE = "uncertainty.nii.gz"
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


def write_segmentation(labels: np.ndarray, grid: Grid, path: str | os.PathLike, convention: str = "brats") -> Path:
    """Write a label map (uint8) on the original grid; returns the path.

    Args:
        labels: uint8 ``(X, Y, Z)`` internal (BraTS 1/2/4) labels on ``grid.shape``.
        grid: the case grid.
        path: the ``.nii.gz`` file.
        convention: the values written, one of :data:`braingui.label_tables.EXPORT_CONVENTIONS`.
    """
    values = label_tables.export_values(convention)
    img = original_image(label_tables.from_internal(labels, convention), grid, np.uint8)
    img.header["intent_name"] = b"BraTS 2023 labels" if convention == "brats2023" else b"BraTS labels"
    img.header["cal_min"], img.header["cal_max"] = 0, max(values.values())
    return save_atomic(img, path)


def write_map(volume: np.ndarray, grid: Grid, path: str | os.PathLike, display_max: float = 1.0) -> Path:
    """Write a float32 map (a Grad-CAM, a probability) on the original grid; returns the path.

    ``display_max`` is the header's ``cal_max`` (viewers' default window top): 1 for maps in [0, 1].
    """
    img = original_image(volume, grid, np.float32)
    img.header["cal_min"], img.header["cal_max"] = 0.0, float(display_max)
    return save_atomic(img, path)


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON, atomically (NaN and infinities are refused: strict JSON)."""
    return atomic.write_json(data, path, allow_nan=False)


def safe_filename(text: str) -> str:
    """``text`` as one plain file name: letters, digits, ``-``, ``_`` and ``.`` kept, anything else ``_``.

    A leading dot becomes ``_`` too, so the name is neither hidden nor ``.``/``..``; ``""`` gives ``"_"``.
    """
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
    return "_" + name[1:] if name.startswith(".") else name or "_"


def export_volumes(result: AnalysisResult, grid: Grid, out_dir: str | os.PathLike,
                   all_cams: bool = False, label_convention: str = "brats") -> dict[str, Path]:
    """Write a result's NIfTI volumes into ``out_dir`` (created when missing); not ``results.json``.

    Args:
        result: the pipeline's result.
        grid: the case's grid (``Case.grid``).
        out_dir: the output folder.
        all_cams: also write ``gradcam_<class>.nii.gz`` for every class that has a map.
        label_convention: the segmentation's values (``brats`` 1/2/4 or ``brats2023`` 1/2/3); the label
            files ``segmentation_labels.txt`` (ITK-SNAP) and ``segmentation.ctbl`` (3D Slicer) go beside it.

    Returns:
        ``{"segmentation": path, "itksnap_labels": path, "slicer_colors": path, "uncertainty": path, "gradcam": path, "gradcam_<class>": path ...}`` for
        the files written (no segmentation without a segmentation model, no uncertainty without test-time
        augmentation, no Grad-CAM without a map).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if result.labels is not None:
        written["segmentation"] = write_segmentation(result.labels, grid, out / SEGMENTATION_FILE, label_convention)
        written.update(label_tables.write_label_tables(out, label_convention))
    if result.uncertainty is not None:
        written["uncertainty"] = write_map(result.uncertainty, grid, out / UNCERTAINTY_FILE, display_max=MAX_STD)
    if result.predicted_class in result.cams:
        written["gradcam"] = write_map(result.cams[result.predicted_class], grid, out / GRADCAM_FILE)
    if all_cams:
        for code, cam in sorted(result.cams.items()):
            written[f"gradcam_{code}"] = write_map(cam, grid, out / f"gradcam_{safe_filename(code)}.nii.gz")
    return written


def results_summary(result: AnalysisResult, label_convention: str = "brats") -> dict:
    """What ``results.json`` holds: :meth:`AnalysisResult.summary` and ``segmentation_labels``, the exported
    segmentation's convention and its values' names (``None`` without a segmentation)."""
    summary = result.summary()
    summary["segmentation_labels"] = label_tables.description(label_convention) if result.labels is not None else None
    return summary


def export_result(result: AnalysisResult, grid: Grid, out_dir: str | os.PathLike,
                  all_cams: bool = False, label_convention: str = "brats", inputs: Iterable[os.PathLike] = (),
                  case_folder: str | os.PathLike | None = None, force_in_case: bool = False,
                  extra: Callable[[Path], dict[str, Path]] | None = None) -> dict[str, Path]:
    """:func:`export_volumes`, then ``results.json`` (:meth:`AnalysisResult.summary`, with the exported
    segmentation's label values under ``segmentation_labels``), as one atomic export set.

    The set goes into ``out_dir`` as one step with its marker ``braingui-export.json``, and never
    replaces a file braingui did not write (:mod:`braingui.export_set`).

    Args:
        inputs, case_folder: the case's files and folder; ``out_dir`` equal to or inside the case
            folder (or the folder of an input file) is refused unless ``force_in_case``.
        extra: ``extra(folder) -> {key: path}`` writes more files of the set into ``folder`` (the staging
            folder: e.g. a batch's record or PDF report), so they go into place with the rest.

    Returns:
        The final paths of :func:`export_volumes` and ``"results"`` (not the marker).

    Raises:
        ExportRefused: see :class:`braingui.export_set.ExportSet`; OSError: a write failed (``out_dir``
            is then as it was).
    """
    from braingui.export_set import ExportSet, case_folders

    with ExportSet(out_dir, case_folders(inputs, case_folder), force_in_case) as staging:
        written = export_volumes(result, grid, staging, all_cams, label_convention)
        written["results"] = write_json(results_summary(result, label_convention), staging / RESULTS_FILE)
        if extra is not None:
            written.update(extra(staging))
    return {key: Path(out_dir).expanduser() / path.relative_to(staging) for key, path in written.items()}
