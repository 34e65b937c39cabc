"""The demo bundles shipped in ``braingui/models`` and ``braingui --demo`` with them.

``braingui --demo --no-gui --out DIR`` runs the whole pipeline with the shipped bundles on the synthetic
demo case, as a user would (a subprocess, the user cache folder redirected); the segmentation it writes
is scored against the phantom's own label map, and the results name the bundles with their sha256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from braingui import labels as lab
from braingui.inference.locate import PACKAGE_MODELS
from braingui.inference.manifest import read_bundle
from helpers import run_cli

NAMES = ("demo-segresnet", "demo-densenet169")


def test_shipped_bundles_are_small_complete_and_say_what_they_are():
    total = 0
    for name in NAMES:
        bundle = read_bundle(PACKAGE_MODELS / name)
        weights = bundle.folder / bundle.manifest.weights_file
        total += weights.stat().st_size
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == bundle.manifest.sha256
        card = bundle.manifest.model_card
        assert card["intended_use"] == "research demonstration - not for clinical use" and card["demo"] is True
        assert any("Menze" in c for c in card["citations"]) and any("Bakas" in c for c in card["citations"])
        assert card["metrics"]["per_case"] and card["evaluation"]["command"].startswith("python -m training.evaluate")
        assert card["limitations"] and card["configuration"]
    assert total <= 50 * 1024 * 1024
    seg = read_bundle(PACKAGE_MODELS / "demo-segresnet").manifest.model_card
    assert len(seg["held_out_cases"]) >= 2 and not set(seg["held_out_cases"]) & set(seg["train_cases"])
    cls = read_bundle(PACKAGE_MODELS / "demo-densenet169").manifest
    assert cls.model_card["synthetic_training_data"] is True and "SYNTHETIC" in cls.model_card["training_data"]
    assert cls.classification.cam_layer == "features.denseblock1" and cls.network == "DenseNet169"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("demo_run")
    env = {"XDG_CACHE_HOME": str(tmp / "cache"), "XDG_DATA_HOME": str(tmp / "data"), "BRAINGUI_MODELS": ""}
    proc = run_cli("--demo", "--no-gui", "--out", tmp / "out", "--device", "cpu", env_extra=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    case_dirs = list((tmp / "cache").rglob("SYNTHETIC_braingui_demo_seg.nii.gz"))
    assert len(case_dirs) == 1
    return tmp / "out", case_dirs[0]


def test_demo_runs_with_the_shipped_bundles_and_segments_the_phantom(demo_run):
    out, truth_file = demo_run
    result = json.loads((out / "results.json").read_text())
    used = {m["name"]: m["sha256"] for m in result["models"]}
    assert used == {n: read_bundle(PACKAGE_MODELS / n).manifest.sha256 for n in NAMES}
    # the demo phantom has the features of the synthetic glioblastoma class (ring enhancement round necrosis)
    assert result["predicted_class"] == "G"
    assert abs(sum(result["probabilities"].values()) - 1.0) < 1e-4
    seg_img, truth_img = nib.load(out / "segmentation.nii.gz"), nib.load(truth_file)
    assert np.allclose(seg_img.affine, truth_img.affine) and seg_img.shape == truth_img.shape
    pred = lab.regions(lab.to_internal(np.asarray(seg_img.dataobj), lab.BRATS)[0])
    truth = lab.regions(lab.to_internal(np.asarray(truth_img.dataobj), lab.BRATS)[0])
    dice = {r: 2 * (pred[r] & truth[r]).sum() / (pred[r].sum() + truth[r].sum()) for r in lab.REGIONS}
    assert dice["WT"] >= 0.9 and dice["TC"] >= 0.85 and dice["ET"] >= 0.75, dice
    cam = nib.load(out / "gradcam.nii.gz")
    assert cam.shape == truth_img.shape and np.allclose(cam.affine, truth_img.affine)
    assert "not for clinical use" in json.dumps(result).lower()
