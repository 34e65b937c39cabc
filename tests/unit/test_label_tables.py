"""Label files for ITK-SNAP and 3D Slicer beside the exported segmentation, in the chosen convention."""

from __future__ import annotations

import json
import re
import shlex

import nibabel as nib
import numpy as np
import pytest

from braingui import labels as lab
from braingui import label_tables
from braingui.export import export_result
from braingui.geometry import Grid
from braingui.results import AnalysisResult
from helpers import LPS_AFFINE

# What each convention must write, from the BraTS documentation (not from the code under test).
EXPECTED_VALUES = {"brats": {"core": 1, "edema": 2, "enhancing": 4},
                   "brats2023": {"core": 1, "edema": 2, "enhancing": 3}}
APP = {"core": (lab.LABEL_NAMES[lab.CORE], lab.LABEL_COLOURS[lab.CORE]),
       "edema": (lab.LABEL_NAMES[lab.EDEMA], lab.LABEL_COLOURS[lab.EDEMA]),
       "enhancing": (lab.LABEL_NAMES[lab.ENHANCING], lab.LABEL_COLOURS[lab.ENHANCING])}


def parse_itksnap(text: str) -> dict[int, tuple[str, tuple[int, int, int], float, int, int]]:
    """ITK-SNAP label description: ``IDX R G B A VIS MSH "LABEL"`` per non-comment line."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.fullmatch(r"\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([01])\s+([01])\s+\"([^\"]*)\"\s*", line)
        assert m, f"not an ITK-SNAP label line: {line!r}"
        idx, r, g, b = (int(m.group(i)) for i in range(1, 5))
        out[idx] = (m.group(8), (r, g, b), float(m.group(5)), int(m.group(6)), int(m.group(7)))
    return out


def parse_slicer(text: str) -> dict[int, tuple[str, tuple[int, int, int], int]]:
    """Slicer colour table: ``# Color table file`` header, then ``index name R G B A`` lines."""
    lines = text.splitlines()
    assert lines[0].startswith("# Color table file")
    out = {}
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        parts = shlex.split(line)
        assert len(parts) == 6, f"not 'index name R G B A': {line!r}"
        out[int(parts[0])] = (parts[1], tuple(int(v) for v in parts[2:5]), int(parts[5]))
    count = next(int(m.group(1)) for ln in lines if (m := re.fullmatch(r"# (\d+) values", ln)))
    assert count == len(out)
    return out


def _result_and_grid():
    shape = (6, 7, 5)
    grid = Grid.from_original(shape, LPS_AFFINE)
    labels = np.zeros(grid.shape, np.uint8)
    labels[1:3, 1:3, 1:3] = lab.CORE
    labels[3:5, 1:4, 1:4] = lab.EDEMA
    labels[1:2, 4:6, 2:4] = lab.ENHANCING
    labels.flags.writeable = False
    return AnalysisResult(case_id="SYNTHETIC_labels", labels=labels), grid


@pytest.mark.parametrize("convention", ["brats", "brats2023"])
def test_label_files_parse_back_to_the_app_names_colours_and_values(tmp_path, convention):
    result, grid = _result_and_grid()
    written = export_result(result, grid, tmp_path, label_convention=convention)
    itk = parse_itksnap((tmp_path / "segmentation_labels.txt").read_text())
    slicer = parse_slicer((tmp_path / "segmentation.ctbl").read_text())
    assert written["itksnap_labels"] == tmp_path / "segmentation_labels.txt"
    assert written["slicer_colors"] == tmp_path / "segmentation.ctbl"
    assert itk[0][0] == "Clear Label" and itk[0][2] == 0 and itk[0][3] == 0
    assert slicer[0][2] == 0  # background transparent
    expected = EXPECTED_VALUES[convention]
    assert set(itk) == set(slicer) == {0} | set(expected.values())
    for tissue, value in expected.items():
        name, rgb = APP[tissue]
        assert itk[value] == (name, rgb, 1.0, 1, 1)
        assert slicer[value] == (name.replace(" / ", "_").replace(" ", "_"), rgb, 255)
        assert " " not in slicer[value][0]
    # the segmentation's voxels hold the same values at the same places
    seg = nib.load(tmp_path / "segmentation.nii.gz")
    data = grid.to_canonical(np.asarray(seg.dataobj))
    assert seg.get_data_dtype() == np.uint8
    for tissue, internal in (("core", lab.CORE), ("edema", lab.EDEMA), ("enhancing", lab.ENHANCING)):
        assert np.array_equal(data == expected[tissue], result.labels == internal)
    assert set(np.unique(data).tolist()) == {0} | set(expected.values())
    assert float(seg.header["cal_max"]) == max(expected.values())
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["segmentation_labels"]["convention"] == convention
    assert summary["segmentation_labels"]["values"] == {str(v): APP[t][0] for t, v in expected.items()}


def test_brats2023_file_reads_back_through_the_loader_convention():
    """What brats2023 export writes, the loader's brats2023 reading turns back into the app's labels."""
    result, _ = _result_and_grid()
    written = label_tables.from_internal(result.labels, "brats2023")
    back, unknown = lab.to_internal(written, lab.BRATS2023)
    assert unknown == [] and np.array_equal(back, result.labels)


def test_unknown_export_convention_is_refused():
    with pytest.raises(ValueError, match="brats2023"):
        label_tables.export_values("msd")


def test_no_label_files_without_a_segmentation(tmp_path):
    export_result(AnalysisResult(case_id="SYNTHETIC_none"), Grid.from_original((4, 4, 4), np.eye(4)), tmp_path)
    assert not (tmp_path / "segmentation_labels.txt").exists() and not (tmp_path / "segmentation.ctbl").exists()
    assert json.loads((tmp_path / "results.json").read_text())["segmentation_labels"] is None
