"""The headless run, ``braingui --case PATH --no-gui --out DIR``, as a user runs it (subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from braingui.inference.bundle import sha256_file
from helpers import run_cli
from inference_helpers import make_models_dir, write_tiny_case


def _env(tmp: Path, models: Path | None) -> dict[str, str]:
    """Keep the run away from the user's real folders; ``models`` becomes BRAINGUI_MODELS."""
    (tmp / "bundled-empty").mkdir(exist_ok=True)
    env = {"XDG_DATA_HOME": str(tmp / "xdg-data"), "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
           "BRAINGUI_BUNDLED_MODELS": str(tmp / "bundled-empty"), "BRAINGUI_MODELS": "",
           "OMP_NUM_THREADS": "1"}
    if models is not None:
        env["BRAINGUI_MODELS"] = str(models)
    return env


def _one_line_error(proc) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("braingui: error: ")
    return lines[0]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    case = write_tiny_case(tmp / "case")
    models = make_models_dir(tmp / "models")
    return tmp, case, models


def test_headless_run_writes_three_files_on_the_input_grid(setup):
    tmp, case, models = setup
    before = _snapshot(case)
    out = tmp / "out"
    proc = run_cli("--case", case, "--no-gui", "--out", out, "--device", "cpu", env_extra=_env(tmp, models))
    assert proc.returncode == 0, proc.stderr
    assert _snapshot(case) == before  # nothing written into (or changed in) the case folder
    from braingui.export_set import MARKER, read_state

    state = read_state(out)  # the export set's marker: complete, and listing every file in the folder
    assert state.status == "complete" and {p.name for p in out.iterdir()} == set(state.files) | {MARKER}
    assert {"gradcam.nii.gz", "results.json", "segmentation.nii.gz"} <= set(state.files)
    assert "segmentation" in proc.stderr and "%" in proc.stderr  # the progress bar
    flair = nib.load(next(case.glob("*_flair.nii.gz")))
    truth = np.asarray(nib.load(next(case.glob("*_seg.nii.gz"))).dataobj)
    seg, cam = nib.load(out / "segmentation.nii.gz"), nib.load(out / "gradcam.nii.gz")
    for img in (seg, cam):
        assert img.shape == flair.shape
        np.testing.assert_allclose(img.affine, flair.affine, atol=1e-6)
        assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert seg.get_data_dtype() == np.uint8 and cam.get_data_dtype() == np.float32
    labels = np.asarray(seg.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
    # Over the original FLAIR, voxel for voxel, the labels sit on the phantom's tumour.
    for value_set in ({1, 2, 4}, {1, 4}, {4}):
        a, b = np.isin(truth, list(value_set)), np.isin(labels, list(value_set))
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9
    heat = np.asarray(cam.dataobj)
    assert heat.min() >= 0 and heat.max() <= 1 and heat.max() > 0.5
    summary = json.loads((out / "results.json").read_text())
    assert summary["predicted_class"] in ("A", "O", "G")
    assert sum(summary["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert summary["volumes_ml"]["WT"] > 0 and summary["software_version"]
    shas = {m["task"]: m["sha256"] for m in summary["models"]}
    assert shas["segmentation"] == sha256_file(models / "tiny-segresnet" / "weights.pt")
    assert shas["classification"] == sha256_file(models / "tiny-densenet" / "weights.pt")
    assert summary["timings_s"]["total"] > 0


def test_broken_case_gives_one_line(setup):
    tmp, case, models = setup
    broken = tmp / "broken"
    broken.mkdir()
    for p in case.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    flair = next(broken.glob("*_flair.nii.gz"))
    flair.write_bytes(flair.read_bytes()[:200])  # truncated download
    proc = run_cli("--case", broken, "--no-gui", "--out", tmp / "out-broken", env_extra=_env(tmp, models))
    line = _one_line_error(proc)
    assert flair.name in line
    assert not (tmp / "out-broken").exists()


def test_missing_bundle_gives_one_line(setup):
    tmp, case, _ = setup
    empty = tmp / "no-models"
    empty.mkdir(exist_ok=True)
    proc = run_cli("--case", case, "--no-gui", "--out", tmp / "out-none", "--models", empty, env_extra=_env(tmp, None))
    line = _one_line_error(proc)
    assert "no model bundle found" in line and str(empty) in line and "bundled" in line


def test_demo_without_bundles_says_where_it_looked_without_making_the_case(setup):
    tmp, _, _ = setup
    proc = run_cli("--demo", "--no-gui", "--out", tmp / "out-demo", env_extra=_env(tmp, None))
    line = _one_line_error(proc)
    assert "no model bundle found" in line and "looked in" in line
    assert str(Path(tmp / "xdg-data" / "braingui" / "models")) in line
    assert not (tmp / "xdg-cache").exists() or not any((tmp / "xdg-cache").rglob("*.nii.gz"))


def test_no_gui_needs_out(setup):
    tmp, case, models = setup
    proc = run_cli("--case", case, "--no-gui", env_extra=_env(tmp, models))
    assert "--out" in _one_line_error(proc)
