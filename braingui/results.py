"""What an analysis produces, as plain data (numpy, no torch, no Qt), so the GUI and the exporters can
use it without importing the inference stack.

The pipeline (:mod:`braingui.inference.pipeline`) yields :class:`ProgressEvent` objects and returns one
:class:`AnalysisResult`. All volumes are on the case's canonical RAS+ grid (``Case.grid``); the
exporters map them back onto the files' original grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of the pipeline.

    Attributes:
        stage: ``"load models"``, ``"segmentation"``, ``"classification"``, ``"grad-cam"`` or ``"done"``.
        fraction: overall progress in [0, 1].
        elapsed_s: seconds since the pipeline started.
        message: a short human-readable detail (e.g. ``"window 3/8"``).
    """

    stage: str
    fraction: float
    elapsed_s: float
    message: str = ""


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
        cams: class code -> float32 ``(X, Y, Z)`` Grad-CAM in [0, 1] (the predicted class always; every
            class when asked).
        cam_layer: the network layer the CAMs were taken at.
        volumes_ml: ``{"ET", "TC", "WT"}`` volumes of ``labels`` in mL.
        timings_s: stage -> seconds.
        models: the bundles used.
        device: the torch device that ran the networks.
        warnings: anything the user should know (case warnings included).
        software_version: braingui version.
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
    volumes_ml: dict[str, float] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    models: list[ModelInfo] = field(default_factory=list)
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)
    software_version: str = ""

    @property
    def demo_models(self) -> bool:
        """True when any model used is a research demonstration."""
        return any(m.demo for m in self.models)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready part of the result (what ``results.json`` holds; no voxel arrays)."""
        return {
            "case_id": self.case_id,
            "predicted_class": self.predicted_class,
            "predicted_class_title": self.class_titles.get(self.predicted_class or "", None),
            "probabilities": dict(self.probabilities),
            "class_titles": dict(self.class_titles),
            "volumes_ml": {k: round(float(v), 4) for k, v in self.volumes_ml.items()},
            "gradcam": {"layer": self.cam_layer, "classes": sorted(self.cams)},
            "timings_s": {k: round(float(v), 3) for k, v in self.timings_s.items()},
            "models": [{"name": m.name, "task": m.task, "path": m.path, "sha256": m.sha256, "demo": m.demo,
                        "intended_use": m.model_card.get("intended_use")} for m in self.models],
            "device": self.device,
            "warnings": list(self.warnings),
            "software_version": self.software_version,
            "not_for_clinical_use": True,
        }
