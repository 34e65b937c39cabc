"""Export from the window into ``<chosen folder>/<case id>/``: the same files as the headless run
(:func:`braingui.export.export_volumes`: ``segmentation.nii.gz``, ``gradcam.nii.gz``,
``gradcam_<class>.nii.gz``) plus ``panes_<plane><slice>.png``, the four panes as shown with a caption
band (case, date, class, software, research-use line: :mod:`braingui.ui.caption`), and one
``results.json`` that lists them all. Every file is written atomically by :mod:`braingui.atomic`.

NIfTI volumes go back through ``case.grid.to_original`` and carry ``case.grid.original_affine``, so they
open on top of the input files in ITK-SNAP, 3D Slicer and FSLeyes.
"""

from __future__ import annotations

import os
from pathlib import Path

from braingui import __version__
from braingui.errors import BrainguiError

PNG_PREFIX = "panes_"


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
    from braingui.atomic import write_bytes

    return write_bytes(png_bytes(image), target)


def _case_folders(case) -> list[Path]:
    from braingui.export_set import case_folders

    return case_folders(case.files.all_files(), case.files.folder)


def export_target(folder: str | os.PathLike, case) -> Path:
    """Where :func:`export_results` writes for ``case``: ``folder/<case id>``."""
    from braingui.export import safe_filename

    return Path(folder) / safe_filename(case.case_id)


def lands_in_case(folder: str | os.PathLike, case) -> bool:
    """True when exporting ``case`` into ``folder`` would write into (or inside) a case folder, e.g. the
    case folder's parent when the case folder is named after the case (BraTS layout)."""
    from braingui.export_set import case_folder_of

    return case_folder_of(export_target(folder, case), _case_folders(case)) is not None


def default_export_folder(candidates: list[str | os.PathLike | None], case) -> Path:
    """The first existing candidate whose export would not land in a case folder; else the nearest
    ancestor of the case folder that is safe (the home folder when there is no case)."""
    for cand in candidates:
        if cand and Path(cand).is_dir() and (case is None or not lands_in_case(cand, case)):
            return Path(cand)
    if case is not None:
        start = case.files.folder or next(iter(case.files.all_files())).parent
        for parent in Path(start).resolve().parents:
            if not lands_in_case(parent, case):
                return parent
    return Path.home()


def export_results(folder: str | os.PathLike, case, result=None, panes_image=None, view: dict | None = None,
                   force_in_case: bool = False, label_convention: str = "brats") -> list[Path]:
    """Write what exists for ``case`` into ``folder/<case id>/``, as one atomic export set.

    The set goes in with its marker ``braingui-export.json`` and never replaces a file braingui did not
    write; the PNGs of earlier exports of other views are kept (:mod:`braingui.export_set`).

    Args:
        folder: an existing, writable folder (the user's choice; the window never proposes one whose
            export lands in the case folder).
        case: the :class:`braingui.case.Case` (its grid maps the volumes back).
        result: the :class:`AnalysisResult`, or ``None`` (then only the PNG and a JSON about the case).
        panes_image: a ``QImage`` / ``QPixmap`` of the four panes, or ``None``; written with a caption band.
        view: what the PNG shows (plane, slice, modality...), recorded in ``results.json``.
        force_in_case: write even when ``folder/<case id>`` is the case folder or inside it (after the
            user confirmed).
        label_convention: values of the exported segmentation and its label tables: ``brats`` (1/2/4)
            or ``brats2023`` (1/2/3).

    Returns:
        The files written (not the marker).

    Raises:
        OutputInCaseError: ``folder/<case id>`` is in a case folder and ``force_in_case`` is false.
        BrainguiError: the folder is missing or not writable, a file there was not written by braingui,
            or a write failed (then nothing in the folder changed).
    """
    from braingui.export_set import ExportSet

    folder = Path(folder)
    if not folder.is_dir():
        raise BrainguiError(f"{folder}: export folder does not exist")
    if not os.access(folder, os.W_OK):
        raise BrainguiError(f"{folder}: export folder is not writable")
    out = export_target(folder, case)
    written: list[Path] = []
    try:
        with ExportSet(out, _case_folders(case), force_in_case, keep_others=True) as staging:
            written = _write_set(staging, case, result, panes_image, view, label_convention)
    except (OSError, ValueError) as exc:
        raise BrainguiError(f"export to {out} failed: {exc}") from exc
    return [out / p.relative_to(staging) for p in written]


def _write_set(out: Path, case, result, panes_image, view: dict | None, label_convention: str = "brats") -> list[Path]:
    """The files of :func:`export_results`, written into ``out`` (the staging folder)."""
    from braingui.export import RESULTS_FILE, export_volumes, results_summary, write_json

    written: list[Path] = []
    summary = {"case_id": case.case_id, "not_for_clinical_use": True, "software_version": __version__}
    if result is not None:
        written += export_volumes(result, case.grid, out, all_cams=len(result.cams) > 1,
                                  label_convention=label_convention).values()
        summary = results_summary(result, label_convention)
    if panes_image is not None:
        from braingui.ui.caption import add_caption, caption_lines

        panes_image = add_caption(panes_image, caption_lines(case.case_id, result, view,
                                                             synthetic=case.is_synthetic))
        tag = f"{view.get('plane', 'slice')}{int(view.get('slice', 1))}" if view else "slice"
        written.append(write_png(panes_image, out / f"{PNG_PREFIX}{tag}.png"))
    summary["input_files"] = [str(p) for p in case.files.all_files()]
    summary["exported_files"] = sorted(p.name for p in written)
    if view:
        summary["view"] = view
    written.append(write_json(summary, out / RESULTS_FILE))
    return written
