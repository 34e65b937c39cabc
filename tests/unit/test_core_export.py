"""braingui.export: one file-name sanitiser, and the volumes written apart from results.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from braingui.case import load_case
from braingui.export import RESULTS_FILE, export_result, export_volumes, safe_filename
from braingui.results import AnalysisResult
from helpers import make_case_folder


@pytest.mark.parametrize("text, name", [
    ("BraTS18_CBICA_AAB_1", "BraTS18_CBICA_AAB_1"),
    ("case 1/../x", "case_1_.._x"),  # separators go, so the name stays inside the export folder
    ("v1.2-b", "v1.2-b"),
    ("..", "_."),
    (".hidden", "_hidden"),
    ("", "_"),
    ("Ödem", "Ödem"),
])
def test_safe_filename(text, name):
    assert safe_filename(text) == name


@pytest.fixture()
def case_and_result(tmp_path):
    make_case_folder(tmp_path / "case")
    case = load_case(tmp_path / "case")
    labels = np.zeros(case.grid.shape, np.uint8)
    labels[4:8, 4:8, 4:8] = 2
    cam = np.zeros(case.grid.shape, np.float32)
    cam[5, 5, 5] = 1.0
    result = AnalysisResult(case_id=case.case_id, labels=labels, class_names=("A", "G"), predicted_class="G",
                            probabilities={"A": 0.25, "G": 0.75}, cams={"G": cam, "A/x": cam * 0.5})
    return case, result


def test_export_volumes_writes_no_results_json(case_and_result, tmp_path):
    case, result = case_and_result
    written = export_volumes(result, case.grid, tmp_path / "out", all_cams=True)
    assert set(written) == {"segmentation", "gradcam", "gradcam_G", "gradcam_A/x", "itksnap_labels", "slicer_colors"}
    assert written["gradcam_A/x"].name == "gradcam_A_x.nii.gz"  # the class code through the sanitiser
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written.values())


def test_export_result_adds_results_json(case_and_result, tmp_path):
    case, result = case_and_result
    written = export_result(result, case.grid, tmp_path / "out")
    assert set(written) == {"segmentation", "gradcam", "results", "itksnap_labels", "slicer_colors"}
    assert written["results"] == tmp_path / "out" / RESULTS_FILE
    assert json.loads(written["results"].read_text())["predicted_class"] == "G"
