"""Quality flags (braingui.quality) and the input intensity statistics (braingui.intensity_stats).

Each flag fires on a synthetic case built to trigger it and stays quiet on the demo phantom (the small
demo grid, 96x96x64 at 2.5 mm, with its own labels as the segmentation) and on the real BraTS cases of
../shared with their expert labels as the segmentation (skipped when the folder is absent). The
intensity reference is the shipped bundle's ``input_statistics``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from braingui import labels as lab
from braingui import quality
from braingui.app.demo import SMALL
from braingui.intensity_stats import (QUANTILES, InputStatistics, intensity_distance, intensity_statistics,
                                      reference_statistics, zscore_quantiles)
from braingui.inference.manifest import BundleError, parse_manifest, read_bundle
from braingui.phantom import make_phantom
from helpers import REPO_ROOT, shared_data_dir

SHIPPED = REPO_ROOT / "braingui" / "models" / "demo-segresnet"
SEQS = ("flair", "t1", "t1ce", "t2")


@pytest.fixture(scope="module")
def reference() -> InputStatistics:
    return read_bundle(SHIPPED).manifest.input_statistics


@pytest.fixture(scope="module")
def demo():
    """The small demo phantom: images, labels, brain mask (non-zero in any sequence), spacing, voxel mL."""
    ph = make_phantom(shape=SMALL["shape"], spacing=SMALL["spacing"], seed=0)
    brain = np.any([ph.images[s] != 0 for s in SEQS], axis=0)
    return {"images": ph.images, "labels": np.array(ph.labels), "brain": brain, "spacing": ph.spacing,
            "voxel_ml": float(np.prod(ph.spacing)) / 1000.0}


def _codes(demo, labels, **kw) -> list[str]:
    return [f.code for f in quality.assess(labels, demo["brain"], demo["spacing"], demo["voxel_ml"], **kw)]


def _ball(shape, centre, radius_vox) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius_vox ** 2


def _midline(brain) -> float:
    xs = np.flatnonzero(brain.any(axis=(1, 2)))
    return (xs[0] + xs[-1]) / 2.0


def _depth_mm(demo) -> np.ndarray:
    return ndimage.distance_transform_edt(np.pad(demo["brain"], 1), sampling=demo["spacing"])[1:-1, 1:-1, 1:-1]


# --- quiet ---------------------------------------------------------------------------------------------

def test_demo_phantom_is_quiet(demo, reference):
    labels = demo["labels"]
    channels = np.stack([lab.regions(labels)[r] for r in ("TC", "WT", "ET")])
    stats = intensity_statistics(demo["images"], SEQS)
    summary = {r: {"mean": 0.02, "volume_ml_range": [0.98 * v, 1.02 * v]}
               for r, v in lab.region_volumes_ml(labels, demo["voxel_ml"]).items()}
    assert _codes(demo, labels, channels=channels, summary=summary, members=8, stats=stats, reference=reference) == []


REAL = shared_data_dir()
REAL_CASES = sorted(p for p in REAL.iterdir() if p.is_dir() and any(p.glob("*_seg.nii*"))) if REAL.is_dir() else []


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_CASES, reason=f"no real BraTS cases in {REAL}")
@pytest.mark.parametrize("folder", REAL_CASES, ids=lambda p: p.name)
def test_real_cases_with_expert_labels_are_quiet(folder, reference):
    from braingui.case import load_case

    case = load_case(folder)
    brain = (case.stack() != 0).any(axis=0)
    channels = np.stack([lab.regions(case.labels)[r] for r in ("TC", "WT", "ET")])
    flags = quality.assess(case.labels, brain, case.grid.spacing, case.grid.voxel_ml, channels=channels,
                           stats=intensity_statistics(case.images, SEQS), reference=reference)
    assert [f.code for f in flags] == []


# --- triggers ------------------------------------------------------------------------------------------

def test_mirrored_tumour_fires_bilateral_mirror(demo):
    labels, c = demo["labels"], _midline(demo["brain"])
    src = np.clip(np.rint(2 * c - np.arange(labels.shape[0])).astype(int), 0, labels.shape[0] - 1)
    mirrored = np.maximum(labels, labels[src])
    codes = _codes(demo, mirrored)
    assert "bilateral_mirror" in codes
    flag = next(f for f in quality.assess(mirrored, demo["brain"], demo["spacing"], demo["voxel_ml"])
                if f.code == "bilateral_mirror")
    assert "midline" in flag.message and "check" in flag.message


def test_far_blob_fires_far_component(demo):
    labels = demo["labels"].copy()
    spacing = demo["spacing"]
    dist_to_tumour = ndimage.distance_transform_edt(labels == 0, sampling=spacing)
    ok = (_depth_mm(demo) > 15) & (np.abs(dist_to_tumour - 40) < 3)
    centre = np.argwhere(ok)[0]
    blob = _ball(labels.shape, centre, 8.0 / spacing[0])  # ~2.1 mL, > 20 mm from the tumour
    labels[blob] = lab.ENHANCING
    labels[_ball(labels.shape, centre, 4.0 / spacing[0])] = lab.CORE
    codes = _codes(demo, labels)
    assert "far_component" in codes and "bilateral_mirror" not in codes and "brain_edge" not in codes
    assert quality.far_components(labels > 0, spacing, demo["voxel_ml"], 20.0, 0.5)[0][1] > 30


def test_near_satellite_is_not_far(demo):
    labels = demo["labels"].copy()
    spacing = demo["spacing"]
    dist_to_tumour = ndimage.distance_transform_edt(labels == 0, sampling=spacing)
    centre = np.argwhere((_depth_mm(demo) > 15) & (np.abs(dist_to_tumour - 15) < 2))[0]
    labels[_ball(labels.shape, centre, 5.0 / spacing[0])] = lab.EDEMA  # its edge ~10 mm from the tumour
    assert "far_component" not in _codes(demo, labels)


def test_tumour_on_the_brain_edge_fires_brain_edge(demo):
    brain, spacing = demo["brain"], demo["spacing"]
    top = np.argwhere(brain)[np.argmax(np.argwhere(brain)[:, 2])]  # the top of the brain
    cap = _ball(brain.shape, top, 40.0 / spacing[0]) & brain & (_depth_mm(demo) <= 6.0)
    labels = np.zeros_like(demo["labels"])
    labels[cap] = lab.EDEMA
    assert cap.sum() * demo["voxel_ml"] > 5
    codes = _codes(demo, labels)
    assert "brain_edge" in codes
    assert quality.edge_fraction(labels > 0, brain, spacing, 3.0) > 0.3


def test_shifted_intensities_fire_input_intensity(demo, reference):
    shifted = {s: v + np.float32(50.0) for s, v in demo["images"].items()}  # the background is no longer 0
    codes = _codes(demo, demo["labels"], stats=intensity_statistics(shifted, SEQS), reference=reference)
    assert codes == ["input_intensity"]
    flag = quality.check_intensities(intensity_statistics(shifted, SEQS), reference)[0]
    assert all(s in flag.message for s in SEQS) and "background is 0" in flag.message


def test_high_disagreement_fires_tta_disagreement(demo):
    vols = lab.region_volumes_ml(demo["labels"], demo["voxel_ml"])
    summary = {r: {"mean": 0.1, "volume_ml_range": [0.98 * v, 1.02 * v]} for r, v in vols.items()}
    summary["WT"]["volume_ml_range"] = [0.6 * vols["WT"], 1.3 * vols["WT"]]
    assert vols["WT"] * 0.7 > 5
    flags = quality.check_disagreement(summary, vols, 8)
    assert [f.code for f in flags] == ["tta_disagreement"] and "WT" in flags[0].message and "8" in flags[0].message
    summary["WT"]["volume_ml_range"] = [0.95 * vols["WT"], 1.05 * vols["WT"]]
    assert quality.check_disagreement(summary, vols, 8) == []
    assert quality.check_disagreement(None, vols, 1) == []


def test_enhancing_outside_the_core_fires_et_outside_core(demo):
    labels = demo["labels"]
    regs = lab.regions(labels)
    channels = np.stack([regs["TC"], regs["WT"], regs["ET"]])
    stray = _ball(labels.shape, np.argwhere(demo["brain"]).mean(axis=0).astype(int) - (12, 0, 0), 5)
    stray &= ~regs["WT"]
    channels[2] |= stray  # ET where neither TC nor WT is
    assert stray.sum() > 0.1 * (regs["ET"].sum() + stray.sum())  # above both thresholds: 1 mL, 10 % of ET
    assert stray.sum() * demo["voxel_ml"] > 1.0
    codes = [f.code for f in quality.check_nesting(channels, ("TC", "WT", "ET"), demo["voxel_ml"])]
    assert "et_outside_core" in codes


# --- intensity statistics and the manifest --------------------------------------------------------------

def test_zscore_quantiles_by_hand():
    rng = np.random.default_rng(0)
    vol = np.zeros((20, 20, 20), np.float32)
    vol[2:18, 2:18, 2:18] = rng.gamma(2.0, 100.0, size=(16, 16, 16)) + 1
    brain = vol[vol != 0].astype(np.float64)
    expected = np.quantile((brain - brain.mean()) / brain.std(), QUANTILES)
    np.testing.assert_allclose(zscore_quantiles(vol), expected, atol=1e-3)
    assert zscore_quantiles(np.zeros((3, 3, 3))) == [0.0] * len(QUANTILES)


def test_reference_and_distance_by_hand():
    cases = [{"t1": [float(k)] * 7} for k in (-1, 0, 0, 1, 5)]  # median 0, MAD 1 -> scale 1.4826
    ref = reference_statistics(cases)
    assert ref.cases == 5 and ref.median["t1"] == (0.0,) * 7 and ref.scale["t1"] == pytest.approx((1.4826,) * 7)
    d = intensity_distance({"t1": [0, 0, 0, 0, 0, 0, 2.9652], "flair": [9] * 7}, ref)
    assert d == {"t1": pytest.approx(2.0)}  # flair is not in the reference
    tight = reference_statistics([{"t1": [0.0] * 7}] * 3)
    assert tight.scale["t1"] == (0.1,) * 7  # the floor
    assert InputStatistics.from_dict(ref.to_dict()) == ref


def test_shipped_manifest_holds_the_training_statistics(reference):
    data = json.loads((SHIPPED / "manifest.json").read_text())
    real = [c for c in data["model_card"]["train_cases"] if "SYNTHETIC" not in c]
    assert reference.cases == len(real) == 12
    assert set(reference.median) == set(SEQS) and reference.quantiles == QUANTILES
    for seq in SEQS:  # z-scored: medians near 0, quantiles increasing
        assert abs(reference.median[seq][3]) < 0.5 and list(reference.median[seq]) == sorted(reference.median[seq])


def _manifest_with(stats) -> dict:
    data = json.loads((SHIPPED / "manifest.json").read_text())
    data["input_statistics"] = stats
    return data


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.update(quantiles=[0.5, 0.25]), "increasing"),
    (lambda s: s.update(cases=0), "cases"),
    (lambda s: s["sequences"]["t1"].update(scale=[0.0] * 7), "positive"),
    (lambda s: s["sequences"]["t1"].update(median=[0.0] * 3), "one per quantile"),
    (lambda s: s["sequences"].update(dwi=s["sequences"]["t1"]), "not in input.channels"),
    (lambda s: s.update(extra=1), "unknown key"),
])
def test_bad_input_statistics_are_refused(mutate, message):
    stats = json.loads(json.dumps(read_bundle(SHIPPED).manifest.input_statistics.to_dict()))
    mutate(stats)
    with pytest.raises(BundleError, match=message):
        parse_manifest(_manifest_with(stats), "somewhere")


def test_manifest_without_input_statistics_is_fine():
    data = json.loads((SHIPPED / "manifest.json").read_text())
    del data["input_statistics"]
    assert parse_manifest(data).input_statistics is None


def test_export_bundle_computes_the_statistics_of_the_real_training_cases(tmp_path):
    from inference_helpers import write_tiny_case
    from training.export_bundle import training_input_statistics

    for k, name in enumerate(("Brats18_A_1", "Brats18_B_1", "Brats18_C_1")):
        src = write_tiny_case(tmp_path / f"src{k}", case_id=f"SYNTHETIC_{k}", seed=k)  # phantoms say SYNTHETIC
        (tmp_path / name).mkdir()
        for f in src.iterdir():  # ... so rename them as if they were real training cases
            f.rename(tmp_path / name / f.name.replace(f"SYNTHETIC_{k}", name))
    got = training_input_statistics(["Brats18_A_1", "Brats18_B_1", "SYNTHETIC_seg_000"], tmp_path, SEQS)
    assert got["cases"] == 2
    from braingui.case import load_case

    per = [intensity_statistics(load_case(tmp_path / n).images, SEQS) for n in ("Brats18_A_1", "Brats18_B_1")]
    np.testing.assert_allclose(got["sequences"]["t2"]["median"], np.median([p["t2"] for p in per], axis=0), atol=1e-4)
    with pytest.raises(SystemExit, match="none of the"):
        training_input_statistics(["Brats18_Z_1"], tmp_path, SEQS)
