"""The PDF report's content model (:mod:`braingui.display.report_model`), without Qt: which slices, which
numbers, which words."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from braingui.case import load_case
from braingui.display import planes
from braingui.display.report_model import NONE_TEXT, build_report, explanation_verdict
from braingui.labels import region_volumes_ml
from braingui.measurements import measure
from braingui.phantom import write_case
from braingui.results import AnalysisResult, ModelInfo

SHAPE, SPACING = (40, 44, 32), (4.0, 4.0, 4.5)
TITLES = {"A": "astrocytoma", "O": "oligodendroglioma", "G": "glioblastoma"}
GOOD_MAP = {"method": "gradcam", "layer": "features.denseblock1", "class": "G", "mass_in_wt": 0.38,
            "wt_fraction_of_brain": 0.06, "enrichment": 6.333, "mass_outside_brain": 0.02, "peak_in_wt": True,
            "peak_in_brain": True, "tumour_occlusion": {"class": "A", "probabilities": {"A": 0.81, "O": 0.09, "G": 0.1}},
            "modality_ablation": {"flair": -0.38, "t1": 0.01, "t1ce": -0.12, "t2": -0.05},
            "deletion": {"map_auc": 0.412, "random_auc": 0.655}, "randomisation": {"spearman": 0.21, "flag": False}}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "SYNTHETIC_report"
    write_case(folder, case_id="SYNTHETIC_report", shape=SHAPE, spacing=SPACING, seed=3)
    return load_case(folder)


def _result(case, labels=None, heat_at=None, **extra) -> AnalysisResult:
    """A stand-in result: ``labels`` (default the case's own), a one-voxel map at ``heat_at`` (default the
    tumour's centroid; none without a tumour)."""
    labels = np.array(case.labels if labels is None else labels)
    card = {"synthetic_training_data": True, "metrics": {"balanced_accuracy": 0.9}}
    heat = np.zeros(case.grid.shape, np.float32)
    if heat_at is None and labels.any():
        heat_at = tuple(int(c.mean()) for c in np.nonzero(labels))
    if heat_at is not None:
        heat[heat_at] = 1.0
    r = AnalysisResult(case_id=case.case_id, labels=labels, class_names=("A", "O", "G"), class_titles=TITLES,
                probabilities={"A": 0.125, "O": 0.2, "G": 0.675}, predicted_class="G", cams={"G": heat},
                cam_layer="features.denseblock1", volumes_ml=region_volumes_ml(labels, case.grid.voxel_ml),
                models=[ModelInfo("seg", "segmentation", "/x", "a" * 64, True, {}),
                        ModelInfo("cls", "classification", "/y", "b" * 64, True, card)],
                measurements=measure(labels, case.grid.affine), software_version="9.9.9", **extra)
    return r


def test_each_plane_is_cut_at_its_largest_tumour_slice_and_cropped_to_the_head(case):
    content = build_report(case, _result(case))
    tumour, brain = case.labels > 0, np.any([v != 0 for v in case.images.values()], axis=0)
    assert [p.plane for p in content.planes] == list(planes.PLANES)
    for ps in content.planes:
        axis = planes.NORMAL_AXIS[ps.plane]
        area = tumour.sum(axis=tuple(a for a in range(3) if a != axis))
        assert ps.slice_number - 1 == int(np.argmax(area)) and ps.why == "largest tumour slice"
        assert ps.n_slices == SHAPE[axis]
        labels2d = planes.display_slice(case.labels, ps.plane, ps.slice_number - 1)
        head2d = planes.display_slice(brain, ps.plane, ps.slice_number - 1)
        # cropped to the head: nothing of the head or the tumour cut off, the empty border gone
        assert ps.head.sum() == head2d.sum() and (ps.fill[..., 3] == 255).sum() == (labels2d > 0).sum()
        assert ((ps.fill[..., 3] > 0) == (ps.fill[..., 3] == 255)).all()
        assert ps.base.shape[:2] < labels2d.shape or ps.base.shape[:2] == labels2d.shape
        assert ps.base.shape[2] == 4 and ps.base.dtype == np.uint8 and (ps.base[..., 3] == 255).all()
        assert ps.heat is not None and ps.pixel_mm == planes.pixel_size(SPACING, ps.plane)


def test_the_numbers_are_those_of_the_summary(case):
    labels = np.array(case.labels)
    labels[labels == 4] = 1  # no enhancing tumour in the model's map: TC is measured, ET Dice is 0
    r = _result(case, labels, tta_views=4, uncertainty_regions={
        "WT": {"mean": 0.0412, "volume_ml_range": [10.25, 12.5]}, "TC": {"mean": 0.0311, "volume_ml_range": [3.0, 3.5]},
        "ET": {"mean": 0.0, "volume_ml_range": [0.0, 0.0]}},
        quality_flags=[{"code": "mirrored_tumour", "message": "tumour in both hemispheres"}])
    s = r.summary()
    content = build_report(case, r)
    vol = content.section("volumes").tables[0]
    assert vol.header == ("Region", "Model (mL)", "Range across 4 views (mL)", "Mean uncertainty", "Reference (mL)",
                          "Dice vs reference")
    ref = case.region_volumes_ml()
    by_region = {row[0].split()[0]: row for row in vol.rows}
    for region in ("WT", "TC", "ET"):
        assert by_region[region][1] == f"{s['volumes_ml'][region]:.2f}"
        assert by_region[region][4] == f"{ref[region]:.2f}"
    assert by_region["WT"][2:4] == ("10.25 - 12.50", "0.041") and by_region["WT"][5] == "1.000"
    assert by_region["ET"][5] == "0.000"  # no ET predicted against a reference with ET
    tc_ref, tc_pred = np.isin(case.labels, (1, 4)), np.isin(labels, (1, 4))
    assert by_region["TC"][5] == f"{2 * (tc_ref & tc_pred).sum() / (tc_ref.sum() + tc_pred.sum()):.3f}"
    m = s["measurements"]
    assert m["region"] == "TC"
    rows = content.section("measurements").tables[0].rows
    assert len(rows) == m["lesion_count"] >= 1
    assert rows[0][3:6] == (f"{m['lesions'][0]['longest_mm']:.1f}", f"{m['lesions'][0]['perpendicular_mm']:.1f}",
                            f"{m['lesions'][0]['product_mm2']:.1f}")
    probs = content.section("classification").tables[0]
    assert [row[2] for row in probs.rows] == ["0.125", "0.200", "0.675"] and probs.highlight == (2,)
    assert content.prediction == "Glioblastoma (G), probability 0.675"
    assert content.section("quality").tables[0].rows == [("mirrored_tumour", "tumour in both hemispheres")]
    assert content.section("quality").tone == "warning"
    assert content.software_version == "9.9.9" and content.demo_models and content.synthetic_classifier
    assert "a" * 64 in content.text() and "b" * 64 in content.text()


def test_explanation_metrics_and_verdict(case):
    r = _result(case)
    r.explanation = {**GOOD_MAP, "reference": {"mass_in_wt": 0.5, "wt_fraction_of_brain": 0.05,  # its five
                                                    "enrichment": 10.0, "peak_in_wt": False, "peak_in_brain": True}}
    sec = build_report(case, r).section("explanation")
    loc, checks = sec.tables
    assert sec.paragraphs == ["Grad-CAM, features.denseblock1, class glioblastoma (G)."]
    assert loc.header == ("Localisation", "Predicted tumour", "Reference labels")
    assert [row[1] for row in loc.rows] == ["0.380", "0.060", "6.33", "0.020", "yes", "yes"]
    assert [row[2] for row in loc.rows] == ["0.500", "0.050", "10.00", "0.020", "no", "yes"]
    flat = " ".join(" ".join(row) for row in checks.rows)
    for text in ("astrocytoma (A)", "A 0.810", "FLAIR -0.380", "T1ce -0.120", "0.412 / 0.655", "gain +0.243",
                 "Spearman 0.210", "passed"):
        assert text in flat, text
    verdict = sec.notes[0]
    assert verdict.startswith("38 % of the heat lies in the tumour, which is 6 % of the brain: 6x better than chance.")
    assert "Without the tumour the model says astrocytoma (81 %)." in verdict
    assert "FLAIR moved the call most (-38 %)." in verdict and verdict.endswith("Sanity check passed.")
    assert sec.tone == "good"


def test_a_poor_map_says_so_and_a_stored_verdict_is_used_as_it_is(case):
    poor = {**GOOD_MAP, "mass_in_wt": 0.05, "enrichment": 0.8, "wt_fraction_of_brain": 0.0625, "peak_in_wt": False,
            "randomisation": {"spearman": 0.83, "flag": True}, "deletion": {"map_auc": None, "random_auc": None}}
    r = _result(case)
    r.explanation = poor
    sec = build_report(case, r).section("explanation")
    assert sec.tone == "warning" and sec.notes[0].startswith("This map is poor: it is worse than a uniform map")
    assert "FAILED" in " ".join(" ".join(row) for row in sec.tables[1].rows)
    assert f"{NONE_TEXT} / {NONE_TEXT}" in " ".join(" ".join(row) for row in sec.tables[1].rows)
    assert explanation_verdict({**poor, "verdict": "Stored words."}, TITLES, "G") == "Stored words."


def test_without_a_tumour_or_a_result(case):
    empty = np.zeros(SHAPE, np.uint8)
    content = build_report(case, _result(case, empty, heat_at=(5, 30, 20)))
    assert [(p.why, p.slice_number) for p in content.planes] == [
        ("hottest Grad-CAM voxel", 21), ("hottest Grad-CAM voxel", 31), ("hottest Grad-CAM voxel", 6)]
    assert {p.why for p in build_report(case, _result(case, empty)).planes} == {"volume centre"}
    assert content.section("measurements").paragraphs == ["no enhancing lesion and no tumour core: nothing measured"]
    bare = build_report(case, None, when=datetime(2024, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=2))))
    assert bare.created == "2024-05-06 07:08 UTC+0200" and bare.prediction is None
    assert [s.key for s in bare.sections] == ["volumes", "run"]  # no classification, no quality, no models
    assert bare.section("volumes").notes[0] == "No segmentation model was run."
    assert bare.planes[0].why == "largest tumour slice"  # the case's own labels are shown
    assert bare.pane_notes["segmentation"] == "reference labels (from the case's label file)"


