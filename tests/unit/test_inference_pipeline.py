"""The inference pipeline end to end on tiny phantoms: geometry, labels, probabilities, Grad-CAM,
cancellation, sliding windows, exports, and the layer boundaries (no Qt in inference, no torch in the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import nibabel as nib
import numpy as np
import pytest
import torch

from braingui import labels as lab
from braingui.case import load_case
from braingui.export import GRADCAM_FILE, RESULTS_FILE, SEGMENTATION_FILE, export_result
from braingui.inference.bundle import sha256_file
from braingui.inference.gradcam import GradCamError, MedcamGradCam
from braingui.inference.manifest import read_bundle
from braingui.inference.pipeline import STAGES, Cancelled, analyse, run_to_completion
from braingui.inference.predictor import DeviceError, Predictor, resolve_device, window_slices
from braingui.preprocess import prepare_segmentation
from helpers import REPO_ROOT
from inference_helpers import (make_tiny_classification_bundle, make_tiny_segmentation_bundle,  # noqa: F401
                               single_torch_thread, tiny_densenet, write_tiny_case)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    case_dir = write_tiny_case(root / "case")
    seg = read_bundle(make_tiny_segmentation_bundle(root / "models" / "seg"))
    cls = read_bundle(make_tiny_classification_bundle(root / "models" / "cls"))
    predictor = Predictor("cpu")
    case = load_case(case_dir)
    events = []
    result = run_to_completion(analyse(case, predictor, seg, cls), events.append)
    return {"root": root, "case_dir": case_dir, "case": case, "seg": seg, "cls": cls, "predictor": predictor,
            "result": result, "events": events}


def test_result_is_on_the_case_grid(world):
    case, r = world["case"], world["result"]
    assert r.labels.shape == case.grid.shape and r.labels.dtype == np.uint8
    assert set(np.unique(r.labels)) <= {0, 1, 2, 4}
    assert r.seg_probabilities.shape == (3,) + case.grid.shape
    assert r.seg_probabilities.min() >= 0 and r.seg_probabilities.max() <= 1
    assert r.seg_channels == ("TC", "WT", "ET")
    assert r.volumes_ml == pytest.approx(lab.region_volumes_ml(r.labels, case.grid.voxel_ml))
    assert r.volumes_ml["WT"] > 0


def test_labels_are_where_the_phantom_tumour_is(world):
    truth, pred = lab.regions(world["case"].labels), lab.regions(world["result"].labels)
    for region in ("WT", "TC", "ET"):
        assert truth[region].sum() > 20
        assert dice(truth[region], pred[region]) > 0.9, region


def test_probabilities_and_cam(world):
    r, case = world["result"], world["case"]
    probs = np.array([r.probabilities[c] for c in r.class_names])
    assert r.class_names == ("A", "O", "G")
    assert probs.sum() == pytest.approx(1.0, abs=1e-9) and np.all(probs > 0)
    assert r.predicted_class == r.class_names[int(np.argmax(probs))]
    assert r.class_titles["G"] == "glioblastoma"
    # the predicted class's map first; the full explanation (the default) maps the other classes after it
    assert list(r.cams)[0] == r.predicted_class and sorted(r.cams) == sorted(r.class_names)
    cam = r.cams[r.predicted_class]
    assert cam.shape == case.grid.shape and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0 and cam.max() > 0.5
    assert r.cam_layer == "features.denseblock1"


def test_metadata_and_progress(world):
    r, events = world["result"], world["events"]
    assert {m.task for m in r.models} == {"segmentation", "classification"}
    for m in r.models:
        assert m.sha256 == sha256_file(read_bundle(m.path).weights_path)
    assert {"load models", "segmentation", "classification", "grad-cam", "total"} <= set(r.timings_s)
    assert r.software_version and r.device == "cpu"
    assert any("not for clinical use" in w for w in r.warnings)  # demo models are flagged
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[0] < 0.1 and events[-1].stage == "done" and fractions[-1] == 1.0
    assert [s for s in STAGES if s in {e.stage for e in events}] == list(STAGES)
    json.dumps(r.summary())  # JSON-ready


def test_models_load_once(world):
    p = world["predictor"]
    assert p.load(world["seg"]) is p.load(world["seg"])
    events = []
    run_to_completion(analyse(world["case"], p, world["seg"], None), events.append)
    assert any("cached" in e.message for e in events if e.stage == "load models")


def test_all_cams_and_favoured_class(world, tmp_path):
    cls = read_bundle(make_tiny_classification_bundle(tmp_path / "g", favour="G", seed=1))
    r = run_to_completion(analyse(world["case"], world["predictor"], None, cls, all_cams=True))
    assert r.predicted_class == "G" and r.probabilities["G"] > 0.9
    assert sorted(r.cams) == ["A", "G", "O"]
    assert r.labels is None and any("segmentation skipped" in w for w in r.warnings)
    maps = [r.cams[c] for c in ("A", "O", "G")]
    assert all(m.min() >= 0 and m.max() <= 1 for m in maps)
    assert not np.allclose(maps[0], maps[2])  # a map per class, not one map repeated


def test_gradcam_failure_keeps_the_classification(world, tmp_path):
    cls = read_bundle(make_tiny_classification_bundle(tmp_path / "bad", layer="features.nope"))
    r = run_to_completion(analyse(world["case"], world["predictor"], None, cls))
    assert sum(r.probabilities.values()) == pytest.approx(1.0)
    assert r.cams == {} and any("Grad-CAM failed" in w for w in r.warnings)


def _run_until(world, seg, cls, stop_at) -> tuple[list, Cancelled]:
    cancel, seen = threading.Event(), []
    gen = analyse(world["case"], world["predictor"], seg, cls, cancel=cancel)
    with pytest.raises(Cancelled) as info:
        for event in gen:
            seen.append(event)
            if stop_at(event):
                cancel.set()
    return seen, info.value


def test_cancel_stops_within_one_stage(world):
    seen, exc = _run_until(world, world["seg"], world["cls"], lambda e: e.stage == "segmentation")
    assert exc.stage == "segmentation"
    assert not {"classification", "grad-cam", "done"} & {e.stage for e in seen}
    assert "cancelled" in str(exc)


def test_cancel_before_start(world):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled) as info:
        next(analyse(world["case"], world["predictor"], world["seg"], world["cls"], cancel=cancel))
    assert info.value.stage == "load models"


def test_cancel_between_sliding_windows(world, tmp_path):
    seg = read_bundle(make_tiny_segmentation_bundle(tmp_path / "win", roi_size=[16, 16, 16]))
    seen, exc = _run_until(world, seg, None, lambda e: e.message.startswith("window 1/"))
    windows = [e for e in seen if e.message.startswith("window")]
    assert len(windows) == 1 and int(windows[0].message.split("/")[1]) > 2
    assert exc.stage == "segmentation"


def test_sliding_windows_match_monai(tmp_path):
    """Our window loop (yields between windows) equals MONAI's sliding_window_inference."""
    from monai.inferers import sliding_window_inference

    bundle = read_bundle(make_tiny_segmentation_bundle(tmp_path / "r", rule="random", roi_size=[16, 16, 16],
                                                       sw_overlap=0.25, seed=4))
    model = Predictor("cpu").load(bundle)
    x = np.random.default_rng(0).standard_normal((4, 28, 24, 20)).astype(np.float32)
    assert len(window_slices((28, 24, 20), (16, 16, 16), 0.25)) == 8
    ours = model.probabilities(x)
    with torch.no_grad():
        ref = torch.sigmoid(sliding_window_inference(torch.from_numpy(x)[None], (16, 16, 16), 1, model.network,
                                                     overlap=0.25, mode="constant"))[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    with torch.no_grad():
        whole = torch.sigmoid(model.network(torch.from_numpy(x)[None]))[0].numpy()
    assert np.abs(whole - ours).max() > 1e-4  # windows really were used (context differs at the seams)


def test_windows_give_the_whole_volume_labels_for_a_per_voxel_model(world, tmp_path):
    seg = read_bundle(make_tiny_segmentation_bundle(tmp_path / "w", roi_size=[16, 16, 16]))
    r = run_to_completion(analyse(world["case"], world["predictor"], seg, None))
    np.testing.assert_array_equal(r.labels, world["result"].labels)


def test_fixed_crop_and_zoom_map_back_onto_the_case_grid(world, tmp_path):
    case, full = world["case"], world["result"].labels
    seg = read_bundle(make_tiny_segmentation_bundle(tmp_path / "crop", crop=[24, 24, 24]))
    r = run_to_completion(analyse(case, world["predictor"], seg, None))
    box = prepare_segmentation(case.stack(), world["predictor"].load(seg).prep).grid_map.box
    inside = np.zeros(case.grid.shape, bool)
    inside[tuple(slice(max(s, 0), s + n) for s, n in zip(box.start, box.size))] = True
    np.testing.assert_array_equal(r.labels[inside], full[inside])
    assert not r.labels[~inside].any()
    seg = read_bundle(make_tiny_segmentation_bundle(tmp_path / "zoom", zoom=0.5))
    r = run_to_completion(analyse(case, world["predictor"], seg, None))
    assert r.labels.shape == case.grid.shape
    assert dice(lab.regions(r.labels)["WT"], lab.regions(full)["WT"]) > 0.6


def test_label_map_round_trips_through_the_original_grid(world):
    grid, labels = world["case"].grid, world["result"].labels
    assert grid.original_axcodes == ("L", "P", "S")  # the case is stored LPS, like BraTS 2018
    back = grid.to_canonical(grid.to_original(labels))
    np.testing.assert_array_equal(back, labels)
    gm = prepare_segmentation(world["case"].stack(), world["predictor"].load(world["seg"]).prep).grid_map
    np.testing.assert_array_equal(gm.inverse(gm.forward(labels, order=0), order=0), labels)


def test_export_writes_on_the_original_grid(world, tmp_path):
    case, r = world["case"], world["result"]
    written = export_result(r, case.grid, tmp_path / "out")
    from braingui.export_set import MARKER

    names = {p.name for p in (tmp_path / "out").iterdir()}  # the written files and the export set's marker
    assert names == {p.name for p in written.values()} | {MARKER}
    assert {SEGMENTATION_FILE, GRADCAM_FILE, RESULTS_FILE} <= names
    flair = nib.load(case.files.images["flair"])
    seg = nib.load(written["segmentation"])
    cam = nib.load(written["gradcam"])
    for img in (seg, cam):
        assert img.shape == flair.shape
        np.testing.assert_allclose(img.affine, flair.affine, atol=1e-6)
    assert seg.get_data_dtype() == np.uint8 and cam.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(nib.as_closest_canonical(seg).dataobj), r.labels)
    truth = np.asarray(nib.load(case.files.seg).dataobj)  # in the file's own (LPS) voxel order
    ours = np.asarray(seg.dataobj)
    assert dice(truth > 0, ours > 0) > 0.9 and dice(truth == 4, ours == 4) > 0.9
    from braingui.export import results_summary

    assert json.loads(written["results"].read_text()) == json.loads(json.dumps(results_summary(r)))


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError):
        resolve_device("bogus")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")


