"""What an analysis produces, as plain data (numpy, no torch, no Qt), so the GUI and the exporters can
use it without importing the inference stack.

The pipeline (:mod:`braingui.inference.pipeline`) yields :class:`ProgressEvent` objects and returns one
:class:`AnalysisResult`. All volumes are on the case's canonical RAS+ grid (``Case.grid``); the
exporters map them back onto the files' original grid.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from braingui.uncertainty import MEASURE as UNCERTAINTY_MEASURE

if TYPE_CHECKING:  # a type only: scipy stays off the import path of this module
    from braingui.measurements import Measurements


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of the pipeline.

    Attributes:
        stage: ``"load models"``, ``"segmentation"``, ``"classification"``, ``"grad-cam"``,
            ``"explanation"`` or ``"done"``.
        fraction: overall progress in [0, 1].
        elapsed_s: seconds since the pipeline started.
        message: a short human-readable detail (e.g. ``"window 3/8"``).
        partial: an early result to show while the run goes on (the segmentation, the class, the map and
            the quick explanation, before the slow part): a :meth:`AnalysisResult.snapshot`, never changed
            afterwards; ``None`` on every other event.
    """

    stage: str
    fraction: float
    elapsed_s: float
    message: str = ""
    partial: AnalysisResult | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ModelInfo:
    """Which model bundle produced a result.

    Attributes:
        name: bundle name.
        task: ``"segmentation"`` or ``"classification"``.
        path: the bundle folder.
        sha256: sha256 of the weights file (checked at load).
        demo: True for research-demonstration models (the app shows a warning next to their results).
        model_card: the manifest's model card (training data, metrics, configuration, intended use).
    """

    name: str
    task: str
    path: str
    sha256: str
    demo: bool
    model_card: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnalysisResult:
    """Everything one pipeline run produced for a case.

    Attributes:
        case_id: the case analysed.
        labels: uint8 ``(X, Y, Z)`` BraTS labels (1 core, 2 edema, 4 enhancing), or ``None`` without a
            segmentation model.
        seg_probabilities: float32 ``(3, X, Y, Z)`` sigmoid outputs, channels named by ``seg_channels``.
        seg_channels: region of each probability channel, e.g. ``("TC", "WT", "ET")``.
        class_names: class codes in output order, e.g. ``("A", "O", "G")``.
        class_titles: code -> readable name (``"A"`` -> ``"astrocytoma"``).
        probabilities: class code -> softmax probability (sum 1), or empty without a classifier.
        predicted_class: the arg-max class code, or ``None``.
        cams: class code -> float32 ``(X, Y, Z)`` class activation map in [0, 1], zero outside the brain
            (voxels non-zero in any sequence) and scaled so that its in-brain maximum is 1 (the predicted
            class always; every class with ``all_cams`` or a full explanation).
        cam_layer: the network layer the maps were taken at.
        cam_method: the map's method (``gradcam``, ``gradcam++``, ``hirescam``, ``hirescam-contrastive``, ``layercam``).
        explanation: how far the predicted class's map deserves trust, as plain JSON types (the
            ``"explanation"`` of results.json: :mod:`braingui.inference.explainer`), or ``None``
            (no classifier, no map, or ``explain="none"``).
        volumes_ml: ``{"ET", "TC", "WT"}`` volumes of ``labels`` in mL.
        timings_s: stage -> seconds.
        models: the bundles used.
        device: the torch device that ran the networks.
        warnings: anything the user should know (case warnings included).
        software_version: braingui version.
        measurements: RANO-style lesion diameters of ``labels`` (:func:`braingui.measurements.measure`),
            or ``None`` without a segmentation.
        tta_views: flipped views averaged by test-time augmentation (1 = a single pass).
        uncertainty: float32 ``(X, Y, Z)`` voxel uncertainty in [0, 0.5] (:mod:`braingui.uncertainty`),
            or ``None`` without test-time augmentation.
        uncertainty_regions: ``{"WT"|"TC"|"ET": {"mean": float, "volume_ml_range": [lo, hi]}}``, or empty.
        quality_flags: ``[{"code", "message"}, ...]`` of :func:`braingui.quality.assess`.
        postprocessing: what :func:`braingui.postprocess.postprocess` did (its thresholds and effects).
    """

    case_id: str
    labels: np.ndarray | None = None
    seg_probabilities: np.ndarray | None = None
    seg_channels: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    class_titles: dict[str, str] = field(default_factory=dict)
    probabilities: dict[str, float] = field(default_factory=dict)
    predicted_class: str | None = None
    cams: dict[str, np.ndarray] = field(default_factory=dict)
    cam_layer: str | None = None
    cam_method: str | None = None
    explanation: dict[str, Any] | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    models: list[ModelInfo] = field(default_factory=list)
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)
    software_version: str = ""
    measurements: Measurements | None = None
    tta_views: int = 1
    uncertainty: np.ndarray | None = None
    uncertainty_regions: dict[str, dict[str, Any]] = field(default_factory=dict)
    quality_flags: list[dict[str, str]] = field(default_factory=list)
    postprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def demo_models(self) -> bool:
        """True when any model used is a research demonstration."""
        return any(m.demo for m in self.models)

    def snapshot(self) -> AnalysisResult:
        """A copy that later changes to this result do not reach (containers copied, arrays shared: the
        pipeline marks its arrays read-only), for handing to another thread while the run goes on."""
        out = copy.copy(self)
        for name in ("class_titles", "probabilities", "cams", "volumes_ml", "timings_s", "uncertainty_regions",
                     "postprocessing"):
            setattr(out, name, dict(getattr(self, name)))
        out.models, out.warnings = list(self.models), list(self.warnings)
        out.quality_flags = [dict(f) for f in self.quality_flags]
        out.explanation = copy.deepcopy(self.explanation)
        return out

    def summary(self) -> dict[str, Any]:
        """The JSON-ready part of the result (what ``results.json`` holds; no voxel arrays)."""
        return {
            "case_id": self.case_id,
            "predicted_class": self.predicted_class,
            "predicted_class_title": self.class_titles.get(self.predicted_class or "", None),
            "probabilities": dict(self.probabilities),
            "class_titles": dict(self.class_titles),
            "volumes_ml": {k: round(float(v), 4) for k, v in self.volumes_ml.items()},
            "gradcam": {"layer": self.cam_layer, "method": self.cam_method, "classes": sorted(self.cams)},
            "timings_s": {k: round(float(v), 3) for k, v in self.timings_s.items()},
            "models": [{"name": m.name, "task": m.task, "path": m.path, "sha256": m.sha256, "demo": m.demo,
                        "intended_use": m.model_card.get("intended_use")} for m in self.models],
            "device": self.device,
            "warnings": list(self.warnings),
            "software_version": self.software_version,
            "measurements": self.measurements.as_dict() if self.measurements is not None else None,
            "segmentation": ({"tta_views": self.tta_views, "uncertainty_measure": UNCERTAINTY_MEASURE,
                              "postprocessing": dict(self.postprocessing)} if self.labels is not None else None),
            "uncertainty": ({r: dict(v) for r, v in self.uncertainty_regions.items()}
                            if self.uncertainty_regions else None),
            "quality": {"flags": [dict(f) for f in self.quality_flags]},
            "explanation": copy.deepcopy(self.explanation),
            "not_for_clinical_use": True,
        }
