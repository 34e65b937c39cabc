"""``braingui batch`` / ``batch-merge`` on a tiny synthetic cohort with tiny model bundles (CPU, in-process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from braingui.app import batch as batch_mod
from braingui.app import cohort as co
from braingui.app.cli import main
from braingui.inference import predictor as predictor_mod
from helpers import make_case_folder, write_nifti
from inference_helpers import make_models_dir, single_torch_thread, write_tiny_case  # noqa: F401 - fixture

GOOD = ("siteA/case0", "siteA/case2", "siteB/case1")
BROKEN = ("siteB/missing_t2", "siteB/truncated")


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _batch(cohort: Path, out: Path, models: Path, *extra: str) -> int:
    return main(["batch", str(cohort), "--out", str(out), "--models", str(models), "--device", "cpu",
                 "--tta", "1", *extra])


def _rows(path: Path) -> dict[str, dict[str, str]]:
    header, rows = co.read_csv(path)
    return {r["case"]: r for r in rows}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """3 good cases in two site folders, a case missing T2, a case with a truncated FLAIR, a masks folder."""
    tmp = tmp_path_factory.mktemp("batch")
    root = tmp / "cohort"
    for i, cid in enumerate(GOOD):
        write_tiny_case(root / cid, seed=i, case_id=f"SYNTHETIC_tiny{i}")
    write_tiny_case(root / "siteB" / "missing_t2", seed=5, case_id="SYNTHETIC_m")
    next((root / "siteB" / "missing_t2").glob("*_t2.nii.gz")).unlink()
    write_tiny_case(root / "siteB" / "truncated", seed=6, case_id="SYNTHETIC_t")
    flair = next((root / "siteB" / "truncated").glob("*_flair.nii.gz"))
    flair.write_bytes(flair.read_bytes()[:300])
    (root / "masks").mkdir()
    (root / "masks" / "brainmask.nii.gz").write_bytes(next((root / GOOD[0]).glob("*_seg.nii.gz")).read_bytes())
    models = make_models_dir(tmp / "models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(tmp / "xdg"))
        loads = []
        real = predictor_mod.load_network
        mp.setattr(predictor_mod, "load_network", lambda bundle: loads.append(bundle.name) or real(bundle))
        before = _snapshot(root)
        out = tmp / "out"
        rc = _batch(root, out, models)
        yield {"tmp": tmp, "root": root, "models": models, "out": out, "rc": rc, "loads": loads,
               "before": before}


def test_every_case_is_written_and_the_broken_ones_are_recorded(cohort, capsys):
    out, root = cohort["out"], cohort["root"]
    assert cohort["rc"] == 1  # some cases failed
    rows = _rows(out / "cohort.csv")
    assert sorted(rows) == sorted(GOOD + BROKEN)  # the masks folder is not a case
    for cid in GOOD:
        assert rows[cid]["status"] == "ok" and rows[cid]["message"] == ""
        names = {p.name for p in (out / cid).iterdir()}
        assert {"segmentation.nii.gz", "results.json", "segmentation_labels.txt", "segmentation.ctbl",
                "gradcam.nii.gz", "batch.json"} <= names
    assert rows["siteB/missing_t2"]["status"] == "failed" and "missing modality t2" in rows["siteB/missing_t2"]["message"]
    assert rows["siteB/truncated"]["status"] == "failed" and "flair" in rows["siteB/truncated"]["message"]
    assert not (out / "siteB" / "missing_t2").exists()
    assert _snapshot(root) == cohort["before"]  # nothing written into the cohort
    assert cohort["loads"] == ["tiny-segresnet", "tiny-densenet"]  # models loaded once for 3 cases


def test_csv_columns_and_values_match_the_case_outputs(cohort):
    out, root = cohort["out"], cohort["root"]
    header, _ = co.read_csv(out / "cohort.csv")
    assert header == co.columns(["A", "O", "G"])
    rows = _rows(out / "cohort.csv")
    for cid in GOOD:
        row, summary = rows[cid], json.loads((out / cid / "results.json").read_text())
        for region in ("ET", "TC", "WT"):
            assert float(row[f"volume_{region}_ml"]) == pytest.approx(summary["volumes_ml"][region], rel=1e-4)
        assert row["predicted_class"] == summary["predicted_class"]
        assert sum(float(row[f"prob_{c}"]) for c in "AOG") == pytest.approx(1.0, abs=1e-4)
        assert int(row["lesion_count"]) == summary["measurements"]["lesion_count"]
        assert float(row["sum_of_products_mm2"]) == pytest.approx(summary["measurements"]["sum_of_products_mm2"])
        shas = {m["task"]: m["sha256"] for m in summary["models"]}
        assert row["seg_model_sha256"] == shas["segmentation"] and row["cls_model_sha256"] == shas["classification"]
        assert float(row["seconds"]) > 0 and row["resumed"] == "0"
        # Dice against the case's own labels, recomputed here from the two files on disk
        pred = np.asarray(nib.load(out / cid / "segmentation.nii.gz").dataobj)
        truth = np.asarray(nib.load(next((root / cid).glob("*_seg.nii.gz"))).dataobj)
        for region, values in (("WT", [1, 2, 4]), ("TC", [1, 4]), ("ET", [4])):
            a, b = np.isin(pred, values), np.isin(truth, values)
            assert float(row[f"dice_{region}"]) == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()), abs=1e-4)
        assert float(row["dice_WT"]) > 0.9
        assert float(row[f"ref_volume_WT_ml"]) > 0


def test_resume_skips_cases_whose_inputs_and_models_are_unchanged(cohort):
    out, root, models = cohort["out"], cohort["root"], cohort["models"]
    stamp = {cid: (out / cid / "results.json").stat().st_mtime_ns for cid in GOOD}
    t1 = next((root / GOOD[1]).glob("*_t1.nii.gz"))
    os.utime(t1, ns=(t1.stat().st_atime_ns, t1.stat().st_mtime_ns + 5_000_000_000))  # an input changed
    assert _batch(root, out, models) == 1
    rows = _rows(out / "cohort.csv")
    assert [rows[c]["resumed"] for c in GOOD] == ["1", "0", "1"]
    assert (out / GOOD[0] / "results.json").stat().st_mtime_ns == stamp[GOOD[0]]
    assert (out / GOOD[1] / "results.json").stat().st_mtime_ns != stamp[GOOD[1]]
    assert all(rows[c]["status"] == "failed" for c in BROKEN)  # failures are retried, and fail again
    assert rows[GOOD[0]]["volume_WT_ml"] != ""  # the recorded row, not an empty one


def test_parts_cover_every_case_once_and_merge(cohort, capsys):
    root, models, tmp = cohort["root"], cohort["models"], cohort["tmp"]
    out = tmp / "out-parts"
    for k in range(2):
        _batch(root, out, models, "--part", str(k), "--parts", "2")
    ids = sorted(GOOD + BROKEN)
    part_rows = [_rows(out / f"cohort-part-{k}-of-2.csv") for k in range(2)]
    assert sorted(part_rows[0]) == ids[0::2] and sorted(part_rows[1]) == ids[1::2]
    capsys.readouterr()
    assert main(["batch-merge", str(out)]) == 0
    assert "merged 2 parts: 5 cases (3 ok, 2 failed)" in capsys.readouterr().out
    merged = _rows(out / "cohort.csv")
    whole = _rows(cohort["out"] / "cohort.csv")
    assert sorted(merged) == ids
    for cid in GOOD:
        assert merged[cid]["volume_WT_ml"] == whole[cid]["volume_WT_ml"]


def test_select_part_is_deterministic_and_complete():
    cases = [co.CohortCase(f"c{i:02d}", Path("."), None) for i in (7, 3, 11, 0, 5, 9, 1)]
    for n in (1, 2, 3, 8):
        parts = [[c.id for c in co.select_part(list(reversed(cases)), k, n)] for k in range(n)]
        flat = sorted(sum(parts, []))
        assert flat == sorted(c.id for c in cases)  # every case once
        ordered = sorted(c.id for c in cases)
        assert parts[0] == ordered[0::n]
    with pytest.raises(Exception, match="--part"):
        co.select_part(cases, 3, 3)


def _write_parts(out: Path, rows_by_part: list[list[dict]], header=None, n=None) -> None:
    header = header or co.columns(["A", "O", "G"])
    for k, rows in enumerate(rows_by_part):
        co.write_csv(out / f"cohort-part-{k}-of-{n or len(rows_by_part)}.csv", header, rows)


def _row(case: str, sha: str = "a" * 64) -> dict:
    return {"case": case, "status": "ok", "seg_model_sha256": sha, "cls_model_sha256": "b" * 64}


@pytest.mark.parametrize("problem,match", [("header", "columns differ"), ("models", "different models"),
                                           ("missing", "part 1 of 3 missing"), ("duplicate", "is in")])
def test_merge_refuses_parts_that_do_not_belong_together(tmp_path, capsys, problem, match):
    if problem == "header":
        _write_parts(tmp_path, [[_row("a")]], n=2)
        co.write_csv(tmp_path / "cohort-part-1-of-2.csv", co.columns(["A", "G"]), [_row("b")])
    elif problem == "models":
        _write_parts(tmp_path, [[_row("a")], [_row("b", sha="c" * 64)]])
    elif problem == "missing":
        co.write_csv(tmp_path / "cohort-part-0-of-3.csv", co.columns([]), [_row("a")])
        co.write_csv(tmp_path / "cohort-part-2-of-3.csv", co.columns([]), [_row("c")])
    else:
        _write_parts(tmp_path, [[_row("a")], [_row("a")]])
    assert main(["batch-merge", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("braingui: error: ") and match in err[0]
    assert not (tmp_path / "cohort.csv").exists()


def test_find_cases_layouts(tmp_path):
    root = tmp_path / "cohort"
    make_case_folder(root / "HGG" / "Brats18_A", case_id="Brats18_A")
    make_case_folder(root / "LGG" / "x" / "bare", scheme="bare")
    for m, name in (("flair", "MR_Flair"), ("t1", "MR_T1"), ("t1ce", "MR_T1c"), ("t2", "MR_T2")):
        sub = root / "VSD_case" / f"VSD.Brain.XX.O.{name}.1"
        write_nifti(sub / f"VSD.Brain.XX.O.{name}.1.nii.gz", np.ones((8, 9, 10), np.float32))
    msd = root / "Task01" / "imagesTr"
    for i in (1, 2):
        write_nifti(msd / f"BRATS_00{i}.nii.gz", np.ones((8, 9, 10, 4), np.float32))
    write_nifti(root / "Task01" / "labelsTr" / "BRATS_001.nii.gz", np.zeros((8, 9, 10), np.uint8))
    out = root / "results"
    make_case_folder(out / "old", case_id="old")  # the output folder is never walked
    found = co.find_cases(root, exclude=(out,))
    ids = [c.id for c in found.cases]
    assert ids == ["HGG/Brats18_A", "LGG/x/bare", "Task01/imagesTr/BRATS_001", "Task01/imagesTr/BRATS_002", "VSD_case"]
    assert all(c.error is None for c in found.cases)
    assert [p.name for p, _ in found.skipped] == ["labelsTr"]
    single = co.find_cases(root / "HGG" / "Brats18_A")
    assert [c.id for c in single.cases] == ["Brats18_A"]


def test_report_hook_is_called_and_its_absence_is_said(cohort, monkeypatch, capsys):
    root, models, tmp = cohort["root"], cohort["models"], cohort["tmp"]
    monkeypatch.setattr(batch_mod, "REPORT_HOOK", ("braingui._no_such_report_module", "write_report"))
    out = tmp / "out-report"
    _batch(root, out, models, "--report", "--part", "0", "--parts", "3")
    assert "the PDF report is not available" in capsys.readouterr().err
    calls = []
    monkeypatch.setattr(batch_mod, "report_writer",
                        lambda: lambda case, result, path: calls.append(case.case_id) or path.write_bytes(b"%PDF-1.4"))
    _batch(root, out, models, "--report", "--part", "0", "--parts", "3")  # up-to-date cases still lack a report
    rows = _rows(out / "cohort-part-0-of-3.csv")
    ok = [c for c, r in rows.items() if r["status"] == "ok"]
    assert ok and all((out / c / "report.pdf").is_file() for c in ok) and len(calls) == len(ok)


def test_progress_shows_count_and_eta(cohort, capsys):
    root, models, tmp = cohort["root"], cohort["models"], cohort["tmp"]
    _batch(root, tmp / "out-progress", models, "--part", "1", "--parts", "2")
    err = capsys.readouterr().err
    assert "2/2 cases" in err and "ETA" in err
