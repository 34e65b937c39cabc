"""Export from the window into ``<chosen folder>/<case id>/``: the same files as the headless run
(:func:`braingui.export.export_result`: ``segmentation.nii.gz``, ``gradcam.nii.gz``,
``gradcam_<class>.nii.gz``, ``results.json``) plus ``panes_<plane><slice>.png``, the four panes as
shown. Every file is written atomically by :mod:`braingui.export` / :mod:`braingui.nifti`.

NIfTI volumes go back through ``case.grid.to_original`` and carry ``case.grid.original_affine``, so they
open on top of the input files in ITK-SNAP, 3D Slicer and FSLeyes.
"""

from __future__ import annotations

import os
from pathlib import Path

from braingui import __version__
from braingui.errors import BrainguiError

PNG_PREFIX = "panes_"


def _default_mode() -> int:
    """``0o666`` less the process umask: what ``open()`` would give (temp files are created 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _readable(paths: list[Path]) -> list[Path]:
    mode = _default_mode()
    for p in paths:
        try:
            os.chmod(p, mode)
        except OSError:
            pass
    return paths


def png_bytes(image) -> bytes:
    """PNG encoding of a ``QImage`` / ``QPixmap``."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buf, "PNG"):
        raise OSError("could not encode the PNG")
    buf.close()
    return bytes(data.data())


def write_png(image, target: str | os.PathLike) -> Path:
    """Save a ``QImage`` / ``QPixmap`` as a PNG file, atomically."""
    from braingui.nifti import write_bytes_atomic

    return _readable([write_bytes_atomic(png_bytes(image), target)])[0]


def export_results(folder: str | os.PathLike, case, result=None, panes_image=None, view: dict | None = None) -> list[Path]:
    """Write what exists for ``case`` into ``folder/<case id>/``.

    Args:
        folder: an existing, writable folder (the user's choice; the window never proposes the case folder).
        case: the :class:`braingui.case.Case` (its grid maps the volumes back).
        result: the :class:`AnalysisResult`, or ``None`` (then only the PNG and a JSON about the case).
        panes_image: a ``QImage`` / ``QPixmap`` of the four panes, or ``None``.
        view: what the PNG shows (plane, slice, modality...), recorded in ``results.json``.

    Returns:
        The files written.

    Raises:
        BrainguiError: the folder is missing or not writable, or a write failed.
    """
    from braingui.export import RESULTS_FILE, export_result, write_json

    folder = Path(folder)
    if not folder.is_dir():
        raise BrainguiError(f"{folder}: export folder does not exist")
    if not os.access(folder, os.W_OK):
        raise BrainguiError(f"{folder}: export folder is not writable")
    out = folder / "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case.case_id)
    written: list[Path] = []
    try:
        out.mkdir(exist_ok=True)
        summary = {"case_id": case.case_id, "not_for_clinical_use": True, "software_version": __version__}
        if result is not None:
            files = export_result(result, case.grid, out, all_cams=len(result.cams) > 1)
            written += [p for key, p in files.items() if key != "results"]
            summary = result.summary()
        if panes_image is not None:
            tag = f"{view.get('plane', 'slice')}{int(view.get('slice', 0)) + 1}" if view else "slice"
            written.append(write_png(panes_image, out / f"{PNG_PREFIX}{tag}.png"))
        summary["input_files"] = [str(p) for p in case.files.all_files()]
        summary["exported_files"] = sorted(p.name for p in written)
        if view:
            summary["view"] = view
        written.append(write_json(summary, out / RESULTS_FILE))
    except (OSError, ValueError) as exc:
        raise BrainguiError(f"export to {out} failed: {exc}") from exc
    return _readable(written)
