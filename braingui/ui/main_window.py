"""The main window: four linked panes, depth slider, legends, results panel and the background jobs.

Wiring only: the widgets come from :mod:`braingui.ui.window_layout`, the display state is the Qt-free
:class:`braingui.display.context.DisplayContext` (navigation, read-out and the export record live there),
the export dialogs are :mod:`braingui.ui.export_actions`, the 3D view :mod:`braingui.ui.surface_view`.

Every long step runs in a worker thread (:mod:`braingui.ui.worker`): reading a case and the analysis.
Results are applied here, on the GUI thread. A user-facing error is a dialog with the message (the
traceback, if any, goes to the log file only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from braingui import __version__
from braingui.display import planes
from braingui.ui import export_actions, jobs
from braingui.ui.actions import install_actions
from braingui.ui.cam_requests import CamRequests
from braingui.display.context import DisplayContext
from braingui.ui.settings import Settings
from braingui.ui.window_layout import build_layout
from braingui.ui.worker import JobRunner

AnalysisFactory = Callable[[Any], Callable]
"""``case -> job factory`` of the analysis (tests pass a stand-in; the app uses :func:`jobs.analysis_job`)."""


class MainWindow(QMainWindow):
    """The braingui window.

    Args:
        settings: user settings (recent cases, auto-analyse...); loaded from the config folder if ``None``.
        analysis_factory: ``case -> job factory``; default runs the inference pipeline.
        interactive: False for ``--screenshot`` runs: errors are emitted, not shown as dialogs.

    Signals:
        case_loaded(object): a case is on screen.
        analysis_done(object): an analysis result is on screen.
        job_failed(str): loading or analysis failed (the message shown to the user).
        job_cancelled(): the analysis was cancelled.
    """

    case_loaded = Signal(object)
    analysis_done = Signal(object)
    job_failed = Signal(str)
    job_cancelled = Signal()

    def __init__(self, settings: Settings | None = None, analysis_factory: AnalysisFactory | None = None,
                 analysis_options: dict | None = None, interactive: bool = True):
        super().__init__()
        self.settings = settings if settings is not None else Settings.load()
        self.analysis_options = dict(analysis_options or {})
        if self.analysis_options.get("tta") is None and not self.settings.tta:
            self.analysis_options["tta"] = 1  # the setting; an explicit --tta N wins
        self._custom_factory = analysis_factory is not None
        self.analysis_factory = analysis_factory or (lambda case: jobs.analysis_job(case, self.analysis_options))
        self.interactive = interactive
        self.ctx = DisplayContext()
        self.ctx.convention = self.settings.convention if self.settings.convention in planes.CONVENTIONS else planes.RADIOLOGICAL
        self.ctx.colormap = self.settings.colormap if self.settings.colormap in ("jet", "turbo", "inferno", "viridis") else "jet"
        self.runner = JobRunner(self)
        self.load_job: int | None = None
        self.analysis_job: int | None = None
        self.last_error: str | None = None
        self.surface_window = None
        self._build()
        self.cam_requests = CamRequests(self)  # heat maps on demand; partial and final results on screen
        self.runner.progress.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        install_actions(self)
        self.setAcceptDrops(True)
        self.setWindowTitle(f"braingui {__version__}")
        self.resize(1500, 940)

    # ----- construction
    def _build(self) -> None:
        ctx = self.ctx
        build_layout(self)  # the panes, legends, controls, results panel and status bar widgets
        self.analyse_button.clicked.connect(self.run_analysis)
        self.cancel_button.clicked.connect(self.cancel_analysis)
        self._set_busy(False)
        self.panes.sigHover.connect(self.readout.show_voxel)
        self.slice_controls.jump_tumour.connect(ctx.jump_to_tumour)
        self.slice_controls.jump_hottest.connect(ctx.jump_to_hottest)
        ctx.changed.connect(self._on_ctx_changed)

    def _on_ctx_changed(self, what) -> None:
        if not (what & {"look", "data"}):
            return  # a slider step changes no legend
        self.colorbar.set_colormap(self.ctx.colormap)
        self.uncertainty_bar.setVisible(self.ctx.show_uncertainty and self.ctx.uncertainty is not None)
        self.settings.convention, self.settings.colormap = self.ctx.convention, self.ctx.colormap

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy and self.analysis_job is not None)
        self.stage_label.setText(text)
        self.analyse_button.setEnabled(not busy and self.ctx.case is not None)

    # ----- cases
    def open_case(self, path: str | os.PathLike, explicit: dict | None = None, label_convention: str | None = None) -> None:
        """Load a case in the background; it replaces the current one when ready."""
        self.cancel_analysis()
        if self.load_job is not None:
            self.runner.cancel(self.load_job)
        self.load_job = self.runner.start(jobs.load_case_job(path, explicit, label_convention,
                                                             confirm_series=self.interactive), "load")
        self.progress.setValue(0)
        self._set_busy(True, f"Opening {Path(path).name if path else 'case'}\u2026")

    def open_folder_dialog(self) -> None:
        start = self.settings.recent_cases[0] if self.settings.recent_cases else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a case folder", str(Path(start).parent))
        if folder:
            self.open_case(folder)

    def set_case(self, case) -> None:
        """Show a loaded case (GUI thread)."""
        self.ctx.set_case(case)
        self.results.show_result(None, case.warnings if case else None)
        self.results.show_reference_volumes(case.region_volumes_ml() if case else None)
        self.results.show_case(case)
        if case is not None:
            self.setWindowTitle(f"{case.case_id} \u2014 braingui {__version__}")
            if case.files.folder is not None:
                self.settings.add_recent(case.files.folder if case.files.msd_image is None else case.files.msd_image)
                self.settings.save()
                self.update_recent_menu()

    def dragEnterEvent(self, ev):
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev):
        urls = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if urls:
            ev.acceptProposedAction()
            self.open_case(urls[0])

    # ----- analysis
    def run_analysis(self) -> None:
        """Start the analysis of the case on screen (cancels a running one)."""
        if self.ctx.case is None:
            return
        self.cancel_analysis()
        self.cam_requests.reset()  # its maps belong to the previous run; frees the compute slot
        self.analysis_job = self.runner.start(self.analysis_factory(self.ctx.case), "analysis")
        self.progress.setValue(0)
        self._set_busy(True, "Starting the analysis\u2026")

    def models_available(self) -> bool:
        """True when the analysis has a model to run (always, with a stand-in factory); else says why."""
        if self._custom_factory:
            return True
        from braingui.errors import BrainguiError

        try:
            search = jobs.find_models(self.analysis_options.get("models_dir"))
        except Exception as exc:  # noqa: BLE001 - a bundle problem reaches the user as a message, never a traceback
            text = str(exc) if isinstance(exc, BrainguiError) else f"{type(exc).__name__}: {exc}"
            self.results.show_note(f"Model bundles cannot be used: {text}")
            return False
        if search.segmentation is None and search.classification is None:
            self.results.show_note("No model bundles found, so the analysis does not start by itself: "
                                   f"{search.none_found_message()}.")
            return False
        if search.skipped:
            self.statusBar().showMessage(f"{len(search.skipped)} model bundle(s) skipped: {search.skipped[0]}", 15000)
        return True

    def cancel_analysis(self) -> None:
        if self.analysis_job is not None:
            self.runner.cancel(self.analysis_job)
            self.analysis_job = None
            self._set_busy(False, "Analysis cancelled")
            self.job_cancelled.emit()

    def _on_progress(self, job_id: int, event) -> None:
        if job_id not in (self.load_job, self.analysis_job):
            return
        if getattr(event, "partial", None) is not None and job_id == self.analysis_job:
            self.cam_requests.show_analysis(event.partial, partial=True)  # the quick part, before the slow one
        self.progress.setValue(round(max(0.0, min(1.0, event.fraction)) * 1000))
        detail = f": {event.message}" if event.message else ""
        self.stage_label.setText(f"{event.stage.capitalize()}{detail}  ({event.elapsed_s:.0f} s)")

    def _on_finished(self, job_id: int, value) -> None:
        if job_id == self.load_job:
            self.load_job = None
            if isinstance(value, jobs.SeriesQuestion):  # a DICOM study: confirm which series is which first
                self._set_busy(False, "")
                from braingui.ui.series_dialog import ask_series

                chosen = ask_series(self, value)
                if chosen is not None:
                    self.open_case(*value.answer(chosen))
                return
            self.set_case(value)
            self._set_busy(False, "")
            self.case_loaded.emit(value)
            if self.settings.auto_analyse:
                if self.models_available():
                    self.run_analysis()
                elif not self.interactive:
                    self.job_failed.emit(self.results.note.text())
        elif job_id == self.analysis_job:
            self.analysis_job = None
            self._set_busy(False, "Analysis done")
            self.cam_requests.show_analysis(value)  # keeps the class shown and the maps computed since the partial
            self.analysis_done.emit(value)

    def _on_failed(self, job_id: int, message: str, details: str) -> None:
        if job_id not in (self.load_job, self.analysis_job):
            return
        what = "open the case" if job_id == self.load_job else "run the analysis"
        if job_id == self.load_job:
            self.load_job = None
        else:
            self.analysis_job = None
        self._set_busy(False, f"Could not {what}")
        log = _log_details(details) if details else None
        text = message + (f"\n\nDetails were written to {log}" if log else "")
        self.show_error(f"Could not {what}", text)
        self.job_failed.emit(message)

    def _on_cancelled(self, job_id: int) -> None:
        if job_id == self.load_job:
            self.load_job = None
            self._set_busy(False, "")

    def show_error(self, title: str, message: str) -> None:
        """A dialog with the message (never a traceback); only recorded in non-interactive runs."""
        self.last_error = message
        if self.interactive:
            QMessageBox.critical(self, title, message)

    def show_surface(self) -> None:
        """Open the 3D tumour view (:func:`braingui.ui.surface_view.show_surface_window`)."""
        from braingui.ui.surface_view import show_surface_window

        show_surface_window(self)

    # ----- export, screenshots
    def default_export_dir(self) -> Path:
        """Where File > Export starts (:func:`braingui.ui.export_actions.default_export_dir`)."""
        return export_actions.default_export_dir(self)

    def export_dialog(self) -> None:
        export_actions.export_dialog(self)

    def export_to(self, folder: str | os.PathLike, force_in_case: bool = False) -> list[Path]:
        """Export into ``folder`` (:func:`braingui.ui.export_actions.export_to`); errors become a dialog."""
        return export_actions.export_to(self, folder, force_in_case)

    def save_screenshot(self, path: str | os.PathLike) -> Path:
        """Save the whole window as a PNG (atomically)."""
        from braingui.ui.exporter import write_png

        return write_png(self.grab(), Path(path))

    def update_recent_menu(self) -> None:
        menu = getattr(self, "recent_menu", None)
        if menu is None:
            return
        menu.clear()
        for p in self.settings.recent_cases:
            menu.addAction(p, lambda p=p: self.open_case(p))
        menu.setEnabled(bool(self.settings.recent_cases))

    def closeEvent(self, ev):
        """Stop every job cleanly (cancel, ``quit()``, ``wait()``) before the window goes."""
        if self.runner.is_running():
            # a network step cannot be interrupted; the window goes at once, the thread ends at the next check
            self.hide()
            from PySide6.QtWidgets import QApplication

            QApplication.processEvents()
        self.runner.shutdown()
        self.load_job = self.analysis_job = None
        self.settings.save()
        # Let go of the case and the result (hundreds of MB) even if Python wrappers of this window outlive it.
        self.ctx.set_case(None)
        super().closeEvent(ev)


def _log_details(details: str) -> Path | None:
    """Append a traceback to the user log file; returns its path (``None`` if that failed)."""
    from braingui.logs import log_traceback

    return log_traceback(details, "gui.log")
