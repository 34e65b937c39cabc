"""Starting the desktop app: the QApplication, its look, the main window, and ``--screenshot`` runs.

Start-up stays fast: torch and the inference stack are imported only inside the analysis worker
thread (see :mod:`braingui.ui.jobs`), never here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SCREENSHOT_SIZE = (1600, 1000)
SCREENSHOT_TIMEOUT_S = float(os.environ.get("BRAINGUI_SCREENSHOT_TIMEOUT", "1800"))


def create_app():
    """The ``QApplication`` (created once), with the Fusion style and a dark palette for images."""
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "braingui"])
        app.setApplicationName("braingui")
        app.setStyle("Fusion")
        pal = QPalette()
        dark, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(225, 225, 225)
        for role, colour in ((QPalette.ColorRole.Window, dark), (QPalette.ColorRole.WindowText, text),
                             (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, dark),
                             (QPalette.ColorRole.Text, text), (QPalette.ColorRole.Button, dark),
                             (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.ToolTipBase, base),
                             (QPalette.ColorRole.ToolTipText, text), (QPalette.ColorRole.Highlight, QColor(58, 123, 213)),
                             (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))):
            pal.setColor(role, colour)
        pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(120, 120, 120))
        pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor(120, 120, 120))
        pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(120, 120, 120))
        app.setPalette(pal)
    return app


def check_display(screenshot: bool) -> None:
    """Refuse, with one line, to open a window where there is no screen (Linux without DISPLAY).

    A ``--screenshot`` run needs no screen: it switches Qt to its offscreen platform instead.

    Raises:
        BrainguiError: no display and no screenshot.
    """
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    if screenshot:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        return
    from braingui.errors import BrainguiError

    raise BrainguiError("no display to open the window on (DISPLAY is not set); analyse headless with "
                        "--no-gui --out DIR, or save a picture with --screenshot FILE.png")


def run_gui(case: str | os.PathLike | None = None, explicit: dict | None = None, label_convention: str | None = None,
            screenshot: str | os.PathLike | None = None, analysis_options: dict | None = None,
            plane: str = "axial") -> int:
    """Run the app until the window closes; returns the exit status.

    Args:
        case: a case folder (or MSD 4D image) to open at once.
        explicit: modality -> file overrides.
        label_convention: force the label convention of the case's label map.
        screenshot: open the case, run the analysis, save the window as this PNG and exit: 0 on success;
            1 when the analysis failed or could not start (the PNG shows the case as it is); 1 and no PNG
            at all when the case could not be opened.
        analysis_options: keyword arguments for the inference pipeline (model bundles, device).
        plane: the plane shown first. A screenshot shows the slice of that plane with the largest tumour
            area (the model's segmentation, else the case's labels).
    """
    check_display(screenshot is not None)
    from PySide6.QtCore import QTimer

    from braingui.ui.main_window import MainWindow
    from braingui.ui.settings import Settings

    app = create_app()
    settings = Settings.load()
    if screenshot is not None:
        settings.read_only = True  # a documentation run leaves the user's settings alone
        settings.auto_analyse = True
    win = MainWindow(settings, analysis_options=analysis_options, interactive=screenshot is None)
    win.ctx.set_plane(plane)
    status = {"code": 0}
    if screenshot is not None:
        win.resize(*SCREENSHOT_SIZE)
        target = Path(screenshot)

        def finish(code: int) -> None:
            status["code"] = code
            win.ctx.jump_to_tumour(user=False)
            app.processEvents()
            try:
                win.save_screenshot(target)
                print(f"braingui: wrote {target}", file=sys.stderr)
            except OSError as exc:
                print(f"braingui: error: could not write {target}: {exc}", file=sys.stderr)
                status["code"] = 1
            win.close()
            app.exit(status["code"])

        def on_failed(message: str) -> None:
            print(f"braingui: error: {message}", file=sys.stderr)
            if win.ctx.case is None:  # the case did not open: there is nothing to show, so nothing is written
                status["code"] = 1
                win.close()
                app.exit(1)
                return
            QTimer.singleShot(300, lambda: finish(1))

        win.analysis_done.connect(lambda _r: QTimer.singleShot(300, lambda: finish(0)))
        win.job_failed.connect(on_failed)
        if case is None and not explicit:
            QTimer.singleShot(300, lambda: finish(0))

        def on_timeout() -> None:
            print(f"braingui: error: no result after {SCREENSHOT_TIMEOUT_S:.0f} s", file=sys.stderr)
            finish(1)

        QTimer.singleShot(int(SCREENSHOT_TIMEOUT_S * 1000), on_timeout)
    win.show()
    if case is not None or explicit:
        win.open_case(case, explicit, label_convention)
    if not win._custom_factory:  # torch, MONAI and the networks load (and warm up) while the user looks
        from braingui.ui import jobs

        QTimer.singleShot(200, lambda: jobs.start_preload(analysis_options))
    wake = _quit_on_signals(app, win, status)
    code = app.exec()
    wake.stop()
    result = status["signal"] if "signal" in status else status["code"] if screenshot is not None else int(code)
    from braingui.ui import jobs

    if jobs.preload_running():
        # The window is closed, its jobs stopped and the settings saved; a daemon thread still importing torch
        # would hold the import lock through interpreter shutdown (seconds), so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(result)
    return result


def _quit_on_signals(app, win, status: dict):
    """Ctrl+C (SIGINT) and SIGTERM close the window cleanly (jobs cancelled, settings saved) and quit.

    Python runs its signal handlers only between bytecodes, and Qt's event loop waits in C, so a timer
    hands control to Python every 200 ms. Returns that timer (stop it after the loop).
    """
    import signal

    from PySide6.QtCore import QTimer

    def handler(signum, _frame):
        name = "interrupted" if signum == signal.SIGINT else "terminated"
        print(f"braingui: {name}; closing the window", file=sys.stderr)
        status["signal"] = 128 + int(signum)
        win.close()
        app.quit()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread, or a platform without it
            pass
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    return wake