def test_medcam_adapter_matches_monai_gradcam():
    """medcam (the adapter) and monai.visualize.GradCAM on the same network and layer agree."""
    from monai.visualize import GradCAM

    net = tiny_densenet(seed=0)
    x = torch.randn(1, 4, 24, 28, 24, generator=torch.Generator().manual_seed(1))
    adapter = MedcamGradCam(net, "features.denseblock1")
    reference = GradCAM(nn_module=net, target_layers="features.denseblock1", postprocessing=lambda m: m)
    with torch.no_grad():
        logits = net(x)
    for k in (None, 2, 0, 1, 2):  # several labels in turn: medcam must not stick to the first one
        got_logits, cam = adapter(x, k)
        k = int(logits.argmax()) if k is None else k
        ref = reference(x, class_idx=k)[0, 0].detach().numpy()
        assert cam.shape == (24, 28, 24) and cam.min() >= 0 and cam.max() <= 1
        assert np.corrcoef(cam.ravel(), ref.ravel())[0, 1] >= 0.99
        assert torch.allclose(got_logits, logits, atol=1e-5)
    assert not net.training and all(p.requires_grad for p in net.parameters())
    adapter(x, 1)
    assert all(p.grad is None for p in net.parameters())  # the adapter frees parameter grads
    with torch.inference_mode(), pytest.raises(GradCamError, match="inference_mode"):
        adapter(x)
    with pytest.raises(GradCamError, match="not a module"):
        MedcamGradCam(net, "features.denseblock9")


def _imports(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, cwd=str(REPO_ROOT), timeout=120,
                         env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""})
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_torch_free_modules_stay_torch_free():
    """The CLI, the exporters and bundle search load no torch (GUI start-up must not pay for it);
    ``tests/test_layers.py`` checks that the pipeline loads no Qt."""
    loaded = _imports("import braingui.app.cli, braingui.export, braingui.inference.locate, braingui.inference.manifest")
    assert "braingui.inference.locate" in loaded
    assert not {"torch", "monai", "medcam"} & {m.split(".")[0] for m in loaded}
