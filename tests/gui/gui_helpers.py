"""Test doubles for the GUI tests: small synthetic cases and a stand-in analysis job.

The stand-in job is a plain Python generator with the pipeline's contract (yields
:class:`braingui.results.ProgressEvent`, returns :class:`braingui.results.AnalysisResult`); its
segmentation is the case's own label map and its "Grad-CAM" a smooth blob on the tumour. It tests the
worker and the window, not the models.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from braingui.results import AnalysisResult, ModelInfo, ProgressEvent

SMALL_SHAPE = (48, 56, 40)
"""Grid of the small phantom case (x, y, z), deliberately non-cubic so a swapped axis shows."""
SMALL_SPACING = (5.0, 240 / 56, 155 / 40)


def write_small_case(folder: Path, seed: int = 0) -> Path:
    """Write a small synthetic BraTS-style case (LPS on disk, with labels) into ``folder``."""
    from braingui.phantom import write_case

    write_case(folder, case_id="SYNTHETIC_gui_test", shape=SMALL_SHAPE, spacing=SMALL_SPACING, seed=seed)
    return folder


def blob_cam(labels: np.ndarray, sigma_vox: float = 6.0) -> np.ndarray:
    """A smooth [0, 1] float32 map peaking at the tumour's centroid (or the volume centre)."""
    idx = np.argwhere(labels > 0)
    centre = idx.mean(axis=0) if len(idx) else (np.array(labels.shape) - 1) / 2.0
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in labels.shape], indexing="ij")
    d2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    cam = np.exp(-d2 / (2 * sigma_vox ** 2)).astype(np.float32)
    return cam / cam.max()


def fake_explanation(case, labels: np.ndarray, cam: np.ndarray, code: str, level: str = "full",
                     method: str = "gradcam", layer: str = "features.denseblock1") -> dict:
    """``AnalysisResult.explanation`` of a stand-in map: its real localisation numbers (against ``labels`` and
    the case's own label map) and made-up faithfulness checks (``level="quick"``: no deletion / randomisation)."""
    from braingui.explanation import brain_mask, localisation

    brain = brain_mask(np.stack([case.images[m] for m in sorted(case.images)]))
    out = {"method": method, "layer": layer, "class": code, **_five(localisation(cam, labels > 0, brain)),
           "reference": _five(localisation(cam, case.labels > 0, brain)) if case.labels is not None else None,
           "tumour_occlusion": {"class": "A", "probabilities": {"A": 0.81, "O": 0.09, "G": 0.1}},
           "modality_ablation": {"flair": -0.38, "t1": 0.01, "t1ce": -0.12, "t2": -0.05},
           "deletion": None, "randomisation": None, "level": level}
    if level == "full":
        out.update(deletion={"map_auc": 0.412, "random_auc": 0.655}, randomisation={"spearman": 0.21, "flag": False})
    return out


def _five(loc) -> dict:
    d = loc.as_dict()
    return {k: d[k] for k in ("mass_in_wt", "wt_fraction_of_brain", "enrichment", "mass_outside_brain",
                              "peak_in_wt", "peak_in_brain")}


def fake_result(case, predicted: str = "G", demo: bool = True, explanation: str | None = None) -> AnalysisResult:
    """An ``AnalysisResult`` built from the case's labels (what the stand-in job returns); ``explanation``:
    the level (``"quick"`` / ``"full"``) of its :func:`fake_explanation` (``None``: none)."""
    from braingui.labels import region_volumes_ml

    labels = np.array(case.labels if case.labels is not None else np.zeros(case.grid.shape, np.uint8))
    probs = {"A": 0.1, "O": 0.2, "G": 0.7} if predicted == "G" else {"A": 0.6, "O": 0.3, "G": 0.1}
    info = ModelInfo("stand-in", "segmentation", "/nowhere", "0" * 64, demo,
                     {"intended_use": "tests only", "training_data": "none"})
    cam = blob_cam(labels)
    result = AnalysisResult(
        case_id=case.case_id, labels=labels, class_names=("A", "O", "G"),
        class_titles={"A": "astrocytoma", "O": "oligodendroglioma", "G": "glioblastoma"},
        probabilities=probs, predicted_class=predicted, cams={predicted: cam},
        cam_layer="features.denseblock1", volumes_ml=region_volumes_ml(labels, case.grid.voxel_ml),
        timings_s={"segmentation": 0.01, "classification": 0.01}, models=[info], device="cpu (stand-in)")
    result.explanation = fake_explanation(case, labels, cam, predicted, explanation) if explanation else None
    return result


