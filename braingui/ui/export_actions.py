"""The window's export commands: choose a folder, confirm an export into a case folder, write the set.

The files themselves are written by :func:`braingui.ui.exporter.export_results` (one atomic export set
that never replaces a file braingui did not write); this module is the dialog side of it.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox


def default_export_dir(window) -> Path:
    """The last export folder, else ~/Documents, else home: the first whose export (``<folder>/<case id>/``)
    does not land in the case folder; else the nearest safe ancestor of the case folder."""
    from braingui.ui.exporter import default_export_folder

    return default_export_folder([window.settings.export_dir, str(Path.home() / "Documents"), str(Path.home())],
                                 window.ctx.case)


def export_dialog(window) -> None:
    """File > Export: ask for a folder, then :func:`export_to`."""
    if window.ctx.case is None:
        return
    folder = QFileDialog.getExistingDirectory(window, "Export results to folder", str(default_export_dir(window)))
    if folder:
        export_to(window, folder)


def export_to(window, folder: str | os.PathLike, force_in_case: bool = False) -> list[Path]:
    """Write the NIfTI maps, the PNG of the panes and the JSON into ``folder``; errors become a dialog.

    An export that would land in the case folder asks first (interactive runs only).
    """
    from braingui.errors import BrainguiError
    from braingui.export_set import OutputInCaseError
    from braingui.ui.exporter import export_results

    ctx = window.ctx
    try:
        written = export_results(folder, ctx.case, ctx.result, window.figure.grab(), ctx.view_record(),
                                 force_in_case=force_in_case,
                                 label_convention=window.analysis_options.get("export_labels") or "brats")
    except OutputInCaseError as exc:
        if not force_in_case and window.interactive and confirm_export_in_case(window, exc):
            return export_to(window, folder, force_in_case=True)
        window.show_error("Could not export", str(exc))
        return []
    except BrainguiError as exc:
        window.show_error("Could not export", str(exc))
        return []
    window.settings.export_dir = str(Path(folder).resolve())
    window.settings.save()
    window.statusBar().showMessage(f"Exported {len(written)} files to {folder}", 8000)
    return written


def confirm_export_in_case(window, exc) -> bool:
    """Ask before writing into a case folder (braingui never replaces a file it did not write)."""
    answer = QMessageBox.question(
        window, "Export into the case folder?",
        f"{exc}.\n\nWrite the results into {exc.out} anyway? Files there that braingui did not write "
        "are never replaced.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes
