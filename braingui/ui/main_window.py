"""The main window: four linked panes, depth slider, legends, results panel and the background jobs.

Layout: the figure (the panes of the paper's Fig. 1 with their legends) on the left, the display
controls and the results on the right, the depth slider and plane switch under the panes, and the
analysis progress with its Cancel button in the status bar.

Every long step runs in a worker thread (:mod:`braingui.ui.worker`): reading a case and the analysis.
Results are applied here, on the GUI thread. A user-facing error is a dialog with the message (the
traceback, if any, goes to the log file only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMessageBox, QProgressBar, QPushButton,
                               QScrollArea, QSplitter, QVBoxLayout, QWidget)

from braingui import __version__
from braingui.display import planes
from braingui.ui import jobs
from braingui.ui.actions import install_actions
from braingui.ui.controls import LookControls, SliceControls
from braingui.display.context import DisplayContext
from braingui.ui.legend import ColorBar, LabelLegend
from braingui.ui.pane_grid import PaneGrid
from braingui.ui.readout import CursorReadout
from braingui.ui.results_panel import ResultsPanel
from braingui.ui.settings import Settings
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
        self.figure = QWidget()
        fig = QVBoxLayout(self.figure)
        fig.setContentsMargins(0, 0, 0, 0)
        self.panes = PaneGrid(ctx)
        self.panes.set_arrangement(self.settings.arrangement if self.settings.arrangement in ("grid", "row") else "grid")
        fig.addWidget(self.panes, 1)
        legends = QHBoxLayout()
        self.label_legend = LabelLegend()
        self.colorbar = ColorBar()
        self.colorbar.set_colormap(ctx.colormap)
        legends.addWidget(self.label_legend, 1)
        legends.addWidget(self.colorbar, 1)
        fig.addLayout(legends)
        left = QWidget()
        lcol = QVBoxLayout(left)
        lcol.setContentsMargins(4, 4, 4, 0)
        lcol.addWidget(self.figure, 1)
        self.slice_controls = SliceControls(ctx)
        lcol.addWidget(self.slice_controls)
        self.readout = CursorReadout(ctx)
        lcol.addWidget(self.readout)
        self.look = LookControls(ctx)
        self.results = ResultsPanel()
        right = QWidget()
        rcol = QVBoxLayout(right)
        rcol.setContentsMargins(0, 0, 0, 0)
        self.analyse_button = QPushButton("Run analysis")
        self.analyse_button.setToolTip("Segment, classify and compute the Grad-CAM (Ctrl+R)")
        self.analyse_button.clicked.connect(self.run_analysis)
        rcol.addWidget(self.analyse_button)
        rcol.addWidget(self.look)
        rcol.addWidget(self.results, 1)
        scroll = QScrollArea()
        scroll.setWidget(right)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(400)
        right.setMaximumWidth(520)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(scroll)
        split.setStretchFactor(0, 1)
        split.setSizes([1150, 430])
        self.setCentralWidget(split)
        self.stage_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(260)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the analysis (Esc)")
        self.cancel_button.clicked.connect(self.cancel_analysis)
        for w in (self.stage_label, self.progress, self.cancel_button):
            self.statusBar().addPermanentWidget(w)
        self._set_busy(False)
        self.panes.sigHover.connect(self.readout.show_voxel)
        self.slice_controls.jump_tumour.connect(self.jump_to_tumour)
        self.slice_controls.jump_hottest.connect(self.jump_to_hottest)
        ctx.changed.connect(self._on_ctx_changed)

    def _on_ctx_changed(self, what) -> None:
        self.colorbar.set_colormap(self.ctx.colormap)
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
        self.pending_path = path
        self.load_job = self.runner.start(jobs.load_case_job(path, explicit, label_convention), "load")
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
        except BrainguiError as exc:
            self.results.show_note(f"Model bundles cannot be used: {exc}")
            return False
        if search.segmentation is None and search.classification is None:
            self.results.show_note("No model bundles found, so the analysis does not start by itself. Looked in: "
                                   f"{search.looked_in()}. Put bundle folders there or start with --models DIR.")
            return False
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
        self.progress.setValue(round(max(0.0, min(1.0, event.fraction)) * 1000))
        detail = f": {event.message}" if event.message else ""
        self.stage_label.setText(f"{event.stage.capitalize()}{detail}  ({event.elapsed_s:.0f} s)")

    def _on_finished(self, job_id: int, value) -> None:
        if job_id == self.load_job:
            self.load_job = None
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
            self.ctx.set_result(value)
            self.results.show_result(value, self.ctx.case.warnings if self.ctx.case else None)
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

    # ----- navigation
    def jump_to_tumour(self) -> None:
        """Go to the slice of the current plane with the largest tumour area (cursor at its centre)."""
        import numpy as np

        labels = self.ctx.labels
        if labels is None or not labels.any():
            return
        area = planes.per_slice(labels > 0, self.ctx.plane)
        index = int(np.argmax(area))
        axis = planes.NORMAL_AXIS[self.ctx.plane]
        mask = np.take(labels > 0, index, axis=axis)
        centre = [int(round(c.mean())) for c in np.nonzero(mask)]
        centre.insert(axis, index)
        self.ctx.set_cursor(centre)

    def jump_to_hottest(self) -> None:
        """Go to the voxel where the Grad-CAM shown is highest."""
        import numpy as np

        heat = self.ctx.heat
        if heat is not None:
            self.ctx.set_cursor(np.unravel_index(int(np.argmax(heat)), heat.shape))

    def show_surface(self) -> None:
        """Open the 3D tumour view (created on first use; a message where there is no OpenGL screen)."""
        from braingui.ui.surface_view import make_surface_window, surface_supported

        ok, why = surface_supported()
        if not ok:
            self.statusBar().showMessage(f"3D view unavailable: {why}", 10000)
            if self.interactive:
                QMessageBox.information(self, "3D view", f"The 3D view is not available: {why}.")
            return
        if self.surface_window is None:
            try:
                self.surface_window = make_surface_window(self.ctx, self)
            except Exception as exc:  # noqa: BLE001 - no OpenGL context and the like: the 2D app goes on
                self.show_error("3D view", f"The 3D view could not start: {type(exc).__name__}: {exc}")
                return
            self.surface_window.destroyed.connect(lambda *_: setattr(self, "surface_window", None))
        self.surface_window.show()
        self.surface_window.raise_()

    # ----- export, screenshots
    def default_export_dir(self) -> Path:
        """The last export folder, else the home folder; never the case folder."""
        case_dir = self.ctx.case.files.folder if self.ctx.case is not None else None
        for cand in (self.settings.export_dir, str(Path.home() / "Documents"), str(Path.home())):
            if cand and Path(cand).is_dir() and (case_dir is None or Path(cand).resolve() != Path(case_dir).resolve()):
                return Path(cand)
        return Path.home()

    def export_dialog(self) -> None:
        if self.ctx.case is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Export results to folder", str(self.default_export_dir()))
        if folder:
            self.export_to(folder)

    def export_to(self, folder: str | os.PathLike) -> list[Path]:
        """Write the NIfTI maps, the PNG of the panes and the JSON into ``folder``; errors become a dialog."""
        from braingui.errors import BrainguiError
        from braingui.ui.exporter import export_results

        ctx = self.ctx
        view = {"plane": ctx.plane, "slice": ctx.slice_index, "n_slices": ctx.n_slices, "modality": ctx.modality,
                "convention": ctx.convention, "window": list(ctx.window), "colormap": ctx.colormap,
                "gradcam_class": ctx.cam_class, "labels_shown": ctx.label_title}
        try:
            written = export_results(folder, ctx.case, ctx.result, self.figure.grab(), view)
        except BrainguiError as exc:
            self.show_error("Could not export", str(exc))
            return []
        self.settings.export_dir = str(Path(folder).resolve())
        self.settings.save()
        self.statusBar().showMessage(f"Exported {len(written)} files to {folder}", 8000)
        return written

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
        super().closeEvent(ev)


def _log_details(details: str) -> Path | None:
    """Append a traceback to the user log file; returns its path (``None`` if that failed)."""
    try:
        from platformdirs import PlatformDirs

        log_dir = Path(PlatformDirs("braingui", appauthor=False).user_log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "gui.log"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(details + "\n")
        return path
    except OSError:
        return None