def fake_analysis(case, steps: int = 3, delay_s: float = 0.0, fail: Exception | None = None,
                  hold: threading.Event | None = None, started: threading.Event | None = None,
                  explanation: str | None = "full"):
    """A job factory with the pipeline's contract.

    Args:
        case: the case to "analyse".
        steps: progress events before the result.
        delay_s: sleep per step.
        fail: raise this after the first step.
        hold: if given, keep yielding (every 10 ms) until it is set or the job is cancelled.
        started: set when the job starts running (in the worker thread).
        explanation: the level of the result's explanation (:func:`fake_result`).
    """

    def job(cancel: threading.Event):
        t0 = time.perf_counter()
        if started is not None:
            started.set()
        stages = ("load models", "segmentation", "classification", "grad-cam")
        for i in range(steps):
            yield ProgressEvent(stages[i % len(stages)], i / steps, time.perf_counter() - t0, f"step {i + 1}/{steps}")
            if fail is not None:
                raise fail
            if delay_s:
                time.sleep(delay_s)
        while hold is not None and not hold.is_set() and not cancel.is_set():
            time.sleep(0.01)
            yield ProgressEvent("segmentation", 0.5, time.perf_counter() - t0, "waiting")
        yield ProgressEvent("done", 1.0, time.perf_counter() - t0)
        return fake_result(case, explanation=explanation)

    return job


# ----- pytest fixtures (import them into a test module by name)
import pytest  # noqa: E402


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Redirect the platformdirs folders (XDG_*) into the test's temp folder; returns it."""
    home = tmp_path / "xdg"
    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    return home


@pytest.fixture(scope="session")
def small_case_dir(tmp_path_factory) -> Path:
    """A small synthetic case folder, written once per test session."""
    return write_small_case(tmp_path_factory.mktemp("small_case") / "SYNTHETIC_gui_test")


def make_window(qtbot, analysis_factory=None, auto_analyse: bool = False):
    """A main window with throw-away settings and the stand-in analysis (registered with qtbot)."""
    from braingui.ui.main_window import MainWindow
    from braingui.ui.settings import Settings

    settings = Settings(auto_analyse=auto_analyse)
    win = MainWindow(settings, analysis_factory=analysis_factory or (lambda case: fake_analysis(case)))
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    return win


def open_and_wait(qtbot, win, folder, timeout_ms: int = 10000):
    """Open a case and wait until it is on screen; returns the case."""
    with qtbot.waitSignal(win.case_loaded, timeout=timeout_ms) as blocker:
        win.open_case(folder)
    return blocker.args[0]


def analysed_window(qtbot, folder, timeout_ms: int = 10000):
    """A window (:func:`make_window`) with ``folder`` open and its (stand-in) analysis done."""
    win = make_window(qtbot)
    open_and_wait(qtbot, win, folder)
    with qtbot.waitSignal(win.analysis_done, timeout=timeout_ms):
        win.run_analysis()
    return win


# ----- heat maps on demand (braingui.ui.cam_requests)
@dataclass(frozen=True)
class FakeClassMap:
    """What :func:`braingui.inference.class_maps.class_map` yields and returns (the same fields, no torch)."""

    code: str
    method: str
    layer: str
    cam: np.ndarray
    explanation: dict | None


def shifted_cam(labels: np.ndarray, code: str) -> np.ndarray:
    """A stand-in map of class ``code``: :func:`blob_cam` moved along x, a different shift per class."""
    return np.roll(blob_cam(labels), 4 * "AOG".index(code) - 8, axis=0)


def fake_cam_factory(calls: list | None = None, hold: threading.Event | None = None):
    """A stand-in for :func:`braingui.ui.jobs.cam_job`: ``(case, result, code, options) -> job factory``.

    The job yields a progress event, the quick :class:`FakeClassMap` and returns the full one (its
    explanation from :func:`fake_explanation`); ``calls`` collects ``(code, options)`` of each job made;
    with ``hold``, the job waits (yielding every 10 ms) until it is set or the job is cancelled.
    """

    def factory(case, result, code, options):
        if calls is not None:
            calls.append((code, dict(options)))

        def job(cancel: threading.Event):
            yield ProgressEvent("grad-cam", 0.1, 0.0, f"class {code}")
            while hold is not None and not hold.is_set() and not cancel.is_set():
                time.sleep(0.01)
                yield ProgressEvent("grad-cam", 0.2, 0.0, "waiting")
            cam = shifted_cam(result.labels, code)
            method, layer = options["method"], options["layer"]
            yield FakeClassMap(code, method, layer, cam, fake_explanation(case, result.labels, cam, code, "quick",
                                                                          method, layer))
            return FakeClassMap(code, method, layer, cam, fake_explanation(case, result.labels, cam, code, "full",
                                                                           method, layer))

        return job

    return factory
