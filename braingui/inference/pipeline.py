"""The analysis pipeline: a plain generator that yields progress and returns one result (no Qt).

::

    gen = analyse(case, predictor, search.segmentation, search.classification, cancel=event)
    for progress in gen:          # ProgressEvent(stage, fraction, elapsed_s, message)
        report(progress)
    # the result is StopIteration.value; run_to_completion(gen) does this loop for scripts

A GUI worker (a QObject moved to a QThread) iterates it the same way and emits each event; setting the
``threading.Event`` from the GUI thread stops the run at the next check — between stages, between
sliding windows and between Grad-CAM classes — with :class:`Cancelled`.

Stages (paper IV, Fig. 2): ``load models`` (once per :class:`Predictor`), ``segmentation`` (z-score,
crop, windows of the SegResNet, sigmoid, back onto the case grid, > threshold per region, BraTS labels),
``classification`` (z-score, background crop, resize, DenseNet softmax; the Grad-CAM of the predicted
class comes from the same forward + backward), ``grad-cam`` (maps back onto the case grid; every class
with ``all_cams``), ``done``. Either model may be missing; that part is skipped with a warning.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import numpy as np

from braingui import __version__
from braingui import labels as lab
from braingui.case import Case
from braingui.errors import BrainguiError
from braingui.inference.manifest import Bundle
from braingui.inference.predictor import ClassificationModel, Predictor, SegmentationModel
from braingui.preprocess import prepare_classification, prepare_segmentation
from braingui.results import AnalysisResult, ProgressEvent

STAGES = ("load models", "segmentation", "classification", "grad-cam", "done")
_WEIGHTS = {"load models": 0.05, "segmentation": 0.6, "classification": 0.2, "grad-cam": 0.15}


class Cancelled(BrainguiError):
    """The run was cancelled; ``stage`` is where it stopped."""

    def __init__(self, stage: str):
        self.stage = stage
        super().__init__(f"analysis cancelled (during {stage})")


class _Progress:
    """Turns (stage, fraction within the stage) into overall fractions and checks cancellation."""

    def __init__(self, stages: list[str], cancel: threading.Event | None):
        total = sum(_WEIGHTS[s] for s in stages)
        self.start, self.cancel = time.perf_counter(), cancel
        self.offsets, acc = {}, 0.0
        for s in stages:
            self.offsets[s] = (acc / total, _WEIGHTS[s] / total)
            acc += _WEIGHTS[s]

    def event(self, stage: str, within: float = 0.0, message: str = "") -> ProgressEvent:
        if stage == "done":
            fraction = 1.0
        else:
            offset, width = self.offsets[stage]
            fraction = min(1.0, offset + width * min(max(within, 0.0), 1.0))
        return ProgressEvent(stage, fraction, time.perf_counter() - self.start, message)

    def check(self, stage: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(stage)


def analyse(case: Case, predictor: Predictor, segmentation: Bundle | None, classification: Bundle | None, *,
            all_cams: bool = False, cancel: threading.Event | None = None,
            notes: list[str] | tuple[str, ...] = ()) -> Generator[ProgressEvent, None, AnalysisResult]:
    """Analyse one case (see the module docstring).

    Args:
        case: the loaded case.
        predictor: loads (once) and runs the networks.
        segmentation, classification: the bundles to use; ``None`` skips that part with a warning.
        all_cams: Grad-CAM for every class, not only the predicted one.
        cancel: set it to stop the run at the next check.
        notes: extra warnings to carry into the result (e.g. from the bundle search).

    Yields:
        :class:`~braingui.results.ProgressEvent` objects with non-decreasing ``fraction``.

    Returns:
        The :class:`~braingui.results.AnalysisResult` (volumes on the case's canonical grid).

    Raises:
        Cancelled: ``cancel`` was set.
        BrainguiError: no model given, or a bundle that cannot be loaded.
    """
    if segmentation is None and classification is None:
        raise BrainguiError("nothing to do: no segmentation and no classification model")
    stages = ["load models"] + (["segmentation"] if segmentation else []) + (
        ["classification", "grad-cam"] if classification else [])
    progress = _Progress(stages, cancel)
    result = AnalysisResult(case_id=case.case_id, device=str(predictor.device), software_version=__version__,
                            warnings=list(case.warnings) + list(notes))
    for task, bundle in (("segmentation", segmentation), ("classification", classification)):
        if bundle is not None and bundle.task != task:
            raise BrainguiError(f"{bundle.name} is a {bundle.task} bundle, given as the {task} model")
        if bundle is None and not any(f"no {task} model bundle" in w for w in result.warnings):
            what = "segmentation" if task == "segmentation" else "classification and Grad-CAM"
            result.warnings.append(f"no {task} model bundle: {what} skipped")

    stage = "load models"
    progress.check(stage)
    yield progress.event(stage, 0.0, "loading")
    t0 = time.perf_counter()
    bundles = [b for b in (segmentation, classification) if b is not None]
    models = []
    for i, bundle in enumerate(bundles):
        cached = predictor.is_loaded(bundle)
        models.append(predictor.load(bundle))
        yield progress.event(stage, (i + 1) / len(bundles), f"{bundle.name}{' (cached)' if cached else ''}")
        progress.check(stage)
    result.timings_s[stage] = time.perf_counter() - t0
    for model in models:
        result.models.append(model.info)
        if model.info.demo:
            result.warnings.append(f"{model.info.name}: research demonstration model - not for clinical use")
    seg_model = next((m for m in models if isinstance(m, SegmentationModel)), None)
    cls_model = next((m for m in models if isinstance(m, ClassificationModel)), None)

    if seg_model is not None:
        yield from _segment(case, seg_model, progress, result)
    if cls_model is not None:
        yield from _classify(case, cls_model, progress, result, all_cams)
    result.timings_s["total"] = time.perf_counter() - progress.start
    yield progress.event("done", 1.0, "finished")
    return result


def _segment(case: Case, model: SegmentationModel, progress: _Progress,
             result: AnalysisResult) -> Generator[ProgressEvent, None, None]:
    stage = "segmentation"
    progress.check(stage)
    yield progress.event(stage, 0.0, "preparing the input")
    t0 = time.perf_counter()
    inp = prepare_segmentation(case.stack(model.prep.channels), model.prep)
    windows = model.iter_probabilities(inp.array)
    try:
        while True:
            try:
                done, total = next(windows)
            except StopIteration as stop:
                probs = stop.value
                break
            # Report ~ at the end of each window; 0.9 leaves room for mapping back.
            yield progress.event(stage, 0.9 * done / total, f"window {done}/{total}")
            progress.check(stage)
    finally:
        windows.close()
    spec = model.spec
    probs_case = inp.grid_map.inverse(probs, fill=0.0, order=1)
    result.labels = lab.from_region_channels(probs_case > spec.threshold, spec.regions)
    result.labels.flags.writeable = False
    probs_case.flags.writeable = False
    result.seg_probabilities = probs_case
    result.seg_channels = tuple(spec.regions)
    result.volumes_ml = lab.region_volumes_ml(result.labels, case.grid.voxel_ml)
    result.timings_s[stage] = time.perf_counter() - t0
    yield progress.event(stage, 1.0, "labels ready")


def _classify(case: Case, model: ClassificationModel, progress: _Progress, result: AnalysisResult,
              all_cams: bool) -> Generator[ProgressEvent, None, None]:
    stage = "classification"
    progress.check(stage)
    yield progress.event(stage, 0.0, "preparing the input")
    t0 = time.perf_counter()
    spec = model.spec
    inp = prepare_classification(case.stack(model.prep.channels), model.prep)
    cam = None
    try:
        probs, cam = model.explain(inp.array)  # logits and the predicted class's CAM in one pass
    except Exception as exc:  # noqa: BLE001 - a failing Grad-CAM must not cost the classification
        result.warnings.append(f"Grad-CAM failed ({type(exc).__name__}: {exc}); classification only")
        probs = model.probabilities(inp.array)
    predicted = int(np.argmax(probs))
    result.class_names = tuple(spec.classes)
    result.class_titles = dict(spec.class_titles)
    result.probabilities = {c: float(p) for c, p in zip(spec.classes, probs)}
    result.predicted_class = spec.classes[predicted]
    result.timings_s[stage] = time.perf_counter() - t0
    yield progress.event(stage, 1.0, f"{result.predicted_class} ({probs[predicted]:.2f})")
    if cam is None:
        return

    stage = "grad-cam"
    progress.check(stage)
    t0 = time.perf_counter()
    result.cam_layer = spec.cam_layer
    order = [predicted] + ([k for k in range(len(spec.classes)) if k != predicted] if all_cams else [])
    for i, k in enumerate(order):
        if i > 0:
            progress.check(stage)
            _, cam = model.explain(inp.array, k)
        code = spec.classes[k]
        result.cams[code] = inp.grid_map.inverse(cam, fill=0.0, order=1).astype(np.float32, copy=False)
        result.cams[code].flags.writeable = False
        if not np.any(cam):
            result.warnings.append(f"Grad-CAM for class {code} is empty (no positive evidence at {spec.cam_layer})")
        yield progress.event(stage, (i + 1) / len(order), f"class {code}")
    result.timings_s[stage] = time.perf_counter() - t0


def run_to_completion(gen: Generator[ProgressEvent, None, AnalysisResult],
                      on_progress=None) -> AnalysisResult:
    """Iterate a pipeline generator to its end and return its result (for scripts and tests).

    Args:
        gen: what :func:`analyse` returned.
        on_progress: called with each event, if given.
    """
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)
