"""Job factories the window hands to the worker: load a case, run the analysis.

Each ``*_job`` returns a factory ``(cancel_event) -> generator`` (see :mod:`braingui.ui.worker`). The
analysis factory imports the inference stack (torch, MONAI) *inside the worker thread*, the first time
it runs, so the window opens without loading torch. The :class:`~braingui.inference.predictor.Predictor`
is kept between runs, so a second case does not load the networks again.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from braingui.errors import BrainguiError
from braingui.results import ProgressEvent

_PREDICTORS: dict[str, Any] = {}
_PREDICTOR_LOCK = threading.Lock()


def load_case_job(path: str | os.PathLike | None, explicit: dict[str, str] | None = None,
                  label_convention: str | None = None) -> Callable[[threading.Event], Any]:
    """A job that loads a case with :func:`braingui.case.load_case` and returns the ``Case``."""

    def job(cancel: threading.Event):
        from braingui.case import load_case

        t0 = time.perf_counter()
        yield ProgressEvent("load case", 0.0, 0.0, f"reading {os.fspath(path) if path else 'the files'}")
        case = load_case(path, explicit, label_convention)
        yield ProgressEvent("load case", 1.0, time.perf_counter() - t0, case.case_id)
        return case

    return job


def find_models(models_dir: str | os.PathLike | None = None):
    """The model bundles the analysis would use (torch-free); see :mod:`braingui.inference.locate`.

    Returns:
        A ``BundleSearch`` (``segmentation`` / ``classification`` may be ``None``).

    Raises:
        BrainguiError: ``--models`` missing, or a broken manifest in a searched folder.
    """
    from braingui.inference.locate import find_bundles

    return find_bundles(models_dir)


def _predictor(device: str):
    with _PREDICTOR_LOCK:
        if device not in _PREDICTORS:
            from braingui.inference.predictor import Predictor

            _PREDICTORS[device] = Predictor(device)
        return _PREDICTORS[device]


def analysis_job(case, options: dict[str, Any] | None = None) -> Callable[[threading.Event], Any]:
    """A job that runs the inference pipeline on ``case`` and returns its ``AnalysisResult``.

    Args:
        case: the loaded :class:`braingui.case.Case`.
        options: ``models_dir`` (the ``--models`` folder), ``device`` (``auto``, ``cpu``, ``cuda``...),
            ``all_cams`` (Grad-CAM of every class).
    """
    options = dict(options or {})

    def job(cancel: threading.Event):
        yield ProgressEvent("load models", 0.0, 0.0, "finding the model bundles")
        search = find_models(options.get("models_dir"))
        search.require_any()
        notes = list(search.notes) + [f"no {task} model bundle found; that part is skipped" for task in search.missing()]
        yield ProgressEvent("load models", 0.0, 0.0, "starting torch")
        try:
            from braingui.inference.pipeline import analyse
        except ImportError as exc:
            raise BrainguiError(f"the analysis engine cannot start: {exc}") from exc
        predictor = _predictor(options.get("device") or "auto")
        return (yield from analyse(case, predictor, search.segmentation, search.classification,
                                   all_cams=bool(options.get("all_cams")), cancel=cancel, notes=notes))

    return job
