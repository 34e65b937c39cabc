"""Menus and keyboard shortcuts of the main window.

Keys: Up/Right and Down/Left step one slice, Page Up/Down ten; A / C / S switch to the axial, coronal
and sagittal plane; 1-4 pick FLAIR, T1, T1ce, T2; T jumps to the largest tumour slice, H to the hottest
Grad-CAM voxel; D opens the 3D tumour view; Home resets the zoom; Ctrl+O opens a case, Ctrl+R runs the analysis, Esc cancels it,
Ctrl+E exports, Ctrl+P writes the PDF report.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMessageBox

from braingui import __version__
from braingui.discovery import MODALITIES, MODALITY_TITLES
from braingui.display import planes

KEYS_HELP = __doc__.split("\n\n", 1)[1].strip()


def _action(window, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
    act = QAction(text, window)
    if shortcut is not None:
        act.setShortcut(QKeySequence(shortcut))
        act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    if tip:
        act.setStatusTip(tip)
    act.triggered.connect(lambda _=False: slot())
    if menu is not None:
        menu.addAction(act)
    else:
        window.addAction(act)
    return act


def install_actions(w) -> None:
    """Create the menu bar and the shortcuts of main window ``w``."""
    ctx = w.ctx
    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    _action(w, file_menu, "&Open folder\u2026", w.open_folder_dialog, QKeySequence.StandardKey.Open)
    w.recent_menu = file_menu.addMenu("Open &recent")
    w.update_recent_menu()
    _action(w, file_menu, "&Export\u2026", w.export_dialog, "Ctrl+E",
            "Segmentation and Grad-CAM as NIfTI, a PNG of the panes and the results JSON")
    w.report_action = _action(w, file_menu, "&Report\u2026", lambda: _report(w), "Ctrl+P",
                              "A PDF report of the case: panes, volumes, measurements, class, explanation, models")
    file_menu.addSeparator()
    _action(w, file_menu, "&Quit", w.close, QKeySequence.StandardKey.Quit)

    view_menu = bar.addMenu("&View")
    for plane, key in zip(planes.PLANES, ("A", "C", "S")):
        _action(w, view_menu, plane.capitalize(), lambda p=plane: ctx.set_plane(p), key)
    view_menu.addSeparator()
    for n, m in enumerate(MODALITIES, start=1):
        _action(w, view_menu, MODALITY_TITLES[m], lambda m=m: ctx.set_modality(m), str(n))
    view_menu.addSeparator()
    _action(w, view_menu, "Reset zoom", w.panes.reset_zoom, "Home")
    _action(w, view_menu, "Panes in a 2x2 grid", lambda: _arrange(w, "grid"))
    _action(w, view_menu, "Panes in a row (as the paper)", lambda: _arrange(w, "row"))
    _action(w, view_menu, "Largest tumour slice", w.ctx.jump_to_tumour, "T")
    _action(w, view_menu, "Hottest Grad-CAM voxel", w.ctx.jump_to_hottest, "H")
    view_menu.addSeparator()
    _action(w, view_menu, "3D tumour view", w.show_surface, "D", "Tumour label surfaces in 3D (needs OpenGL)")

    run_menu = bar.addMenu("&Analysis")
    _action(w, run_menu, "&Run analysis", w.run_analysis, "Ctrl+R")
    _action(w, run_menu, "&Cancel", w.cancel_analysis, "Esc")
    auto = QAction("Analyse automatically when a case opens", w)
    auto.setCheckable(True)
    auto.setChecked(w.settings.auto_analyse)
    auto.toggled.connect(lambda on: (setattr(w.settings, "auto_analyse", on), w.settings.save()))
    run_menu.addAction(auto)
    tta = QAction("Test-time augmentation (flipped views, uncertainty map)", w)
    tta.setCheckable(True)
    tta.setChecked(w.settings.tta)
    tta.setStatusTip("Average the segmentation over flipped views and show where they disagree; off: one pass, faster")

    def set_tta(on: bool) -> None:
        w.settings.tta = on
        w.settings.save()
        w.analysis_options["tta"] = None if on else 1  # None: the pipeline's default number of views

    tta.toggled.connect(set_tta)
    run_menu.addAction(tta)

    help_menu = bar.addMenu("&Help")
    _action(w, help_menu, "&Keys and mouse", lambda: QMessageBox.information(w, "Keys and mouse", KEYS_HELP + "\n\n"
            "Mouse: left click/drag moves the crosshair; wheel changes the slice (Ctrl+wheel zooms); middle or "
            "Shift+left drag pans; right drag sets window (left/right) and level (up/down)."))
    _action(w, help_menu, "&About", lambda: QMessageBox.about(w, "About braingui", f"braingui {__version__}\n\n"
            "Interpretable brain-tumour MRI analysis after Dasanayaka et al. Research software \u2014 not for "
            "clinical use."))

    for seq, steps in (("Up", 1), ("Right", 1), ("Down", -1), ("Left", -1), ("PgUp", 10), ("PgDown", -10)):
        _action(w, None, f"step {steps}", lambda s=steps: ctx.step_slice(s), seq)


def _report(w) -> None:
    from braingui.ui.report_pdf import report_dialog

    report_dialog(w)


def _arrange(w, arrangement: str) -> None:
    w.panes.set_arrangement(arrangement)
    w.settings.arrangement = arrangement
    w.settings.save()