def test_method_titles_are_the_inference_stack_s():
    from braingui.display.report_model import CONTRASTIVE_METHODS, METHOD_HINTS, METHOD_TITLES
    from braingui.inference import cam_methods

    assert METHOD_TITLES == cam_methods.METHOD_TITLES and CONTRASTIVE_METHODS == cam_methods.CONTRASTIVE_METHODS
    assert set(METHOD_HINTS) == set(cam_methods.METHODS)


def test_the_model_imports_no_qt():
    import subprocess

    code = ("import sys, braingui.display.report_model; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_measured_lesion_view_holds_its_diameters_at_their_length(case):
    r = _result(case)
    content = build_report(case, r)
    les = r.summary()["measurements"]["lesions"][0]
    ps = content.measured
    assert ps.plane == "axial" and ps.slice_number == les["slice"]
    (row_mm, col_mm), (rows, cols) = ps.pixel_mm, ps.base.shape[:2]
    for (a, b), length in zip(content.diameters, (les["longest_mm"], les["perpendicular_mm"])):
        assert np.hypot((a[0] - b[0]) * row_mm, (a[1] - b[1]) * col_mm) == pytest.approx(length, abs=0.01)
        assert all(-0.5 <= p[0] <= rows - 0.5 and -0.5 <= p[1] <= cols - 0.5 for p in (a, b))
    # a diameter's end is where the lesion's outline is: the label under the inner side of an end is ET
    (a, b) = content.diameters[0]
    inner = np.array(a) + 0.3 * (np.array(b) - np.array(a)) / np.hypot(*(np.array(b) - np.array(a)))
    labels2d = planes.display_slice(r.labels, "axial", les["slice"] - 1)[ps.origin[0]:, ps.origin[1]:]
    assert labels2d[int(round(inner[0])), int(round(inner[1]))] == 4
    assert build_report(case, _result(case, np.zeros(SHAPE, np.uint8))).measured is None
