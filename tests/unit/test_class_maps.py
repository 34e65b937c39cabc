"""Heat maps on demand (:mod:`braingui.inference.class_maps`, :func:`braingui.ui.jobs.cam_job`) on tiny bundles:
the predicted class's map and explanation equal the pipeline's, another class and another method / layer
come the same way, the quick map first, cancel and bad requests."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from braingui.case import load_case
from braingui.errors import BrainguiError
from braingui.inference.class_maps import ClassMap, class_map
from braingui.inference.manifest import read_bundle
from braingui.inference.pipeline import Cancelled, analyse, run_to_completion
from braingui.inference.predictor import Predictor
from braingui.results import ProgressEvent
from inference_helpers import (make_tiny_classification_bundle, make_tiny_segmentation_bundle,  # noqa: F401
                               single_torch_thread, write_tiny_case)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("class_maps")
    case = load_case(write_tiny_case(root / "case"))
    seg = read_bundle(make_tiny_segmentation_bundle(root / "models" / "seg"))
    cls = read_bundle(make_tiny_classification_bundle(root / "models" / "cls"))
    predictor = Predictor("cpu")
    result = run_to_completion(analyse(case, predictor, seg, cls, explain="full"))
    return {"case": case, "predictor": predictor, "model": predictor.load(cls), "result": result, "cls": cls}


def run(gen):
    """``(what it yielded, what it returned)``."""
    out = []
    while True:
        try:
            out.append(next(gen))
        except StopIteration as stop:
            return out, stop.value


def brain_of(case) -> np.ndarray:
    return np.any([v != 0 for v in case.images.values()], axis=0)


def test_the_predicted_class_comes_out_as_the_pipeline_made_it(world):
    r = world["result"]
    assert r.explanation is not None and r.explanation["level"] == "full"
    yielded, cm = run(class_map(world["case"], world["model"], r, r.predicted_class, r.cam_method, r.cam_layer))
    np.testing.assert_array_equal(cm.cam, r.cams[r.predicted_class])
    assert cm.explanation == r.explanation  # the same numbers, checks and verdict
    quick = [y for y in yielded if isinstance(y, ClassMap)]
    assert len(quick) == 1 and quick[0].level == "quick" and quick[0].explanation["deletion"] is None
    assert all(isinstance(y, (ProgressEvent, ClassMap)) for y in yielded)
    fractions = [y.fraction for y in yielded if isinstance(y, ProgressEvent)]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1


def test_another_class_is_explained_against_the_same_tumour(world):
    r, case = world["result"], world["case"]
    other = next(c for c in r.class_names if c != r.predicted_class)
    _, cm = run(class_map(case, world["model"], r, other, r.cam_method, r.cam_layer))
    e = cm.explanation
    assert (cm.code, e["class"], e["level"]) == (other, other, "full")
    assert cm.cam.shape == case.grid.shape and cm.cam.dtype == np.float32 and not cm.cam.flags.writeable
    assert not cm.cam[~brain_of(case)].any() and cm.cam.max() in (0.0, 1.0)
    np.testing.assert_array_equal(cm.cam, r.cams[other])  # the full run's map of that class, unexplained there
    # the tumour and the occluded input are the class's own business no more than the segmentation is
    assert e["wt_fraction_of_brain"] == r.explanation["wt_fraction_of_brain"]
    assert e["tumour_occlusion"] == r.explanation["tumour_occlusion"]
    assert e["reference"] is not None and set(e["modality_ablation"]) == {"flair", "t1", "t1ce", "t2"}


def test_another_method_and_layer_and_the_map_only(world):
    r, case = world["result"], world["case"]
    _, cm = run(class_map(case, world["model"], r, r.predicted_class, "hirescam", "features.transition1", "none"))
    assert (cm.method, cm.layer, cm.explanation, cm.level) == ("hirescam", "features.transition1", None, "none")
    assert not cm.cam[~brain_of(case)].any() and not np.array_equal(cm.cam, r.cams[r.predicted_class])
    with pytest.raises(BrainguiError, match="unknown CAM layer 'features.nowhere'"):
        run(class_map(case, world["model"], r, "A", "gradcam", "features.nowhere"))
    with pytest.raises(BrainguiError, match="not one of the classifier's"):
        run(class_map(case, world["model"], r, "X", "gradcam", r.cam_layer))


def test_cancel_stops_it(world):
    cancel = threading.Event()
    gen = class_map(world["case"], world["model"], world["result"], "A", "gradcam", "features.denseblock1",
                    cancel=cancel)
    next(gen)
    cancel.set()
    with pytest.raises(Cancelled):
        run(gen)


def test_the_window_job_loads_the_result_s_own_classifier(world):
    from braingui.ui import jobs

    r = world["result"]
    _, cm = run(jobs.cam_job(world["case"], r, "O", {"device": "cpu", "level": "quick"})(threading.Event()))
    assert (cm.code, cm.method, cm.layer, cm.level) == ("O", r.cam_method, r.cam_layer, "quick")
    changed = dataclasses.replace(r, models=[dataclasses.replace(m, sha256="0" * 64) for m in r.models])
    with pytest.raises(BrainguiError, match="changed since the analysis"):
        run(jobs.cam_job(world["case"], changed, "O", {"device": "cpu"})(threading.Event()))
