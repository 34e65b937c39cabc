"""The explanation inside the analysis: results.json's "explanation", --explain levels, --cam-method /
--cam-layer, the early (partial) result, the map shown inside the brain, cancel in the slow part."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest

from braingui.app.cli import CAM_METHOD_CHOICES, EXPLAIN_CHOICES, main
from braingui.case import load_case
from braingui.errors import BrainguiError
from braingui.inference.bundle import write_bundle
from braingui.inference.cam_methods import METHODS, CamError
from braingui.inference.explainer import LEVELS, LOCALISATION_KEYS, REFERENCE_KEYS
from braingui.inference.manifest import BundleError, read_bundle
from braingui.inference.pipeline import Cancelled, analyse, cam_to_case, run_to_completion
from braingui.inference.predictor import Predictor
from braingui.preprocess import prepare_classification
from inference_helpers import (classification_manifest, make_models_dir, single_torch_thread,  # noqa: F401
                               tiny_densenet, write_tiny_case)

EXPLANATION_KEYS = {"method", "layer", "class", *LOCALISATION_KEYS, "reference", "tumour_occlusion",
                    "modality_ablation", "deletion", "randomisation", "verdict", "level"}
FRACTIONS = ("mass_in_wt", "wt_fraction_of_brain", "mass_outside_brain")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    models = make_models_dir(root / "models")
    case_dir = write_tiny_case(root / "case")
    case = load_case(case_dir)
    seg, cls = read_bundle(models / "tiny-segresnet"), read_bundle(models / "tiny-densenet")
    predictor = Predictor("cpu")
    events = []
    gen = analyse(case, predictor, seg, cls, explain="full")
    result = run_to_completion(gen, events.append)
    return {"root": root, "models": models, "case_dir": case_dir, "case": case, "seg": seg, "cls": cls,
            "predictor": predictor, "events": events, "result": result}


def _brain(case) -> np.ndarray:
    return np.any(case.stack() != 0, axis=0)


def _check_localisation(block: dict, keys) -> None:
    for key in keys:
        value = block[key]
        if key in FRACTIONS:
            assert 0.0 <= value <= 1.0, (key, value)
        elif key == "enrichment":
            assert value >= 0.0
        else:
            assert isinstance(value, bool), key


def test_results_json_explanation_has_every_key_in_range(world, tmp_path):
    r = world["result"]
    assert main(["--no-gui", "--case", str(world["case_dir"]), "--models", str(world["models"]),
                 "--out", str(tmp_path / "out"), "--tta", "1"]) == 0
    ex = json.loads((tmp_path / "out" / "results.json").read_text())["explanation"]
    assert set(ex) == EXPLANATION_KEYS and ex["level"] == "full"
    assert ex["method"] == "gradcam" and ex["layer"] == "features.denseblock1" and ex["class"] == r.predicted_class
    _check_localisation(ex, LOCALISATION_KEYS)
    assert set(ex["reference"]) == set(REFERENCE_KEYS)  # the tiny case has its own label map
    _check_localisation(ex["reference"], REFERENCE_KEYS)
    occ = ex["tumour_occlusion"]
    assert occ["class"] in r.class_names and set(occ["probabilities"]) == set(r.class_names)
    assert sum(occ["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert set(ex["modality_ablation"]) == {"flair", "t1", "t1ce", "t2"}
    assert all(-1.0 <= d <= 1.0 for d in ex["modality_ablation"].values())
    assert set(ex["deletion"]) == {"map_auc", "random_auc"}
    assert all(0.0 <= v <= 1.0 for v in ex["deletion"].values())
    assert set(ex["randomisation"]) == {"spearman", "flag"} and isinstance(ex["randomisation"]["flag"], bool)
    assert -1.0 <= ex["randomisation"]["spearman"] <= 1.0
    assert ex["randomisation"]["flag"] == (ex["randomisation"]["spearman"] > 0.5)
    assert isinstance(ex["verdict"], str) and ex["verdict"].strip() and "Sanity check" in ex["verdict"]


def test_explain_levels_give_none_quick_only_or_all_keys(world):
    case, p, seg, cls = world["case"], world["predictor"], world["seg"], world["cls"]
    none = run_to_completion(analyse(case, p, seg, cls, explain="none", tta=1))
    assert none.explanation is None and none.summary()["explanation"] is None
    assert list(none.cams) == [none.predicted_class]  # the map is still made and shown
    quick = run_to_completion(analyse(case, p, seg, cls, explain="quick", tta=1)).summary()["explanation"]
    assert set(quick) == EXPLANATION_KEYS and quick["level"] == "quick"
    assert quick["deletion"] is None and quick["randomisation"] is None
    assert quick["tumour_occlusion"] is not None and len(quick["modality_ablation"]) == 4
    assert "Sanity check" not in quick["verdict"] and quick["verdict"].strip()
    full = world["result"].explanation
    assert full["level"] == "full" and full["deletion"] is not None and full["randomisation"] is not None
    for key in ("mass_in_wt", "enrichment", "tumour_occlusion", "modality_ablation"):  # the same quick numbers
        assert quick[key] == full[key]
    assert sorted(world["result"].cams) == sorted(world["result"].class_names)  # other classes in the slow part
    with pytest.raises(BrainguiError, match="none, quick, full"):
        next(analyse(case, p, seg, cls, explain="most"))
    assert EXPLAIN_CHOICES == LEVELS and CAM_METHOD_CHOICES == METHODS  # the CLI's torch-free copies


def test_the_partial_result_arrives_before_the_final_one(world):
    events, final = world["events"], world["result"]
    with_partial = [i for i, e in enumerate(events) if e.partial is not None]
    assert len(with_partial) == 1
    i = with_partial[0]
    assert events[i].stage == "grad-cam" and events[-1].stage == "done" and i < len(events) - 2
    assert {"explanation"} <= {e.stage for e in events[i + 1:]}  # the slow part follows it
    early = events[i].partial
    assert early is not final and early.labels is not None and early.predicted_class == final.predicted_class
    assert early.explanation["level"] == "quick" and early.explanation["deletion"] is None
    assert list(early.cams) == [final.predicted_class]  # the slow part did not reach into the early copy
    np.testing.assert_array_equal(early.cams[final.predicted_class], final.cams[final.predicted_class])
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)


def test_no_partial_without_a_slow_part(world):
    events = []
    run_to_completion(analyse(world["case"], world["predictor"], None, world["cls"], explain="quick"), events.append)
    assert not any(e.partial is not None for e in events) and "explanation" not in {e.stage for e in events}


def test_the_map_is_zero_outside_the_brain_and_its_mass_there_is_reported(world):
    case, r = world["case"], world["result"]
    brain = _brain(case)
    assert (~brain).sum() > 0
    for cam in r.cams.values():
        assert cam.dtype == np.float32 and cam.shape == case.grid.shape and not cam.flags.writeable
        assert not cam[~brain].any()
        assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)  # scaled to its in-brain maximum
    # the same map, computed by hand before the mask: its mass outside the brain is what is reported
    model = world["predictor"].load(world["cls"])
    inp = prepare_classification(case.stack(model.prep.channels), model.prep)
    _, native = model.explain(inp.array, r.class_names.index(r.predicted_class), on_input_grid=False)
    raw = cam_to_case(native, inp.grid_map).astype(np.float64)
    outside = float(raw[~brain].sum() / raw.sum())
    assert outside > 0.01  # the tiny phantom's map spills out of the brain: not dropped silently
    assert r.explanation["mass_outside_brain"] == pytest.approx(outside, abs=1e-5)
    wt = case.labels > 0  # the reference is the phantom's own label map
    assert r.explanation["reference"]["mass_in_wt"] == pytest.approx(raw[wt & brain].sum() / raw[brain].sum(),
                                                                     abs=1e-5)
    assert r.explanation["reference"]["wt_fraction_of_brain"] == pytest.approx((wt & brain).sum() / brain.sum(),
                                                                               abs=1e-6)


def test_without_a_segmentation_the_tumour_numbers_are_null(world):
    r = run_to_completion(analyse(world["case"], world["predictor"], None, world["cls"], explain="quick"))
    ex = r.explanation
    assert ex["mass_in_wt"] is None and ex["wt_fraction_of_brain"] is None and ex["enrichment"] is None
    assert ex["peak_in_wt"] is None and ex["tumour_occlusion"] is None
    assert 0.0 <= ex["mass_outside_brain"] <= 1.0 and len(ex["modality_ablation"]) == 4
    assert ex["reference"] is not None and "No tumour was segmented" in ex["verdict"]


def test_cam_method_and_layer_options_and_the_manifest_default(world, tmp_path):
    case, p = world["case"], world["predictor"]
    r = run_to_completion(analyse(case, p, None, world["cls"], explain="quick", cam_method="hirescam",
                                  cam_layer="features.transition1"))
    assert r.cam_method == "hirescam" and r.cam_layer == "features.transition1"
    assert (r.explanation["method"], r.explanation["layer"]) == ("hirescam", "features.transition1")
    assert r.summary()["gradcam"]["method"] == "hirescam"
    manifest = classification_manifest("tiny-layercam")
    manifest["gradcam"]["method"] = "layercam"
    write_bundle(tmp_path / "lc", manifest, tiny_densenet().state_dict())
    bundle = read_bundle(tmp_path / "lc")
    assert bundle.manifest.classification.cam_method == "layercam"
    r = run_to_completion(analyse(case, p, None, bundle, explain="none"))
    assert r.cam_method == "layercam"
    written = json.loads((tmp_path / "lc" / "manifest.json").read_text())
    written["gradcam"]["method"] = "guided-backprop"
    (tmp_path / "lc" / "manifest.json").write_text(json.dumps(written))
    with pytest.raises(BundleError, match="gradcam.method.*gradcam, gradcam\\+\\+, hirescam, hirescam-contrastive, layercam"):
        read_bundle(tmp_path / "lc")


def test_a_bad_layer_stops_before_the_segmentation(world):
    events = []
    with pytest.raises(CamError, match="features.denseblock1, features.transition1, features.denseblock2"):
        run_to_completion(analyse(world["case"], world["predictor"], world["seg"], world["cls"],
                                  cam_layer="features.denseblock7"), events.append)
    assert "segmentation" not in {e.stage for e in events}
    with pytest.raises(CamError, match="gradcam, gradcam\\+\\+, hirescam, hirescam-contrastive, layercam"):
        next(analyse(world["case"], world["predictor"], None, world["cls"], cam_method="guided"))


@pytest.mark.parametrize("option,value,names", [
    ("--cam-method", "guided", CAM_METHOD_CHOICES),
    ("--cam-layer", "features.denseblock9", ("features.denseblock1", "features.transition1", "features.denseblock2")),
])
def test_the_command_line_refuses_a_bad_method_or_layer_in_one_line(world, tmp_path, capsys, option, value, names):
    out = tmp_path / "out"
    rc = main(["--no-gui", "--case", str(world["case_dir"]), "--models", str(world["models"]), "--out", str(out),
               option, value])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("braingui: error:")]
    assert rc == 1 and len(errors) == 1 and "Traceback" not in err
    assert repr(value) in errors[0] and all(n in errors[0] for n in names)
    assert not (out / "results.json").exists()


def test_cancel_in_the_slow_part_keeps_the_early_result(world):
    cancel, seen = threading.Event(), []
    gen = analyse(world["case"], world["predictor"], None, world["cls"], cancel=cancel)
    with pytest.raises(Cancelled) as info:
        for event in gen:
            seen.append(event)
            if event.stage == "explanation":
                cancel.set()
    assert info.value.stage == "explanation" and "done" not in {e.stage for e in seen}
    early = next(e.partial for e in seen if e.partial is not None)
    assert early.explanation["level"] == "quick" and early.cams


def test_the_window_job_passes_the_options_through(world):
    from braingui.ui.jobs import analysis_job

    options = {"models_dir": str(world["models"]), "device": "cpu", "tta": 2, "postprocess": False,
               "explain": "quick", "cam_method": "gradcam++", "cam_layer": "features.denseblock2"}
    r = run_to_completion(analysis_job(world["case"], options)(threading.Event()))
    assert r.tta_views == 2 and r.explanation["level"] == "quick"
    assert (r.cam_method, r.cam_layer) == ("gradcam++", "features.denseblock2")
    default = run_to_completion(analysis_job(world["case"], {**options, "postprocess": True})(threading.Event()))
    assert r.postprocessing != default.postprocessing  # off vs the default thresholds
    assert not math.isnan(r.probabilities[r.predicted_class])
