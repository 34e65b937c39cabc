"""One class's heat map and its explanation, on demand: the window's other classes, methods and layers.

The analysis (:mod:`braingui.inference.pipeline`) explains the predicted class with the manifest's method
and layer. The window asks for more afterwards - the map of another class ("why not A" beside "why G"), or
the same class with another method / layer - and :func:`class_map` computes it the pipeline's way, on the
already loaded classifier, keeping the segmentation:

1. the classifier input of the case (:func:`braingui.preprocess.prepare_classification`), the map of the
   class at ``layer`` with ``method`` (:meth:`ClassificationModel.explain`, one forward + backward), resampled once onto the case grid (:func:`~braingui.inference.pipeline.cam_to_case`) and
   masked to the brain (:func:`~braingui.inference.explainer.display_map`);
2. its localisation on the case grid against the result's whole tumour and the case's own label map
   (:func:`~braingui.inference.explainer.localise`), and the quick checks (tumour occlusion, sequence
   ablation, :class:`~braingui.inference.explainer.Explainer`);
3. with ``level="full"``, the deletion curve and the randomisation check.

The generator yields :class:`~braingui.results.ProgressEvent` objects and, once the quick part is in, the
quick :class:`ClassMap` itself (the window shows the map at once); it returns the final :class:`ClassMap`.
Cancel stops it at the next check or inside a network pass (:mod:`.interrupt`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from braingui import labels as lab
from braingui.errors import BrainguiError
from braingui.explanation import brain_mask
from braingui.inference.explainer import Explainer, display_map, localise
from braingui.inference.interrupt import compute_slot, interruptible, slot_busy
from braingui.inference.pipeline import Cancelled, cam_to_case
from braingui.inference.predictor import ClassificationModel
from braingui.preprocess import prepare_classification
from braingui.results import AnalysisResult, ProgressEvent

STAGE = "grad-cam"


@dataclass(frozen=True)
class ClassMap:
    """One class's map and explanation.

    Attributes:
        code: the class explained.
        method, layer: how the map was made.
        cam: float32 ``(X, Y, Z)`` on the case grid, in [0, 1], zero outside the brain (read-only).
        explanation: the ``"explanation"`` dict of this map (:meth:`Explainer.as_dict`; ``level`` quick or
            full), or ``None`` with ``level="none"``.
    """

    code: str
    method: str
    layer: str
    cam: np.ndarray
    explanation: dict[str, Any] | None

    @property
    def level(self) -> str:
        """``"none"``, ``"quick"`` or ``"full"``."""
        return "none" if self.explanation is None else str(self.explanation.get("level", "quick"))


def class_map(case, model: ClassificationModel, result: AnalysisResult, code: str, method: str, layer: str,
              level: str = "full", cancel: threading.Event | None = None,
              owner: object | None = None) -> Generator[ProgressEvent | ClassMap, None, ClassMap]:
    """Compute one class's map and explanation (see the module docstring).

    Args:
        case: the loaded :class:`braingui.case.Case` the result belongs to.
        model: the loaded classifier that made ``result`` (its classes name ``code``).
        result: the analysis result (its ``labels`` are the whole tumour the map is scored against).
        code: the class to explain.
        method, layer: the map's method (:data:`~braingui.inference.cam_methods.METHODS`) and layer.
        level: ``"none"`` (the map only), ``"quick"`` or ``"full"``.
        cancel: set it to stop.
        owner: whose compute slot to hold (the predictor; ``None``: the model), so this waits for a
            running analysis instead of computing beside it.

    Yields:
        ProgressEvents, and the quick :class:`ClassMap` (level quick) before the slow part.

    Returns:
        The :class:`ClassMap`.

    Raises:
        Cancelled: ``cancel`` was set.
        BrainguiError: unknown class, method or layer (a :class:`~braingui.inference.cam_methods.CamError`).
    """
    t0 = time.perf_counter()
    spec = model.spec
    if code not in spec.classes:
        raise BrainguiError(f"class {code!r} is not one of the classifier's ({', '.join(spec.classes)})")
    method, layer = model.check_cam_choice(method, layer)
    k = spec.classes.index(code)
    current = [STAGE]
    steps = 2 + (2 if level == "full" else 0)

    def event(done: int, message: str) -> ProgressEvent:
        return ProgressEvent(STAGE, done / steps, time.perf_counter() - t0, message)

    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(current[0])

    owner = model if owner is None else owner
    if slot_busy(owner):
        yield event(0, "waiting for the analysis to finish")
    with compute_slot(owner, cancel, lambda: Cancelled(current[0])), \
            interruptible([model.network], cancel, lambda: Cancelled(current[0])):
        yield event(0, f"{method} map of class {code} at {layer}")
        stack = case.stack(model.prep.channels)
        brain = brain_mask(stack)  # the brain on the case grid, as the pipeline's
        inp = prepare_classification(stack, model.prep)
        del stack
        probs, cam = model.explain(inp.array, k, on_input_grid=False, method=method, layer=layer)
        cam_case = cam_to_case(cam, inp.grid_map)
        shown = display_map(cam_case, brain)
        shown.flags.writeable = False
        if level == "none":
            return ClassMap(code, method, layer, shown, None)
        check()
        yield event(1, f"class {code}: occlusion and sequence ablation")
        wt = lab.regions(result.labels)["WT"] if result.labels is not None else None
        reference = lab.regions(case.labels)["WT"] if case.labels is not None else None
        explainer = Explainer(
            model.network, model.tensor(inp.array), method=method, layer=layer, class_index=k,
            classes=spec.classes, class_titles=spec.class_titles, channels=model.prep.channels, probabilities=probs,
            cam=cam, brain=brain_mask(inp.array),
            wt=None if wt is None else inp.grid_map.forward(wt.astype(np.float32)) > 0.5,
            localisation=localise(cam_case, brain, wt),
            reference=None if reference is None else localise(cam_case, brain, reference), has_wt=wt is not None)
        explainer.quick()
        quick = ClassMap(code, method, layer, shown, explainer.as_dict())
        if level != "full":
            return quick
        yield quick
        check()
        current[0] = "explanation"
        yield event(2, f"class {code}: deletion curve")
        explainer.deletion()
        check()
        yield event(3, f"class {code}: sanity check")
        explainer.randomisation()
    return ClassMap(code, method, layer, shown, explainer.as_dict())
