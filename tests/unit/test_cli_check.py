"""``python -m braingui``: --version, --help, ``check`` (text and JSON), refusals, ``demo-case``."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

import braingui
from helpers import LPS_AFFINE, MODS, SHAPE, brain_volumes, make_case_folder, run_cli, tumour_labels, write_nifti

SPACING = (1.5, 2.0, 3.0)
AFFINE = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])  # LPS, anisotropic


def _assert_one_line_error(proc, *must_contain: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for text in must_contain:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def case(tmp_path):
    vols = brain_volumes()
    raw = tumour_labels(values=(1, 2, 4))
    paths = make_case_folder(tmp_path / "Case01", scheme="brats", affine=AFFINE, volumes=vols, labels=raw)
    return tmp_path / "Case01", paths, vols, raw


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"braingui {braingui.__version__}"


def test_help():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for word in ("usage: braingui", "--case", "check", "demo-case", "--flair", "--t1ce"):
        assert word in proc.stdout
    sub = run_cli("check", "--help")
    assert sub.returncode == 0 and "--json" in sub.stdout


def test_check_text_report(case):
    folder, paths, vols, raw = case
    proc = run_cli("check", folder)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for m in MODS:
        assert str(paths[m]) in out
    for title in ("FLAIR", "T1", "T1ce", "T2"):
        assert f"  {title} " in out
    assert " x ".join(map(str, SHAPE)) in out  # LPS keeps the axis order: canonical shape = stored shape
    assert "spacing 1.5 x 2 x 3 mm" in out
    assert "LPS" in out
    for m in MODS:  # intensity ranges
        assert f"range {0:.6g} .. {float(vols[m].max()):.6g}" in out
    assert str(paths["seg"]) in out
    assert "BraTS 2017-2022" in out
    ml = 1.5 * 2.0 * 3.0 / 1000
    et, tc, wt = (raw == 4).sum() * ml, np.isin(raw, (1, 4)).sum() * ml, (raw > 0).sum() * ml
    assert f"ET {et:.2f} mL, TC {tc:.2f} mL, WT {wt:.2f} mL" in out
    assert "OK" in out


def test_check_json(case):
    folder, paths, vols, raw = case
    proc = run_cli("check", folder, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["case_id"] == "Case01"
    assert report["shape"] == list(SHAPE)
    assert report["spacing_mm"] == pytest.approx(list(SPACING))
    assert report["original_orientation"] == "LPS"
    assert report["files"] == {m: str(paths[m]) for m in MODS}
    for m in MODS:
        assert report["intensity"][m]["min"] == pytest.approx(float(vols[m].min()))
        assert report["intensity"][m]["max"] == pytest.approx(float(vols[m].max()))
    labels = report["labels"]
    assert labels["file"] == str(paths["seg"]) and labels["convention"] == "brats"
    ml = 1.5 * 2.0 * 3.0 / 1000
    assert labels["volumes_ml"]["WT"] == pytest.approx((raw > 0).sum() * ml, abs=1e-3)
    assert labels["volumes_ml"]["TC"] == pytest.approx(np.isin(raw, (1, 4)).sum() * ml, abs=1e-3)
    assert labels["volumes_ml"]["ET"] == pytest.approx((raw == 4).sum() * ml, abs=1e-3)
    assert report["warnings"] == []


def test_check_explicit_files_and_forced_convention(tmp_path):
    vols = brain_volumes()
    raw = tumour_labels(values=(1, 2, 3))
    files = {m: write_nifti(tmp_path / f"volume{k}.nii", vols[m], LPS_AFFINE) for k, m in enumerate(MODS)}
    seg = write_nifti(tmp_path / "mask.nii", raw, LPS_AFFINE, np.uint8)
    args = [a for m in MODS for a in (f"--{m}", files[m])] + ["--seg", seg, "--labels", "msd", "--json"]
    proc = run_cli("check", *args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["files"] == {m: str(files[m]) for m in MODS}
    assert report["labels"]["convention"] == "msd"
    # MSD: TC = non-enhancing (2) + enhancing (3)
    assert report["labels"]["volumes_ml"]["TC"] == pytest.approx(np.isin(raw, (2, 3)).sum() / 1000, abs=1e-3)


def test_check_reports_warnings_and_still_succeeds(case):
    folder, paths, vols, _ = case
    bad = vols["t2"].copy()
    bad[3, 3, 3] = np.nan
    write_nifti(paths["t2"], bad, AFFINE)
    proc = run_cli("check", folder)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stdout and "NaN" in proc.stdout


def test_check_truncated_file_is_one_line_naming_the_file(case):
    folder, paths, _, _ = case
    data = paths["t1ce"].read_bytes()
    paths["t1ce"].write_bytes(data[: len(data) // 2])
    line = _assert_one_line_error(run_cli("check", folder), str(paths["t1ce"]))
    assert line.startswith("braingui: error:") and "truncated" in line.split(str(paths["t1ce"]))[-1]


def test_check_missing_modality(case):
    folder, paths, _, _ = case
    paths["flair"].unlink()
    line = _assert_one_line_error(run_cli("check", folder), str(folder))
    assert "missing modality flair" in line


def test_check_misregistered_case(case):
    folder, paths, vols, _ = case
    shifted = AFFINE.copy()
    shifted[1, 3] += 3.0
    write_nifti(paths["t2"], vols["t2"], shifted)
    line = _assert_one_line_error(run_cli("check", folder, "--json"), str(paths["t2"]))
    assert "co-registered" in line


def test_check_absurd_header(case, tmp_path):
    folder, paths, _, _ = case
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape((30000, 30000, 30000))
    hdr["vox_offset"] = 352
    paths["t1"].unlink()
    target = folder / "Case01_t1.nii"
    target.write_bytes(hdr.binaryblock + b"\0\0\0\0")
    line = _assert_one_line_error(run_cli("check", folder), str(target))
    assert "absurd" in line.split(str(target))[-1]


def test_check_missing_path_and_no_arguments(tmp_path):
    _assert_one_line_error(run_cli("check", tmp_path / "nowhere"), str(tmp_path / "nowhere"))
    proc = run_cli("check")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_demo_case_small_passes_check(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo-case", out, "--small", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote the synthetic demo case to {out}"  # says what it wrote, and where
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"SYNTHETIC_braingui_demo_{m}.nii.gz" for m in (*MODS, "seg"))  # the four modalities and a label map
    check = run_cli("check", out, "--json")
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout)
    assert report["synthetic"] is True and "SYNTHETIC" in report["case_id"]
    assert report["shape"] == [96, 96, 64]
    assert report["spacing_mm"] == pytest.approx([2.5, 2.5, 2.5])
    assert report["labels"] is not None and report["labels"]["convention"] == "brats"
    seg = next(out.glob("*_seg.nii.gz"))
    voxels = int((np.asarray(nib.load(seg).dataobj) > 0).sum())
    assert voxels > 0
    assert report["labels"]["volumes_ml"]["WT"] == pytest.approx(voxels * 2.5**3 / 1000, abs=1e-3)
    text = run_cli("check", out)
    assert text.returncode == 0 and "SYNTHETIC" in text.stdout
