"""Heat maps on demand: other classes, other methods and layers, computed in the background and cached.

The analysis explains the predicted class. The window lets the user ask for more, and
:class:`CamRequests` runs it as jobs (:func:`braingui.ui.jobs.cam_job`, one at a time, cancellable, with
progress in the status bar), keeping the segmentation:

* choosing a class in "Grad-CAM of" (:attr:`LookControls.cam_class_requested`) whose map is not in
  ``result.cams`` computes that class's map and explanation ("why G" beside "why not A"); a class whose
  map came without an explanation gets one the same way when it is shown;
* choosing a method or layer in the Explanation panel (:attr:`ExplanationPanel.recompute_requested`)
  recomputes the shown class's map and explanation that way (and the predicted class's, so
  ``result.explanation`` and ``result.cams`` keep describing one method and layer, as results.json does).

Everything computed is cached per ``(method, layer, class)`` for the case on screen (a new analysis or case
clears it). A job yields the quick map first (shown at once), then returns it with the deletion curve and the
sanity check. The Explanation panel always shows the explanation of the class shown; its comparison table
sets the classes computed so far side by side.

:meth:`CamRequests.show_analysis` puts an analysis result on screen - the early partial one (quick
explanation) and the final one of the same run - carrying over what was computed meanwhile.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

from braingui.display import explanation_view as xv
from braingui.results import ProgressEvent
from braingui.ui import jobs
from braingui.ui.window_layout import job_indicator

Key = tuple[str, str, str]
"""``(method, layer, class code)``."""
CamFactory = Callable[[Any, Any, str, dict], Callable]
"""``(case, result, class_code, options) -> job factory`` (:func:`braingui.ui.jobs.cam_job`; tests pass a stand-in)."""
DEFAULT_METHOD = "gradcam"
MAX_KEPT = 6
"""Maps kept besides those of the method and layer shown (each is one case-grid float32 volume, ~36 MB at
240x240x155); the oldest go first and are computed again if asked for."""


def choice_of(result) -> tuple[str, str | None]:
    """The ``(method, layer)`` a result's maps were made with (its ``cam_method`` / ``cam_layer``, else its
    explanation's)."""
    e = getattr(result, "explanation", None) or {}
    return (getattr(result, "cam_method", None) or e.get("method") or DEFAULT_METHOD,
            result.cam_layer or e.get("layer"))


