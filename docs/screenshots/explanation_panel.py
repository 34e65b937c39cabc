"""Screenshot of the Explanation panel: the app on a case, its analysis, then the map of a second class (why
not A) computed on demand, so the panel sets the classes side by side; the right-hand side scrolled to the
Explanation section, the predicted class's map and verdict shown.

    QT_QPA_PLATFORM=offscreen python docs/screenshots/explanation_panel.py CASE OUT.png [--models DIR] [--compare A]
        [--panel PANEL.png]

Writes OUT.png (the window, 1600x1000) and, with ``--panel``, the panel alone. The user's settings are left
alone; nothing is written into the case folder. Made docs/screenshots/explanation_panel_demo.png (the demo
case, ``python -m braingui.app demo-case DIR``) and explanation_panel_real.png (Brats18_TCIA01_201_1, one of the 7 BraTS cases the classifier never saw).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case")
    p.add_argument("out", type=Path)
    p.add_argument("--models", default=None, help="a folder of model bundles (default: the bundled demo models)")
    p.add_argument("--panel", type=Path, default=None, help="also save the Explanation panel alone here")
    p.add_argument("--compare", default=None, help="the class to set beside the predicted one (default: the "
                   "likeliest other class)")
    args = p.parse_args(argv)

    from PySide6.QtCore import QPoint, QTimer
    from PySide6.QtWidgets import QScrollArea

    from braingui.ui.app import SCREENSHOT_SIZE, create_app
    from braingui.ui.cam_requests import CamRequests
    from braingui.ui.exporter import write_png
    from braingui.ui.main_window import MainWindow
    from braingui.ui.settings import Settings

    app = create_app()
    settings = Settings(auto_analyse=True)
    settings.read_only = True
    win = MainWindow(settings, analysis_options={"models_dir": args.models}, interactive=False)
    win.resize(*SCREENSHOT_SIZE)
    hooked = getattr(win, "cam_requests", None) is not None
    cams = win.cam_requests if hooked else CamRequests(win)
    status = {"code": 1, "predicted": None}

    def save() -> None:
        panel = win.results.explanation
        scroll = win.findChild(QScrollArea)
        app.processEvents()
        scroll.verticalScrollBar().setValue(panel.mapTo(scroll.widget(), QPoint(0, 0)).y() - 40)
        app.processEvents()
        write_png(win.grab(), args.out)
        if args.panel is not None:
            write_png(panel.grab(), args.panel)
        print(f"wrote {args.out}", file=sys.stderr)
        status["code"] = 0
        win.close()
        app.exit(0)

    def on_done(result) -> None:
        if not hooked:
            cams.show_analysis(result)
        pred = status["predicted"] = result.predicted_class
        other = args.compare or max((c for c in result.class_names if c != pred),
                                    key=lambda c: result.probabilities.get(c, 0.0))
        cams.request_class(other)
        QTimer.singleShot(200, wait_for_map)

    def wait_for_map() -> None:
        if cams.running is not None or cams.queue:
            QTimer.singleShot(500, wait_for_map)
            return
        cams.request_class(status["predicted"])  # cached: the predicted class's map and verdict, both classes compared
        QTimer.singleShot(300, save)

    def on_failed(message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        win.close()
        app.exit(1)

    win.analysis_done.connect(on_done)
    win.job_failed.connect(on_failed)
    cams.failed.connect(on_failed)
    win.show()
    win.open_case(args.case)
    app.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
