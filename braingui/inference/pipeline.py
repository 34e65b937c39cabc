"""The analysis pipeline: a plain generator that yields progress and returns one result (no Qt).

::

    gen = analyse(case, predictor, search.segmentation, search.classification, cancel=event)
    for progress in gen:          # ProgressEvent(stage, fraction, elapsed_s, message)
        report(progress)
    # the result is StopIteration.value; run_to_completion(gen) does this loop for scripts

A GUI worker (a QObject moved to a QThread) iterates it the same way and emits each event; setting the
``threading.Event`` from the GUI thread stops the run at the next check — between stages, between
sliding windows and between Grad-CAM classes, and inside a network pass at the next layer
(:mod:`.interrupt`) — with :class:`Cancelled`. Runs that share a predictor compute one at a time.

Stages (paper IV, Fig. 2): ``load models`` (once per :class:`Predictor`), ``segmentation`` (z-score,
crop, windows of the SegResNet, sigmoid — averaged over ``tta`` flipped views, :mod:`.tta` — back onto
the case grid, > threshold per region, BraTS labels, post-processing (:mod:`braingui.postprocess`), the
uncertainty map and summary (:mod:`braingui.uncertainty`) and the quality flags (:mod:`braingui.quality`)),
``classification`` (z-score, background crop, resize, DenseNet softmax; the class activation map of the
predicted class, by ``cam_method`` at ``cam_layer`` (default: the manifest's), comes from the same
forward + backward), ``grad-cam`` (the map resampled once, from its layer's grid straight onto the case
grid, shown and scored inside the brain; then the quick explanation, :mod:`.explainer`: localisation
against the predicted and the reference whole tumour, tumour occlusion and sequence ablation in one
batched forward), ``explanation`` (the slow part: the deletion curve, the model-randomisation sanity
check, the maps of the other classes), ``done``. Either model may be missing; that part is skipped with a
warning.

``explain`` chooses how much is explained: ``"none"`` (the map only), ``"quick"`` or ``"full"`` (default).
When a slow part follows, the last ``grad-cam`` event carries an early result
(``ProgressEvent.partial``, a :meth:`~braingui.results.AnalysisResult.snapshot`): the segmentation, the
class, the map and the quick explanation, for a window to show while the slow part runs; scripts
ignore it and take the final result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import replace

import numpy as np

from braingui import __version__
from braingui import labels as lab
from braingui import postprocess as pp
from braingui import quality
from braingui import uncertainty as unc
from braingui.case import Case
from braingui.errors import BrainguiError
from braingui.explanation import brain_mask
from braingui.geometry import GridMap, resize_linear
from braingui.inference.cam_methods import check_layer, check_method
from braingui.inference.explainer import Explainer, check_level, display_map, localise
from braingui.inference.interrupt import compute_slot, interruptible, slot_busy
from braingui.inference.manifest import Bundle
from braingui.inference.predictor import ClassificationModel, Predictor, SegmentationModel
from braingui.inference.tta import DEFAULT_TTA, iter_tta, nested_counts
from braingui.intensity_stats import intensity_statistics
from braingui.measurements import measure
from braingui.preprocess import prepare_classification, prepare_segmentation, zscore_stack
from braingui.results import AnalysisResult, ProgressEvent

STAGES = ("load models", "segmentation", "classification", "grad-cam", "explanation", "done")
_WEIGHTS = {"load models": 0.05, "segmentation": 0.6, "classification": 0.2, "grad-cam": 0.15, "explanation": 0.3}


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
        self.current = stages[0]  # the stage of the latest event (where a cancel inside a network pass stopped)
        self.total, self.offsets, acc = total, {}, 0.0
        for s in stages:
            self.offsets[s] = (acc, _WEIGHTS[s])  # (acc + w) / total is the next stage's start, to the bit
            acc += _WEIGHTS[s]

    def event(self, stage: str, within: float = 0.0, message: str = "") -> ProgressEvent:
        self.current = stage
        if stage == "done":
            fraction = 1.0
        else:
            offset, width = self.offsets[stage]
            fraction = min(1.0, (offset + width * min(max(within, 0.0), 1.0)) / self.total)
        return ProgressEvent(stage, fraction, time.perf_counter() - self.start, message)

    def check(self, stage: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(stage)


def analyse(case: Case, predictor: Predictor, segmentation: Bundle | None, classification: Bundle | None, *,
            all_cams: bool = False, cancel: threading.Event | None = None,
            notes: list[str] | tuple[str, ...] = (), tta: int | None = None,
            postprocess: pp.PostProcessing | None = None, explain: str = "full", cam_method: str | None = None,
            cam_layer: str | None = None) -> Generator[ProgressEvent, None, AnalysisResult]:
    """Analyse one case (see the module docstring).

    Args:
        case: the loaded case.
        predictor: loads (once) and runs the networks.
        segmentation, classification: the bundles to use; ``None`` skips that part with a warning.
        all_cams: Grad-CAM for every class, not only the predicted one.
        cancel: set it to stop the run at the next check.
        notes: extra warnings to carry into the result (e.g. from the bundle search).
        tta: flipped views averaged by the segmentation (1, 2, 4 or 8; ``None``: :data:`.tta.DEFAULT_TTA`).
        postprocess: post-processing thresholds (``None``: :data:`braingui.postprocess.DEFAULT`;
            :data:`braingui.postprocess.OFF` for none).
        explain: ``"none"``, ``"quick"`` or ``"full"`` (see the module docstring).
        cam_method: the map's method (:data:`.cam_methods.METHODS`; ``None``: the manifest's).
        cam_layer: the map's layer (:func:`.cam_methods.cam_layers` of the classifier; ``None``: the
            manifest's). A given method or layer that is not valid stops the run before any computing.

    Yields:
        :class:`~braingui.results.ProgressEvent` objects with non-decreasing ``fraction``; with a slow part
        to follow, one of them carries the early result (``partial``).

    Returns:
        The :class:`~braingui.results.AnalysisResult` (volumes on the case's canonical grid).

    Raises:
        Cancelled: ``cancel`` was set.
        BrainguiError: no model given, a bundle that cannot be loaded, an unknown ``explain`` level.
        CamError: an unknown ``cam_method`` or ``cam_layer`` (one line naming the valid ones).
    """
    if segmentation is None and classification is None:
        raise BrainguiError("nothing to do: no segmentation and no classification model")
    check_level(explain)
    if cam_method is not None:
        check_method(cam_method)
    slow = explain == "full" or all_cams
    stages = ["load models"] + (["segmentation"] if segmentation else []) + (
        ["classification", "grad-cam"] + (["explanation"] if slow else []) if classification else [])
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
    if cls_model is not None and cam_layer is not None:
        check_layer(cls_model.network, cam_layer)  # before the segmentation: a typo costs nothing

    shared: dict = {}  # the z-scored stack, made once when both networks read the same sequences
    if slot_busy(predictor):
        yield progress.event(stage, 1.0, "waiting for the previous analysis to stop")
    with compute_slot(predictor, cancel, lambda: Cancelled(progress.current)), \
            interruptible([n for m in models for n in m.cancel_modules], cancel, lambda: Cancelled(progress.current)):
        if seg_model is not None:
            yield from _segment(case, seg_model, progress, result, DEFAULT_TTA if tta is None else tta,
                                pp.DEFAULT if postprocess is None else postprocess, shared)
            if seg_model.backend != "torch":  # what ran it: e.g. "cpu (segmentation: openvino)"
                result.device = f"{result.device} (segmentation: {seg_model.backend})"
            if seg_model.backend_note:
                result.warnings.append(seg_model.backend_note)
        if cls_model is not None:
            yield from _classify(case, cls_model, progress, result, all_cams, explain, cam_method, cam_layer, shared)
    shared.clear()
    result.timings_s["total"] = time.perf_counter() - progress.start
    yield progress.event("done", 1.0, "finished")
    return result


def _normed(shared: dict | None, channels: tuple[str, ...], stack: np.ndarray) -> np.ndarray | None:
    """The z-scored ``stack`` of ``channels``, computed once per analysis and kept in ``shared``."""
    if shared is None:
        return None
    key = tuple(channels)
    if key not in shared:
        shared[key] = zscore_stack(stack)
    return shared[key]


def _segment(case: Case, model: SegmentationModel, progress: _Progress, result: AnalysisResult, tta: int,
             post: pp.PostProcessing, shared: dict | None = None) -> Generator[ProgressEvent, None, None]:
    stage = "segmentation"
    progress.check(stage)
    yield progress.event(stage, 0.0, "preparing the input")
    t0 = time.perf_counter()
    stack = case.stack(model.prep.channels)
    inp = prepare_segmentation(stack, model.prep, _normed(shared, model.prep.channels, stack))
    try:
        windows = iter_tta(model, inp.array, tta)
    except ValueError as exc:
        raise BrainguiError(str(exc)) from None
    try:
        while True:
            try:
                done, total = next(windows)
            except StopIteration as stop:
                out = stop.value
                break
            # Report ~ at the end of each window (counted over all flipped views); 0.9 leaves room for
            # mapping back.
            yield progress.event(stage, 0.9 * done / total, f"window {done}/{total}")
            progress.check(stage)
    finally:
        windows.close()
    spec, grid = model.spec, case.grid
    probs_case = inp.grid_map.inverse(out.mean, fill=0.0, order=1)
    above = probs_case > spec.threshold
    labels, result.postprocessing = pp.postprocess(lab.from_region_channels(above, spec.regions), grid.voxel_ml, post)
    result.labels = labels
    result.labels.flags.writeable = False
    probs_case.flags.writeable = False
    result.seg_probabilities = probs_case
    result.seg_channels = tuple(spec.regions)
    result.volumes_ml = lab.region_volumes_ml(result.labels, grid.voxel_ml)
    result.measurements = measure(result.labels, grid.affine)  # RANO-style diameters
    result.tta_views = out.members
    if out.members > 1:
        net_ml = grid.voxel_ml * float(np.prod(inp.grid_map.scale))
        case_ml = dict(zip(spec.regions, (nested_counts(above, tuple(spec.regions)) * grid.voxel_ml).tolist()))
        result.uncertainty_regions = unc.region_summary(out.mean, out.std, out.member_voxels, tuple(spec.regions),
                                                        spec.threshold, net_ml, case_ml)
        result.uncertainty = inp.grid_map.inverse(unc.voxel_map(out.std), fill=0.0, order=1).astype(np.float32)
        result.uncertainty.flags.writeable = False
    yield progress.event(stage, 0.95, "quality checks")
    progress.check(stage)
    reference = model.bundle.manifest.input_statistics
    stats = intensity_statistics(case.images, tuple(spec.channels)) if reference is not None else None
    brain = (stack != 0).any(axis=0)  # voxels non-zero in any sequence: the brain of zscore_nonzero
    flags = quality.assess(result.labels, brain, grid.spacing, grid.voxel_ml, channels=above,
                           regions=tuple(spec.regions), volumes_ml=result.volumes_ml,
                           summary=result.uncertainty_regions or None, members=out.members, stats=stats,
                           reference=reference)
    result.quality_flags = [f.as_dict() for f in flags]
    result.timings_s[stage] = time.perf_counter() - t0
    yield progress.event(stage, 1.0, "labels ready")


def _classify(case: Case, model: ClassificationModel, progress: _Progress, result: AnalysisResult,
              all_cams: bool, explain: str, cam_method: str | None,
              cam_layer: str | None, shared: dict | None = None) -> Generator[ProgressEvent, None, None]:
    stage = "classification"
    progress.check(stage)
    yield progress.event(stage, 0.0, "preparing the input")
    t0 = time.perf_counter()
    spec = model.spec
    stack = case.stack(model.prep.channels)
    brain = brain_mask(stack)  # the brain on the case grid: voxels non-zero in any sequence
    inp = prepare_classification(stack, model.prep, _normed(shared, model.prep.channels, stack))
    del stack
    method, layer = model.cam_choice(cam_method, cam_layer)
    cam = None
    try:
        # logits and the predicted class's map (on its layer's grid) in one pass
        probs, cam = model.explain(inp.array, on_input_grid=False, method=method, layer=layer)
    except Cancelled:
        raise
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
    result.cam_layer, result.cam_method = layer, method
    raw = cam_to_case(cam, inp.grid_map)
    _store_map(result, spec.classes[predicted], raw, brain, layer, warn=True)
    result.timings_s[stage] = time.perf_counter() - t0
    others = [k for k in range(len(spec.classes)) if k != predicted] if (all_cams or explain == "full") else []
    explainer = None
    if explain != "none":
        yield progress.event(stage, 0.5, f"class {result.predicted_class}; scoring the map")
        progress.check(stage)
        t0 = time.perf_counter()
        explainer = _quick_explanation(case, model, result, inp, probs, predicted, cam, raw, brain, method, layer)
        result.timings_s["explanation_quick"] = time.perf_counter() - t0
    del raw
    if not others and (explainer is None or explain != "full"):
        yield progress.event(stage, 1.0, f"class {result.predicted_class}")
        return
    yield replace(progress.event(stage, 1.0, "first results ready"), partial=result.snapshot())

    stage = "explanation"
    t0 = time.perf_counter()
    steps = (["deletion", "randomisation"] if explainer is not None and explain == "full" else []) + (
        ["classes"] if others else [])
    what = {"deletion": "deletion curve", "randomisation": "sanity check (randomised model)",
            "classes": "maps of the other classes"}
    for i, step in enumerate(steps):
        progress.check(stage)
        yield progress.event(stage, i / len(steps), what[step])
        if step == "classes":
            maps = (explainer.class_maps(others) if explainer is not None else
                    [model.explain(inp.array, k, on_input_grid=False, method=method, layer=layer)[1] for k in others])
            for k, other in zip(others, maps):
                _store_map(result, spec.classes[k], cam_to_case(other, inp.grid_map), brain, layer, warn=all_cams)
            continue
        try:
            explainer.deletion() if step == "deletion" else explainer.randomisation()
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing check must not cost the results
            result.warnings.append(f"explanation: the {what[step]} failed ({type(exc).__name__}: {exc})")
    if explainer is not None:
        result.explanation = explainer.as_dict()
    result.timings_s[stage] = time.perf_counter() - t0
    yield progress.event(stage, 1.0, "explained")


def _store_map(result: AnalysisResult, code: str, cam_case: np.ndarray, brain: np.ndarray, layer: str,
               warn: bool) -> None:
    """Put the map of class ``code`` into ``result.cams`` as shown (:func:`.explainer.display_map`, read-only);
    with ``warn``, say when it is empty or has no heat inside the brain."""
    shown = display_map(cam_case, brain)
    shown.flags.writeable = False
    result.cams[code] = shown
    if not warn:
        return
    if not np.any(cam_case):
        result.warnings.append(f"Grad-CAM for class {code} is empty (no positive evidence at {layer})")
    elif not np.any(shown):
        result.warnings.append(f"Grad-CAM for class {code}: all of its heat lies outside the brain (at {layer})")


def _quick_explanation(case: Case, model: ClassificationModel, result: AnalysisResult, inp, probs: np.ndarray,
                       predicted: int, cam: np.ndarray, cam_case: np.ndarray, brain: np.ndarray, method: str,
                       layer: str) -> Explainer | None:
    """Localisation on the case grid, occlusion and ablation on the classifier grid; sets
    ``result.explanation`` (level ``quick``). ``None`` (and a warning) when it fails."""
    try:
        wt = lab.regions(result.labels)["WT"] if result.labels is not None else None
        reference = lab.regions(case.labels)["WT"] if case.labels is not None else None
        wt_input = None if wt is None else inp.grid_map.forward(wt.astype(np.float32)) > 0.5
        explainer = Explainer(model.network, model.tensor(inp.array), method=method, layer=layer,
                              class_index=predicted, classes=model.spec.classes,
                              class_titles=model.spec.class_titles, channels=model.prep.channels,
                              probabilities=probs, cam=cam, brain=brain_mask(inp.array), wt=wt_input,
                              localisation=localise(cam_case, brain, wt),
                              reference=None if reference is None else localise(cam_case, brain, reference),
                              has_wt=wt is not None)
        explainer.quick()
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing explanation must not cost the results
        result.warnings.append(f"explanation failed ({type(exc).__name__}: {exc}); the map is shown unscored")
        return None
    result.explanation = explainer.as_dict()
    return explainer


def cam_to_case(cam: np.ndarray, grid_map: GridMap) -> np.ndarray:
    """A Grad-CAM on its layer's grid -> the case grid, in one trilinear resampling.

    The layer's grid spans the network input's field of view, which is ``grid_map.box`` on the case
    grid; the map is resized (voxel centres aligned, ``align_corners=False``) straight to the box and
    pasted into the case grid, zero outside the box.

    Args:
        cam: float32 ``(x, y, z)`` in [0, 1] on the layer's grid.
        grid_map: the classification input's map (case grid <-> network grid).

    Returns:
        float32 ``(X, Y, Z)`` on the case grid (``grid_map.shape``).
    """
    box = grid_map.box
    return box.paste(resize_linear(cam, box.size), grid_map.shape, 0.0).astype(np.float32, copy=False)


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
