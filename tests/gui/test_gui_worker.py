"""The QThread worker: progress, result, cancel, errors, and a responsive window during a run."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from braingui.errors import CaseError
from braingui.results import AnalysisResult, ProgressEvent
from braingui.ui.worker import JobRunner
from gui_helpers import fake_analysis, isolated_dirs, make_window, open_and_wait, small_case_dir  # noqa: F401

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("isolated_dirs")]


@pytest.fixture
def runner(qtbot):
    """A job runner that is shut down (cancel, quit, wait) before it is dropped."""
    r = JobRunner()
    yield r
    r.shutdown()


def start_held_run(qtbot, folder, steps: int = 1):
    """A window on ``folder`` whose (stand-in) analysis has started and runs until it is cancelled (or until
    the returned event is set); returns ``(window, event)``."""
    hold, started = threading.Event(), threading.Event()
    win = make_window(qtbot, analysis_factory=lambda case: fake_analysis(case, steps=steps, hold=hold, started=started))
    open_and_wait(qtbot, win, folder)
    win.run_analysis()
    assert started.wait(5)
    return win, hold


def collect(runner):
    seen = {"progress": [], "finished": [], "failed": [], "cancelled": []}
    runner.progress.connect(lambda jid, ev: seen["progress"].append((jid, ev)))
    runner.finished.connect(lambda jid, r: seen["finished"].append((jid, r)))
    runner.failed.connect(lambda jid, msg, det: seen["failed"].append((jid, msg, det)))
    runner.cancelled.connect(lambda jid: seen["cancelled"].append(jid))
    return seen


def test_worker_emits_progress_then_the_result_in_another_thread(qtbot, runner):
    seen = collect(runner)
    threads = []

    def job(cancel):
        threads.append(threading.current_thread())
        for i in range(4):
            yield ProgressEvent("segmentation", i / 4, 0.0, f"window {i + 1}/4")
        return AnalysisResult(case_id="x", predicted_class="G")

    with qtbot.waitSignal(runner.finished, timeout=5000):
        jid = runner.start(job)
    assert [ev.message for _, ev in seen["progress"]] == [f"window {i}/4" for i in range(1, 5)]
    assert seen["finished"][0][0] == jid and seen["finished"][0][1].predicted_class == "G"
    assert threads[0] is not threading.main_thread()
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=2000)


def test_cancel_stops_the_job_and_no_result_arrives(qtbot, runner):
    seen = collect(runner)
    started, hold = threading.Event(), threading.Event()
    case = type("C", (), {"labels": None, "case_id": "x", "grid": None})()
    jid = runner.start(fake_analysis(case, steps=1, hold=hold, started=started))
    assert started.wait(5)
    with qtbot.waitSignal(runner.cancelled, timeout=5000):
        runner.cancel(jid)
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=2000)
    assert seen["cancelled"] == [jid] and seen["finished"] == [] and seen["failed"] == []


@pytest.mark.parametrize("error,expect_details", [(CaseError("bad header", "/data/x_t1.nii.gz"), False),
                                                  (RuntimeError("CUDA out of memory"), True)])
def test_errors_become_a_message(qtbot, runner, error, expect_details):
    seen = collect(runner)
    case = type("C", (), {"labels": None, "case_id": "x", "grid": None})()
    with qtbot.waitSignal(runner.failed, timeout=5000):
        runner.start(fake_analysis(case, steps=2, fail=error))
    _, message, details = seen["failed"][0]
    assert str(error) in message
    assert ("Traceback" in details) == expect_details
    assert seen["finished"] == []
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=2000)


def test_window_progress_bar_cancel_button_and_slider_during_a_run(qtbot, small_case_dir):
    win, _ = start_held_run(qtbot, small_case_dir, steps=2)
    qtbot.waitUntil(lambda: win.progress.value() == 500, timeout=5000)  # the 'waiting' events say 0.5
    assert win.progress.isVisible() and win.cancel_button.isVisible()
    assert "Segmentation" in win.stage_label.text()
    # the GUI thread is free: the slider moves and the panes follow while the job runs
    before = win.panes.views["original"].layer_image("base").copy()
    win.slice_controls.slider.setValue(win.slice_controls.slider.value() - 5)
    assert win.runner.is_running()
    assert not np.array_equal(win.panes.views["original"].layer_image("base"), before)
    with qtbot.waitSignal(win.job_cancelled, timeout=5000):
        win.cancel_button.click()
    qtbot.waitUntil(lambda: not win.runner.is_running(), timeout=5000)
    assert win.ctx.result is None and not win.cancel_button.isVisible()
    assert "cancelled" in win.stage_label.text().lower()


def test_closing_the_window_during_a_run_stops_the_thread(qtbot, small_case_dir):
    win, hold = start_held_run(qtbot, small_case_dir, steps=1)
    threads = [t for t, _, _ in win.runner._jobs.values()]
    assert threads and all(t.isRunning() for t in threads)
    win.close()
    import shiboken6

    # close() cancelled, quit() and wait()ed each thread; one whose deleteLater() already ran was waited for
    # first (JobRunner deletes a QThread only after wait(); Qt aborts on deleting a running one)
    assert all(not shiboken6.isValid(t) or t.isFinished() for t in threads)
    assert not win.runner.is_running()
    assert not hold.is_set()  # it stopped because of the cancel, not because the job ended by itself


def test_opening_another_case_drops_the_running_analysis(qtbot, small_case_dir):
    win, _ = start_held_run(qtbot, small_case_dir, steps=1)
    first = win.analysis_job
    open_and_wait(qtbot, win, small_case_dir)
    assert win.analysis_job is None and not win.runner.is_running(first) or win.runner.is_running(first) is False
    qtbot.waitUntil(lambda: not win.runner.is_running(), timeout=5000)
    assert win.ctx.result is None


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS"))


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc / procfs only")
def test_a_finished_jobs_freed_memory_leaves_the_process(qtbot, runner):
    """A job that allocated ~300 MB of small blocks in its thread and let go of them: once the runner has
    joined the thread, the memory is back with the system (malloc_trim), not kept in the thread's arena."""
    from braingui import process_memory

    if not process_memory.trim():
        pytest.skip("no glibc malloc_trim here")
    keep = []

    def job(cancel):
        blocks = [bytes(2000) for _ in range(150_000)]
        keep.extend(blocks[::200])  # a few survivors, scattered: the arena cannot shrink from its top
        del blocks
        yield ProgressEvent("work", 1.0, 0.0, "")
        return "done"

    before = _rss_mb()
    runner.start(job, "alloc")
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=30000)
    assert _rss_mb() < before + 100, (before, _rss_mb())
    assert len(keep) == 750
