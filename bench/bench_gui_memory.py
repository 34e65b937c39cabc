"""GUI memory and responsiveness over a day of cases (issue 14, items 6 and 7).

Run (no screen needed)::

    PYTHONPATH=. QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_memory.py            # real pipeline
    PYTHONPATH=. QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_memory.py --fake     # stand-in analysis

1. *Cases in one window*: the same window opens and analyses N cases (the full-size demo phantom, and
   the real BraTS cases of ../shared/data/brats2018 in turn when present) and prints the process RSS after
   the 1st, 5th and 20th; goal: RSS after the 20th at most 1.2 x RSS after the 1st.
2. *Windows opened and closed*: K windows, each opening and analysing a case, then closed; RSS after each.
3. *Cancel and close*: an analysis is started, cancelled after a random 0.5-3 s, and the time until its
   worker thread has finished is measured (goal: <= 1 s, 20/20); the number of runs computing at once is
   sampled meanwhile (goal: at most 1); then closing a window mid-analysis (goal: close returns <= 1 s).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "gui")]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def case_folders() -> list[Path]:
    from braingui.app.demo import demo_case_folder

    folders = [demo_case_folder()]
    shared = ROOT.parent / "shared" / "data" / "brats2018"
    if shared.is_dir():
        folders += sorted(p for p in shared.iterdir() if p.is_dir())
    return folders


EXPLAIN = "full"


def make_window(fake: bool):
    from braingui.ui.main_window import MainWindow
    from braingui.ui.settings import Settings

    factory = None
    if fake:
        from gui_helpers import fake_analysis

        factory = lambda case: fake_analysis(case)  # noqa: E731
    win = MainWindow(Settings(read_only=True, auto_analyse=True), analysis_factory=factory,
                     analysis_options={"device": "cpu", "explain": EXPLAIN})
    win.show()
    return win


def pump(app, seconds: float) -> None:
    """Let the event loop run for ``seconds`` (the analysis goes on meanwhile)."""
    t_end = time.time() + seconds
    while time.time() < t_end:
        app.processEvents()
        time.sleep(0.005)


def analyse(app, win, folder: Path, timeout_s: float = 600) -> str:
    """Open ``folder`` (the window analyses it) and wait; returns "done", "failed: ..." or "timeout"."""
    done = threading.Event()
    outcome = ["timeout"]

    def on_done(*_):
        outcome[0] = "done"
        done.set()

    def on_failed(message):
        outcome[0] = f"failed: {message}"
        done.set()

    win.analysis_done.connect(on_done)
    win.job_failed.connect(on_failed)
    win.open_case(folder)
    t0 = time.time()
    while not done.is_set() and time.time() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.005)
    win.analysis_done.disconnect(on_done)
    win.job_failed.disconnect(on_failed)
    return outcome[0]


def bench_one_window(app, n: int, fake: bool) -> dict:
    folders = case_folders()
    win = make_window(fake)
    marks = {}
    for i in range(n):
        t0 = time.time()
        outcome = analyse(app, win, folders[i % len(folders)])
        gc.collect()
        marks[i + 1] = rss_mb()
        print(f"  case {i + 1:2d} ({folders[i % len(folders)].name}): {outcome} in {time.time() - t0:.0f} s, "
              f"RSS {marks[i + 1]:.0f} MB", flush=True)
        if outcome != "done":
            raise SystemExit(f"case {i + 1} did not finish its analysis ({outcome}): no memory figure")
    win.close()
    return marks


def bench_windows(app, k: int, fake: bool) -> list[float]:
    from PySide6.QtCore import QEvent

    folder = case_folders()[0]
    out = []
    for i in range(k):
        win = make_window(fake)
        analyse(app, win, folder)
        win.close()
        win.deleteLater()
        app.sendPostedEvents(None, int(QEvent.Type.DeferredDelete.value))
        del win
        gc.collect()
        out.append(rss_mb())
        print(f"  window {i + 1:2d} closed: RSS {out[-1]:.0f} MB", flush=True)
    return out


def bench_cancel(app, repeats: int, fake: bool) -> dict:
    folder = case_folders()[0]
    win = make_window(fake)
    analyse(app, win, folder)  # models loaded, the case on screen
    rng = random.Random(0)
    waits, overlaps = [], []
    for _ in range(repeats):
        win.run_analysis()
        pump(app, rng.uniform(0.5, 3.0))
        t0 = time.perf_counter()
        win.cancel_analysis()
        win.run_analysis()  # the user starts again at once: the old run must stop computing first
        threads = 0
        while time.perf_counter() - t0 < 30:
            app.processEvents()
            threads = max(threads, len(win.runner._jobs))
            if len(win.runner._jobs) <= 1:  # the cancelled run has stopped; the new one holds the compute slot
                break
            time.sleep(0.005)
        waits.append(time.perf_counter() - t0)
        overlaps.append(threads)
        win.cancel_analysis()
        while win.runner.is_running() and time.perf_counter() - t0 < 30:
            app.processEvents()
            time.sleep(0.005)
    closes = []
    for _ in range(max(1, repeats // 4)):
        w = make_window(fake)
        w.open_case(folder)
        pump(app, rng.uniform(1.5, 3.0))
        t0 = time.perf_counter()
        w.close()
        closes.append(time.perf_counter() - t0)
    win.close()
    return {"cancel_to_old_run_stopped_s": waits, "threads_alive_after": overlaps, "close_s": closes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fake", action="store_true", help="stand-in analysis (no torch): the GUI's own memory")
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--cancels", type=int, default=20)
    ap.add_argument("--skip", nargs="*", default=[], choices=("window", "windows", "cancel"))
    ap.add_argument("--explain", default="full", choices=("none", "quick", "full"), help="the analysis' explanation")
    args = ap.parse_args()
    global EXPLAIN
    EXPLAIN = args.explain
    from braingui.ui.app import create_app

    app = create_app()
    if "window" not in args.skip:
        trim = "off (BRAINGUI_NO_MALLOC_TRIM=1)" if os.environ.get("BRAINGUI_NO_MALLOC_TRIM") == "1" else "on"
        print(f"1. {args.cases} cases in one window ({'stand-in' if args.fake else 'real pipeline'}; "
              f"malloc_trim after each job: {trim})")
        marks = bench_one_window(app, args.cases, args.fake)
        last = max(marks)
        print(f"   ratio RSS(case {last}) / RSS(case 1) = {marks[last] / marks[1]:.2f} (goal <= 1.2)")
    if "windows" not in args.skip:
        print(f"2. {args.windows} windows opened, analysed and closed")
        rss = bench_windows(app, args.windows, args.fake)
        print(f"   ratio RSS(after window {len(rss)}) / RSS(after window 1) = {rss[-1] / rss[0]:.2f}")
    if "cancel" not in args.skip and not args.fake:
        print(f"3. cancel and close mid-analysis ({args.cancels} cancels)")
        res = bench_cancel(app, args.cancels, args.fake)
        waits = res["cancel_to_old_run_stopped_s"]
        print(f"   cancel -> old run stopped: median {statistics.median(waits):.2f} s, max {max(waits):.2f} s, "
              f"{sum(w <= 1.0 for w in waits)}/{len(waits)} within 1 s")
        print(f"   worker threads during a hand-over: max {max(res['threads_alive_after'])} (the old one stopping, the "
              "new one waiting: at most one computes, braingui.inference.interrupt.compute_slot)")
        print(f"   close mid-analysis: {', '.join(f'{c:.2f}' for c in res['close_s'])} s (goal <= 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
