"""``braingui check`` on the 14 real BraTS 2018 cases in ../shared/data/brats2018 (skips when absent).

The reported region volumes are compared with voxel counts taken straight from the label files with
nibabel (BraTS 2018: 1 necrotic/non-enhancing core, 2 edema, 4 enhancing; WT = label > 0).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from braingui.app.cli import main as cli_main
from helpers import run_cli, shared_data_dir

pytestmark = pytest.mark.realdata

DATA = shared_data_dir()


def _case_dirs() -> list:
    if not DATA.is_dir():
        return []
    return sorted(p for p in DATA.iterdir() if p.is_dir() and any(p.glob("*_seg.nii*")))


CASES = _case_dirs()


def _expected(folder) -> dict:
    seg_path = next(folder.glob("*_seg.nii*"))
    img = nib.load(seg_path)
    raw = np.asarray(img.dataobj)
    voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000.0
    return {
        "seg": seg_path,
        "WT": int((raw > 0).sum()) * voxel_ml,
        "TC": int(np.isin(raw, (1, 4)).sum()) * voxel_ml,
        "ET": int((raw == 4).sum()) * voxel_ml,
        "axcodes": "".join(nib.aff2axcodes(img.affine)),
        "shape": list(nib.as_closest_canonical(img).shape),
    }


def _require_data():
    if not CASES:
        pytest.skip(f"real BraTS 2018 data not found at {DATA} (set BRAINGUI_SHARED_DATA to override)")


@pytest.mark.parametrize("index", range(max(len(CASES), 1)), ids=[p.name for p in CASES] or ["no-data"])
def test_check_every_real_case(index, capsys):
    """The ``check`` command (in-process) accepts the case and reports the label files' volumes."""
    _require_data()
    folder = CASES[index]
    status = cli_main(["check", str(folder), "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    report = json.loads(captured.out)
    exp = _expected(folder)
    assert report["labels"]["file"] == str(exp["seg"])
    assert report["labels"]["convention"] == "brats"
    assert report["scheme"] == "BraTS 2017-2021"
    assert report["case_id"] == folder.name
    assert report["original_orientation"] == exp["axcodes"]
    assert report["shape"] == exp["shape"]
    for region in ("WT", "TC", "ET"):
        assert report["labels"]["volumes_ml"][region] == pytest.approx(exp[region], abs=1e-3), region
    assert exp["WT"] > 0
    for m in ("flair", "t1", "t1ce", "t2"):
        assert report["intensity"][m]["max"] > 0


@pytest.mark.parametrize("which", [0, -1])
def test_check_subprocess_on_real_case(which):
    """The real command line, as a user runs it, on the first and the last case."""
    _require_data()
    folder = CASES[which]
    proc = run_cli("check", folder)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    exp = _expected(folder)
    assert f"WT {exp['WT']:.2f} mL" in proc.stdout
    assert exp["axcodes"] in proc.stdout
