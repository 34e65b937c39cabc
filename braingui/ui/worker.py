"""Background jobs: the one QObject worker, moved to a QThread, that iterates a job generator.

A *job factory* is a callable ``(cancel_event) -> generator``; the generator yields
:class:`braingui.results.ProgressEvent` objects and returns its result (an ``AnalysisResult``, a
``Case``...). It has no Qt in it (DESIGN.md: Threading). An early result travels as ``partial``: an
event whose ``partial`` is set (the pipeline's quick results before its slow part) is emitted as
``progress`` and as ``partial(id, event.partial)``; anything else the generator yields that is not an
event (a job's intermediate value, e.g. a quick class map) is emitted as ``partial(id, value)`` only.
The worker checks ``cancel_event`` between steps and the job may check it inside a long step. Results
travel to the GUI thread by queued signals (in the order emitted: every ``partial`` before
``finished``) and are applied there only.

:class:`JobRunner` starts one thread per job and tags every signal with the job id, so the window can
ignore a job it has given up on (a new case was opened). ``shutdown`` cancels every job, then
``quit()`` and ``wait()`` each thread - closeEvent calls it.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable, Iterator

from PySide6.QtCore import QObject, QThread, Signal, Slot

from braingui import process_memory
from braingui.errors import BrainguiError

JobFactory = Callable[[threading.Event], Iterator[Any]]


class Worker(QObject):
    """Runs one job factory in the thread it lives in; emits what happened.

    Signals carry the job id first: ``progress(id, ProgressEvent)``, ``partial(id, value)`` (an early
    result, before ``finished``), ``finished(id, result)``, ``failed(id, message, details)`` (details: a
    traceback for the log, empty for user errors) and ``cancelled(id)``. Exactly one of the last three is
    emitted, then ``done(id)``.
    """

    progress = Signal(int, object)
    partial = Signal(int, object)
    finished = Signal(int, object)
    failed = Signal(int, str, str)
    cancelled = Signal(int)
    done = Signal(int)

    def __init__(self, job_id: int, factory: JobFactory, cancel: threading.Event):
        super().__init__()
        self.job_id, self.factory, self.cancel = job_id, factory, cancel

    @Slot()
    def run(self) -> None:
        try:
            self._iterate()
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message, never a traceback on screen
            if self.cancel.is_set():
                self.cancelled.emit(self.job_id)
            elif isinstance(exc, BrainguiError):
                self.failed.emit(self.job_id, str(exc), "")
            else:
                self.failed.emit(self.job_id, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        finally:
            # The job closure holds its case (four volumes, ~140 MB at 240x240x155) and its generator the
            # result; PySide may keep this worker's wrapper alive after deleteLater(), so let go of both here.
            self.factory = None
            self.done.emit(self.job_id)

    def _iterate(self) -> None:
        gen = self.factory(self.cancel)
        if not hasattr(gen, "__next__"):  # a plain callable that returned its result at once
            self.finished.emit(self.job_id, gen)
            return
        try:
            while True:
                if self.cancel.is_set():
                    self.cancelled.emit(self.job_id)
                    return
                try:
                    event = next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
                if not hasattr(event, "fraction"):  # not a ProgressEvent: an intermediate value
                    self.partial.emit(self.job_id, event)
                    continue
                self.progress.emit(self.job_id, event)
                early = getattr(event, "partial", None)
                if early is not None:
                    self.partial.emit(self.job_id, early)
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()
        if self.cancel.is_set():
            self.cancelled.emit(self.job_id)
        else:
            self.finished.emit(self.job_id, result)


class JobRunner(QObject):
    """Starts jobs in worker threads and relays their signals (same signatures as :class:`Worker`)."""

    progress = Signal(int, object)
    partial = Signal(int, object)
    finished = Signal(int, object)
    failed = Signal(int, str, str)
    cancelled = Signal(int)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._jobs: dict[int, tuple[QThread, Worker, threading.Event]] = {}
        self._next_id = 1

    def start(self, factory: JobFactory, name: str = "job") -> int:
        """Run ``factory`` in a new thread; returns the job id."""
        job_id = self._next_id
        self._next_id += 1
        cancel = threading.Event()
        thread = QThread(self)
        thread.setObjectName(f"braingui-{name}-{job_id}")
        worker = Worker(job_id, factory, cancel)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self.progress)
        worker.partial.connect(self.partial)
        worker.finished.connect(self.finished)
        worker.failed.connect(self.failed)
        worker.cancelled.connect(self.cancelled)
        worker.done.connect(self._on_done)
        self._jobs[job_id] = (thread, worker, cancel)
        thread.start()
        return job_id

    def is_running(self, job_id: int | None = None) -> bool:
        """True while job ``job_id`` (any job when ``None``) has not finished."""
        return bool(self._jobs) if job_id is None else job_id in self._jobs

    def cancel(self, job_id: int | None = None) -> None:
        """Ask job ``job_id`` (every job when ``None``) to stop at its next step."""
        for jid, (_, _, cancel) in list(self._jobs.items()):
            if job_id is None or jid == job_id:
                cancel.set()

    def _on_done(self, job_id: int) -> None:
        entry = self._jobs.pop(job_id, None)
        if entry is None:
            return
        thread, worker, _ = entry
        thread.quit()
        thread.wait()
        worker.deleteLater()
        thread.deleteLater()
        process_memory.trim()  # the finished thread's heap arena back to the system (see process_memory)

    def shutdown(self) -> None:
        """Cancel every job, then ``quit()`` and ``wait()`` each thread (blocks until each job's step ends)."""
        self.cancel()
        for job_id in list(self._jobs):
            thread, worker, _ = self._jobs.pop(job_id)
            thread.quit()
            thread.wait()
            worker.deleteLater()
            thread.deleteLater()
