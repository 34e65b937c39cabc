"""Small synthetic NIfTI cases for the core and CLI tests (no real data, tiny grids).

Everything here builds its expectations from first principles (numpy / nibabel), never from the code
under test, so the tests can compare the two.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the folder holding ``braingui/``)."""

SHAPE = (8, 9, 10)
"""Default tiny grid (x, y, z) as stored in the files."""

MODS = ("flair", "t1", "t1ce", "t2")

# An affine with LPS voxel axes (as BraTS 2018 files), 1 mm, with a translation.
LPS_AFFINE = np.array([[-1.0, 0, 0, 7.0], [0, -1.0, 0, 8.0], [0, 0, 1.0, -3.0], [0, 0, 0, 1]])
RAS_AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])

# File names of each naming scheme (modality -> name without extension). "{id}" is the case id.
SCHEMES: dict[str, dict[str, str]] = {
    "brats": {"flair": "{id}_flair", "t1": "{id}_t1", "t1ce": "{id}_t1ce", "t2": "{id}_t2", "seg": "{id}_seg"},
    "brats2023": {"flair": "{id}-t2f", "t1": "{id}-t1n", "t1ce": "{id}-t1c", "t2": "{id}-t2w", "seg": "{id}-seg"},
    "bare": {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2", "seg": "seg"},
    "bare_t1c": {"flair": "flair", "t1": "t1", "t1ce": "t1c", "t2": "t2", "seg": "label"},
    "bare_t1gd": {"flair": "FLAIR", "t1": "T1", "t1ce": "T1GD", "t2": "T2", "seg": "Seg"},
    "bare_bet": {"flair": "flair_fla_bet", "t1": "t1_bet", "t1ce": "t1ce_bet", "t2": "t2_bet", "seg": "seg"},
}


def write_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray = RAS_AFFINE,
                dtype: np.dtype | type | None = None) -> Path:
    """Write ``array`` with ``affine`` (sform and qform) to ``path`` (.nii or .nii.gz); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(array) if dtype is None else np.asarray(array).astype(dtype)
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    img.set_data_dtype(data.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, os.fspath(path))
    return path


def brain_volumes(shape=SHAPE, seed: int = 0) -> dict[str, np.ndarray]:
    """Four distinct float32 volumes (file voxel order) with a zero border and positive 'brain'.

    Each modality has a different intensity scale so that a swapped channel is detectable.
    """
    rng = np.random.default_rng(seed)
    out = {}
    brain = np.zeros(shape, dtype=bool)
    brain[1:-1, 1:-1, 1:-1] = True
    for k, m in enumerate(MODS):
        vol = np.zeros(shape, dtype=np.float32)
        vol[brain] = (100.0 * (k + 1) + rng.uniform(1, 50, size=int(brain.sum()))).astype(np.float32)
        out[m] = vol
    return out


def tumour_labels(shape=SHAPE, values=(1, 2, 4)) -> np.ndarray:
    """A label map with a known number of voxels per value: ``values[i]`` fills a block of its own.

    Voxel counts: values[0] -> 2x2x2 = 8, values[1] -> 3x2x2 = 12, values[2] -> 1x2x2 = 4 (for the
    default shape); use :func:`count_labels` to count independently.
    """
    lab = np.zeros(shape, dtype=np.uint8)
    lab[2:4, 2:4, 2:4] = values[0]
    lab[4:7, 2:4, 2:4] = values[1]
    if len(values) > 2:
        lab[2:3, 5:7, 5:7] = values[2]
    return lab


def count_labels(labels: np.ndarray) -> dict[int, int]:
    """Voxels per non-zero value."""
    vals, counts = np.unique(np.asarray(labels), return_counts=True)
    return {int(v): int(c) for v, c in zip(vals, counts) if v != 0}


def make_case_folder(folder: str | os.PathLike, scheme: str = "brats", case_id: str = "Case01",
                     shape=SHAPE, affine: np.ndarray = LPS_AFFINE, ext: str = ".nii.gz",
                     labels: np.ndarray | None | bool = True, volumes: dict[str, np.ndarray] | None = None,
                     seed: int = 0) -> dict[str, Path]:
    """Write a four-modality case (and a label map) with one naming scheme.

    Args:
        folder: the case folder (created).
        scheme: a key of :data:`SCHEMES`.
        case_id: the id used by the prefixed schemes.
        shape, affine: the grid as stored in the files.
        ext: ``.nii`` or ``.nii.gz``.
        labels: a label array, ``True`` for :func:`tumour_labels`, ``None``/``False`` for none.
        volumes: modality -> array (file voxel order); default :func:`brain_volumes`.

    Returns:
        modality (and ``seg``) -> written path.
    """
    folder = Path(folder)
    names = SCHEMES[scheme]
    volumes = volumes if volumes is not None else brain_volumes(shape, seed)
    paths = {}
    for m in MODS:
        paths[m] = write_nifti(folder / (names[m].format(id=case_id) + ext), volumes[m], affine)
    if labels is True:
        labels = tumour_labels(shape)
    if labels is not None and labels is not False:
        paths["seg"] = write_nifti(folder / (names["seg"].format(id=case_id) + ext), labels, affine, np.uint8)
    return paths


def canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ``nibabel.as_closest_canonical`` makes of ``array`` with ``affine`` (data, affine)."""
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array), affine))
    return np.asarray(img.dataobj), img.affine


def run_cli(*args: str, timeout: float = 120, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m braingui.app ARGS`` in a subprocess with the repository on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    if env_extra:
        env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "braingui.app", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(REPO_ROOT))


def shared_data_dir() -> Path:
    """``../shared/data/brats2018`` relative to the repository root, or ``$BRAINGUI_SHARED_DATA``."""
    override = os.environ.get("BRAINGUI_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "brats2018"
