"""Job factories the window hands to the worker: load a case, run the analysis.

Each ``*_job`` returns a factory ``(cancel_event) -> generator`` (see :mod:`braingui.ui.worker`). The
analysis factory imports the inference stack (torch, MONAI) *inside the worker thread*, the first time
it runs, so the window opens without loading torch. The :class:`~braingui.inference.predictor.Predictor`
is kept between runs, so a second case does not load the networks again, and the bundle search the
window ran to decide whether to analyse (:func:`find_models`) is handed to the worker instead of being
run again, unless the searched folders or their manifests changed since.

:func:`start_preload` (called once the window shows) does the analysis's fixed costs in a background
thread while the user looks at the images: it imports torch and MONAI (at a lowered CPU priority on
Linux), finds the bundles, loads them into the same cached Predictor (the OpenVINO conversion or its
cache included) and warms everything up by analysing a small synthetic phantom with the window's options
(the classifier's kernels at its real input shape, medcam, the first backward's imports, the quick
explanation's batched forward, the pipeline's own first calls), so the first click on Analyse costs what
later ones do. An analysis started meanwhile waits for the model it needs instead of loading it a
second time, and stops the warm-up analysis (within one layer) rather than wait for it.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from braingui.discovery import MODALITIES
from braingui.errors import BrainguiError
from braingui.inference.limits import REFERENCE_CASE  # torch-free
from braingui.results import ProgressEvent

_PREDICTORS: dict[str, Any] = {}
_PREDICTOR_LOCK = threading.Lock()
_SEARCHES: dict[str | None, tuple[tuple, Any]] = {}
"""``models_dir -> (fingerprint, BundleSearch)``: the latest search per ``--models`` folder."""
_SEARCH_LOCK = threading.Lock()


@dataclass
class SeriesQuestion:
    """What a load job returns for a DICOM folder whose series roles the user should confirm first.

    Attributes:
        study: the converted :class:`braingui.dicom.DicomStudy` (its ``proposal`` is the suggestion).
        path, explicit, label_convention: the arguments of the load.
    """

    study: Any
    path: str | os.PathLike
    explicit: dict[str, str] | None = None
    label_convention: str | None = None

    def answer(self, series_map: dict[str, str]) -> tuple[str | os.PathLike, dict[str, str], str | None]:
        """``open_case`` arguments that load the study with ``series_map`` (modality -> series key)."""
        return self.path, {**(self.explicit or {}), **series_map}, self.label_convention


def load_case_job(path: str | os.PathLike | None, explicit: dict[str, str] | None = None,
                  label_convention: str | None = None,
                  confirm_series: bool = False) -> Callable[[threading.Event], Any]:
    """A job that loads a case with :func:`braingui.case.load_case` and returns the ``Case``.

    With ``confirm_series``, a DICOM folder whose four modalities are not all named in ``explicit`` is
    converted and returned as a :class:`SeriesQuestion` instead (the window asks, then loads again).
    """

    def job(cancel: threading.Event):
        from braingui.case import load_case

        t0 = time.perf_counter()
        yield ProgressEvent("load case", 0.0, 0.0, f"reading {os.fspath(path) if path else 'the files'}")
        if confirm_series and not set(MODALITIES) <= set(explicit or {}):
            from braingui import dicom

            if dicom.is_dicom_folder(path):
                yield ProgressEvent("load case", 0.1, time.perf_counter() - t0, "converting the DICOM series")
                study = dicom.open_study(path)
                return SeriesQuestion(study, path, explicit, label_convention)
        case = load_case(path, explicit, label_convention)
        yield ProgressEvent("load case", 1.0, time.perf_counter() - t0, case.case_id)
        return case

    return job


def _mtime(path: os.PathLike) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _fingerprint(models_dir: str | os.PathLike | None) -> tuple:
    """What a bundle search reads, by modification time: each location (they follow the environment),
    its manifest, and each sub-folder with its manifest (a bundle added, removed or edited changes it)."""
    from braingui.inference.locate import search_locations
    from braingui.inference.manifest import MANIFEST_NAME

    out = []
    for loc in search_locations(models_dir):
        try:
            subs = sorted(p for p in loc.path.iterdir() if p.is_dir()) if loc.path else []
        except OSError:
            subs = []
        here = (_mtime(loc.path), _mtime(loc.path / MANIFEST_NAME)) if loc.path else None
        inside = tuple((p.name, _mtime(p), _mtime(p / MANIFEST_NAME)) for p in subs)
        out.append((loc.source, str(loc.path), here, inside))
    return tuple(out)


def find_models(models_dir: str | os.PathLike | None = None):
    """The model bundles the analysis would use (torch-free); see :mod:`braingui.inference.locate`.

    The search is kept per ``models_dir``: a later call (the analysis worker's, after the window's)
    reuses it while the searched folders and their manifests are unchanged.

    Returns:
        A ``BundleSearch`` (``segmentation`` / ``classification`` may be ``None``).

    Raises:
        BrainguiError: ``--models`` missing, or a broken manifest in a searched folder.
    """
    from braingui.inference.locate import find_bundles

    key = os.fspath(models_dir) if models_dir else None
    fingerprint = _fingerprint(models_dir)  # taken before the search: a change during it is seen next time
    with _SEARCH_LOCK:
        kept = _SEARCHES.get(key)
    if kept is not None and kept[0] == fingerprint:
        return kept[1]
    search = find_bundles(models_dir)
    with _SEARCH_LOCK:
        _SEARCHES[key] = (fingerprint, search)
    return search


def _predictor(device: str):
    with _PREDICTOR_LOCK:
        if device not in _PREDICTORS:
            from braingui.inference.predictor import Predictor

            _PREDICTORS[device] = Predictor(device)
        return _PREDICTORS[device]


_PRELOADS: dict[tuple, threading.Thread] = {}
_PRELOAD_STOP = threading.Event()
_WARM_STOP = threading.Event()
PRELOAD_STATUS: dict[tuple, str] = {}
"""``(models_dir, device) -> "importing" | "loaded" | "warmed" | "stopped" | "failed: ..."`` (tests, benches)."""
"""Set by the first real analysis: a warm-up analysis still running stops for it."""
WARM_CASE_SHAPE = (64, 64, 48)
WARM_CASE_SPACING = (3.0, 3.0, 3.0)
"""The first warm-up phantom: small, so only the classifier (always at its manifest's shape) costs much."""
FULL_WARM_CASE_SHAPE = REFERENCE_CASE
FULL_WARM_CASE_SPACING = (1.0, 1.0, 1.0)
"""The second warm-up phantom, the size of a BraTS case: its analysis has the process allocate and touch the
memory a real case's analysis uses (on this project's VM the first touch of memory is slow: the first real
analysis after the small phantom alone took 1.34-1.40 times a warm one, after this one 0.99-1.06)."""
PRELOAD_NICE = 10
"""How much the preload's import thread lowers its own CPU priority (Linux; 0 = not at all)."""


def preload_running() -> bool:
    """True while a background preload thread (imports, network loading, warm-up) is still working."""
    return any(t.is_alive() for t in list(_PRELOADS.values()) if isinstance(t, threading.Thread))


def start_preload(options: dict[str, Any] | None = None, nice: int = PRELOAD_NICE) -> threading.Thread | None:
    """Start the background preload for these analysis options (once per ``models_dir`` and ``device``).

    Two daemon threads: one imports the inference stack (torch, MONAI's networks, medcam, the pipeline),
    ``nice``-d on Linux (a thread's nice value is its own there); then the thread that started it, at
    normal priority, finds the bundles, loads them into the cached Predictor (the OpenVINO conversion or
    its cache included) and warms them up inside the predictor's compute slot. The loading and the
    passes run at normal priority on purpose: the thread pools that torch and OpenVINO create on first
    use inherit the creating thread's priority, and every later analysis runs on them. Every error is
    left for the analysis itself to report.

    Args:
        options: the window's analysis options (``models_dir``, ``device``).
        nice: the import thread's priority decrease.

    Returns:
        The started thread, or ``None`` when a preload for these options was already started.
    """
    options = dict(options or {})
    key = (os.fspath(options.get("models_dir") or "") or None, options.get("device") or "auto")
    with _PREDICTOR_LOCK:
        if key in _PRELOADS:
            return None
        thread = threading.Thread(target=_preload, args=(key, nice, options), name="braingui-preload",
                                  daemon=True)
        _PRELOADS[key] = thread
    thread.start()
    return thread


def _import_stack(nice: int) -> None:
    if nice and sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except (OSError, AttributeError):
            pass
    try:
        import braingui.inference.pipeline  # noqa: F401 - torch and the pipeline's own modules
        from braingui.inference.networks import import_network_modules

        import_network_modules()
    except Exception:  # noqa: BLE001 - the analysis reports an engine that cannot start
        pass


def warm_case(shape: tuple[int, int, int] = WARM_CASE_SHAPE, spacing: tuple[float, float, float] = WARM_CASE_SPACING):
    """A synthetic phantom the warm-up analyses run on (a :class:`braingui.case.Case`, in memory; default the
    small one)."""
    import numpy as np

    from braingui.case import Case
    from braingui.discovery import CaseFiles
    from braingui.geometry import Grid
    from braingui.phantom import make_phantom

    ph = make_phantom(shape, spacing, seed=0)
    grid = Grid.from_original(shape, ph.affine)
    images = {m: np.array(v, dtype=np.float32) for m, v in ph.images.items()}
    return Case("SYNTHETIC_warm_up", CaseFiles("SYNTHETIC_warm_up", None), grid, images, None)


def _preload(key: tuple, nice: int, options: dict[str, Any]) -> None:
    models_dir, device = key
    PRELOAD_STATUS[key] = "importing"
    try:
        importer = threading.Thread(target=_import_stack, args=(nice,), name="braingui-preload-imports",
                                    daemon=True)
        importer.start()
        search = find_models(models_dir)  # torch-free, meanwhile
        importer.join()
        bundles = [b for b in (search.segmentation, search.classification) if b is not None]
        if not bundles or _PRELOAD_STOP.is_set():
            return
        from braingui.inference.interrupt import compute_slot

        predictor = _predictor(device)
        for bundle in bundles:
            if not _PRELOAD_STOP.is_set():
                predictor.load(bundle)
        PRELOAD_STATUS[key] = "loaded"
        if _PRELOAD_STOP.is_set() or _WARM_STOP.is_set():
            PRELOAD_STATUS[key] = "stopped"
            return
        from braingui.inference.pipeline import Cancelled, analyse, run_to_completion

        stop = _StopEither(_PRELOAD_STOP, _WARM_STOP)
        try:
            for size in ((WARM_CASE_SHAPE, WARM_CASE_SPACING), (FULL_WARM_CASE_SHAPE, FULL_WARM_CASE_SPACING)):
                if stop.is_set():  # the small phantom first: the classifier's kernels are ready soonest
                    break
                run_to_completion(analyse(warm_case(*size), predictor, search.segmentation, search.classification,
                                          cancel=stop, tta=options.get("tta"), explain="quick",
                                          cam_method=options.get("cam_method")))
        except Cancelled:
            PRELOAD_STATUS[key] = "stopped"
            return
        PRELOAD_STATUS[key] = "stopped" if stop.is_set() else "warmed"
    except Exception as exc:  # noqa: BLE001 - the analysis reports the same problem, in its own words
        PRELOAD_STATUS[key] = f"failed: {type(exc).__name__}: {exc}"


class _StopEither(threading.Event):
    """An event that also counts as set when any of ``others`` is (what the pipeline's cancel checks read)."""

    def __init__(self, *others: threading.Event):
        super().__init__()
        self._others = others

    def is_set(self) -> bool:
        return super().is_set() or any(e.is_set() for e in self._others)


def wait_for_preload(timeout: float | None = None) -> bool:
    """Wait for the started preloads to finish (tests, benches); True when none is still running."""
    end = None if timeout is None else time.monotonic() + timeout
    with _PREDICTOR_LOCK:
        threads = list(_PRELOADS.values())
    for t in threads:
        t.join(None if end is None else max(0.0, end - time.monotonic()))
    return not any(t.is_alive() for t in threads)


@atexit.register
def _stop_preload() -> None:
    _PRELOAD_STOP.set()  # between steps; a step in progress (an import, one load) finishes first
    wait_for_preload(5.0)


def analysis_job(case, options: dict[str, Any] | None = None) -> Callable[[threading.Event], Any]:
    """A job that runs the inference pipeline on ``case`` and returns its ``AnalysisResult``.

    Args:
        case: the loaded :class:`braingui.case.Case`.
        options: ``models_dir`` (the ``--models`` folder), ``device`` (``auto``, ``cpu``, ``cuda``...),
            ``all_cams`` (Grad-CAM of every class), ``tta`` (segmentation flipped views, ``None``: the
            default), ``postprocess`` (False: no post-processing), ``explain`` (``none`` / ``quick`` /
            ``full``, default ``full``: the quick part arrives early as a partial result, then the slow
            part), ``cam_method`` and ``cam_layer`` (``None``: the classifier manifest's).
    """
    options = dict(options or {})

    def job(cancel: threading.Event):
        _WARM_STOP.set()  # a warm-up analysis still running gives way to this one
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
        post = None
        if options.get("postprocess") is False:
            from braingui.postprocess import OFF as post
        return (yield from analyse(case, predictor, search.segmentation, search.classification,
                                   all_cams=bool(options.get("all_cams")), cancel=cancel, notes=notes,
                                   tta=options.get("tta"), postprocess=post,
                                   explain=options.get("explain") or "full", cam_method=options.get("cam_method"),
                                   cam_layer=options.get("cam_layer")))

    return job


def cam_job(case, result, class_code: str, options: dict[str, Any] | None = None) -> Callable[[threading.Event], Any]:
    """A job that computes one class's heat map and explanation for a result on screen (the window's
    "Grad-CAM of" another class, or another method / layer): :func:`braingui.inference.class_maps.class_map`
    on the cached classifier that made ``result``, which keeps its segmentation.

    The generator yields ``ProgressEvent`` objects and, once, the quick ``ClassMap`` (the map shown at
    once, before the deletion curve and the sanity check); it returns the final ``ClassMap``.

    Args:
        case: the case on screen.
        result: its ``AnalysisResult`` (its classification model is loaded again from the same bundle).
        class_code: the class to explain.
        options: ``method``, ``layer`` (default: the result's), ``level`` (``"none"``, ``"quick"``,
            ``"full"``; default full) and ``device`` (as the analysis).
    """
    options = dict(options or {})

    def job(cancel: threading.Event):
        yield ProgressEvent("grad-cam", 0.0, 0.0, "starting torch")
        info = next((m for m in result.models if m.task == "classification"), None)
        if info is None:
            raise BrainguiError("this result has no classifier, so it has no heat maps")
        from braingui.inference.class_maps import class_map
        from braingui.inference.manifest import read_bundle

        bundle = read_bundle(info.path)
        if bundle.manifest.sha256 != info.sha256:
            raise BrainguiError(f"the classifier bundle {info.name} changed since the analysis; run the analysis again")
        predictor = _predictor(options.get("device") or "auto")
        model = predictor.load(bundle)
        explanation = getattr(result, "explanation", None) or {}
        method = options.get("method") or getattr(result, "cam_method", None) or explanation.get("method")
        layer = options.get("layer") or result.cam_layer or explanation.get("layer")
        method, layer = model.cam_choice(method, layer)  # the manifest's where the result names none
        return (yield from class_map(case, model, result, class_code, method, layer, options.get("level") or "full",
                                     cancel, owner=predictor))

    return job