class CamRequests(QObject):
    """Computes and caches heat maps the user asks for (see the module docstring).

    Args:
        win: the main window (its ``ctx``, ``runner``, ``look``, ``results``, ``analysis_options`` and status bar).
        factory: the job factory (default :func:`braingui.ui.jobs.cam_job`).

    Signals:
        map_shown(str): a map computed on demand is on screen (its class code).
        failed(str): a map could not be computed (the message shown).
    """

    map_shown = Signal(str)
    failed = Signal(str)

    def __init__(self, win, factory: CamFactory | None = None):
        super().__init__(win)
        self.win, self.ctx, self.runner = win, win.ctx, win.runner
        self.factory: CamFactory = factory or jobs.cam_job
        self.maps: dict[Key, tuple[Any, dict | None]] = {}
        """What was computed for the case on screen: key -> ``(map, explanation)``."""
        self.queue: list[Key] = []
        self.running: tuple[int, Key] | None = None
        self.view: tuple[str, str | None] = (DEFAULT_METHOD, None)
        """The method and layer of the maps shown (``result.cams``)."""
        self.want: Key | None = None
        """The map the user asked to see, until it is on screen."""
        self.case = None
        self.final = True
        self.failures: set[Key] = set()
        self.status, self.bar, self.stop = job_indicator(win.statusBar(), 140, "Stop map",
                                                         "Stop computing the heat map")
        self.stop.clicked.connect(self.cancel)
        for w in (self.status, self.bar, self.stop):
            w.setVisible(False)
        win.look.cam_class_requested.connect(self.request_class)
        win.results.explanation.recompute_requested.connect(self.request_method)
        self.runner.progress.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.ctx.changed.connect(self._on_ctx)

    # ----- results of the analysis
    def show_analysis(self, result, partial: bool = False) -> None:
        """Show an analysis result: the early ``partial`` one or the final one (which replaces the partial
        of the same run, keeping the class shown and the maps computed meanwhile)."""
        ctx = self.ctx
        continuing = not self.final and ctx.result is not None and ctx.case is self.case
        shown = ctx.cam_class if continuing else None
        if not continuing:
            self.reset()
        self.case, self.final = ctx.case, not partial
        base = choice_of(result)
        self._remember(result, base)
        if not continuing:
            self.view = base
        for (method, layer, code), (cam, _) in self.maps.items():
            if (method, layer) == base and code not in result.cams:
                result.cams[code] = cam  # computed on demand meanwhile
        if self.view != base:  # the user chose another method / layer during the run
            self._switch(result, *self.view)
        ctx.set_result(result)
        if shown is not None and shown in result.cams:
            ctx.set_cam_class(shown)
        if not ctx.navigated:  # the first view shows the tumour, unless the user has moved since opening
            ctx.jump_to_tumour(user=False)
        self.win.results.show_result(result, ctx.case.warnings if ctx.case else None)
        self._show_panel()

    def _remember(self, result, choice: tuple[str, str | None]) -> None:
        e = getattr(result, "explanation", None)
        for code, cam in result.cams.items():
            key = (*choice, code)
            expl = e if e is not None and e.get("class") == code else None
            old = self.maps.get(key)
            if old is None or expl is not None:
                self.maps[key] = (cam, expl if expl is not None else old[1] if old else None)

    def reset(self) -> None:
        """Forget what was computed (a new case or analysis) and stop any map job."""
        self.queue.clear()
        self.maps.clear()
        self.failures.clear()
        self.want = None
        self.final = True
        if self.running is not None:
            self.runner.cancel(self.running[0])
            self.running = None
        self._set_busy(None)

    def cancel(self) -> None:
        """Stop the running map job and drop the queued ones (what was computed stays cached)."""
        self.queue.clear()
        self.want = None
        if self.running is not None:
            self.runner.cancel(self.running[0])
            self.running = None
        self._set_busy(None)
        self._show_panel()

    # ----- requests
    def request_class(self, code: str) -> None:
        """Show class ``code``'s map at the current method and layer, computing it if needed."""
        if self.ctx.result is None:
            return
        key = (*self.view, code)
        if key in self.maps:
            self._show(key)
            return
        self.want = key
        self._ask([key])

    def request_method(self, method: str, layer: str) -> None:
        """Recompute the shown class's map and explanation with ``method`` at ``layer``."""
        result = self.ctx.result
        if result is None or (method, layer) == self.view and self.want is None:
            return
        shown = self.ctx.cam_class or result.predicted_class
        keys = [(method, layer, c) for c in dict.fromkeys((shown, result.predicted_class)) if c]
        self.want = keys[0]
        if (method, layer) == self.view:  # back to the maps shown: nothing to compute
            self.cancel()
            return
        if self.want in self.maps and self.maps[self.want][1] is not None:
            self._switch(result, method, layer)
            self._show(self.want)
        self._ask([k for k in keys if k not in self.maps or self.maps[k][1] is None])

    def _ask(self, keys: list[Key]) -> None:
        """Compute ``keys`` next (replacing what was queued; a running job for another map stops)."""
        keys = [k for k in keys if k not in self.failures]
        if self.running is not None and self.running[1] not in keys:
            self.runner.cancel(self.running[0])
            self.running = None
        self.queue = [k for k in keys if self.running is None or k != self.running[1]]
        self._start_next()
        self._show_panel()

    def _start_next(self) -> None:
        result, case = self.ctx.result, self.ctx.case
        while self.running is None and self.queue and result is not None:
            key = self.queue.pop(0)
            if key in self.maps and (self.maps[key][1] or {}).get("level") == "full":
                continue
            method, layer, code = key
            options = {"method": method, "layer": layer, "level": "full",
                       "device": (getattr(self.win, "analysis_options", None) or {}).get("device")}
            job_id = self.runner.start(self.factory(case, result, code, options), "cam")
            self.running = (job_id, key)
            title = result.class_titles.get(code, code)
            self._set_busy(f"Heat map of {title} ({xv.method_title(method)}, {xv.layer_title(layer)})\u2026")
        if self.running is None:
            self._set_busy(None)

    # ----- job signals
    def _mine(self, job_id: int) -> bool:
        return self.running is not None and self.running[0] == job_id

    def _on_progress(self, job_id: int, event) -> None:
        if not self._mine(job_id):
            return
        if isinstance(event, ProgressEvent):
            self.bar.setValue(round(max(0.0, min(1.0, event.fraction)) * 1000))
            if event.message:
                self.status.setToolTip(event.message)
            return
        self._store(event)  # the quick map, before the deletion curve and the sanity check

    def _on_finished(self, job_id: int, value) -> None:
        if not self._mine(job_id):
            return
        self.running = None
        self._store(value)
        self._start_next()
        self._show_panel()

    def _on_failed(self, job_id: int, message: str, details: str) -> None:
        if not self._mine(job_id):
            return
        key = self.running[1]
        self.running = None
        self.failures.add(key)
        if self.want == key:
            self.want = None
        if details:
            from braingui.logs import log_traceback

            log_traceback(details, "gui.log")
        text = f"Could not compute the heat map: {message}"
        self.win.statusBar().showMessage(text, 20000)
        self._start_next()
        self._show_panel()
        self.win.results.explanation.set_status(text)
        self.failed.emit(text)

    def _on_cancelled(self, job_id: int) -> None:
        if self._mine(job_id):
            self.running = None
            self._start_next()
            self._show_panel()

    # ----- applying maps
    def _store(self, cm) -> None:
        """Keep a computed map (a ``ClassMap``) and show it if it is the one asked for."""
        result = self.ctx.result
        if result is None or cm is None:
            return
        key = (cm.method, cm.layer, cm.code)
        self.maps.pop(key, None)
        self.maps[key] = (cm.cam, cm.explanation)  # newest last
        if (cm.method, cm.layer) == self.view:
            result.cams[cm.code] = cm.cam
            if cm.code == result.predicted_class and cm.explanation is not None:
                result.explanation = cm.explanation
        elif key == self.want:
            self._switch(result, cm.method, cm.layer)
        if key == self.want:
            self._show(key)
        else:
            self._show_panel()
        self._trim()

    def _trim(self) -> None:
        """Drop the oldest maps of other methods / layers beyond :data:`MAX_KEPT`."""
        others = [k for k in self.maps if k[:2] != self.view]
        for key in others[:max(0, len(others) - MAX_KEPT)]:
            del self.maps[key]

    def _switch(self, result, method: str, layer: str) -> None:
        """Make ``(method, layer)`` the maps shown: ``result.cams`` / ``cam_layer`` / ``explanation`` from the cache."""
        self.view = (method, layer)
        result.cams = {code: cam for (m, l, code), (cam, _) in self.maps.items() if (m, l) == self.view}
        result.cam_layer, result.cam_method = layer, method
        pred = self.maps.get((method, layer, result.predicted_class or ""))
        if pred is not None and pred[1] is not None:
            result.explanation = pred[1]

    def _show(self, key: Key) -> None:
        """Show the map of ``key`` (already at the current method and layer)."""
        code = key[2]
        if self.want == key:
            self.want = None
        if self.ctx.cam_class == code:
            self.ctx.changed.emit(frozenset({"look"}))  # the same class, a new map: redraw
        else:
            self.ctx.set_cam_class(code)  # -> _on_ctx -> the panel
        self._show_panel()
        self.map_shown.emit(code)

    def _on_ctx(self, what) -> None:
        if "data" in what and self.ctx.case is not self.case:
            self.reset()
            self.case = self.ctx.case
        elif "look" in what and self.ctx.result is not None:
            code = self.ctx.cam_class
            key = (*self.view, code or "")
            has = key in self.maps and self.maps[key][1] is not None
            explained = getattr(self.ctx.result, "explanation", None) is not None  # not a run with --explain none
            busy = key in self.queue or (self.running is not None and self.running[1] == key)
            if code and explained and not has and not busy and key not in self.failures:
                self.queue.append(key)  # a map that came without its explanation (e.g. --all-cams): explain it
                self._start_next()
            self._show_panel()

    def explanation_of(self, code: str | None) -> dict | None:
        """The cached explanation of ``code``'s map at the current method and layer (``None``: none yet)."""
        entry = self.maps.get((*self.view, code or ""))
        return entry[1] if entry else None

    def _show_panel(self) -> None:
        result, panel = self.ctx.result, self.win.results.explanation
        if result is None:
            return
        code = self.ctx.cam_class or result.predicted_class
        e = self.explanation_of(code)
        if e is None and code == result.predicted_class:
            e = getattr(result, "explanation", None)
        panel.show_explanation(e, result.class_titles, result.predicted_class, visible=bool(result.cams) or e is not None)
        others = {c: ex for (m, l, c), (_, ex) in self.maps.items() if (m, l) == self.view and ex is not None}
        panel.show_comparison(others, result.class_titles, result.predicted_class)
        if self.want is not None:
            panel.set_choice(self.want[0], self.want[1])
        running = self.running[1] if self.running is not None else None
        if running is not None and (running == self.want or running[2] == code):
            method, layer, c = running
            how = f"{xv.method_title(method)} at {xv.layer_title(layer)}"
            if c != code:
                text = f"Computing the map of {result.class_titles.get(c, c)} ({how})\u2026"
            elif (method, layer) == self.view:
                text = f"Computing the explanation of this map ({how})\u2026"
            else:
                text = f"Recomputing this map with {how}\u2026"
            panel.set_status(text)

    def _set_busy(self, text: str | None) -> None:
        busy = text is not None
        self.status.setText(text or "")
        if busy:
            self.bar.setValue(0)
        for w in (self.status, self.bar, self.stop):
            w.setVisible(busy)
