"""The PDF case report (:mod:`braingui.ui.report_pdf`), read back with poppler's ``pdftotext``: the window's
File > Report..., the headless ``--report FILE.pdf`` and ``braingui batch --report``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from braingui.case import load_case
from braingui.errors import BrainguiError
from braingui.measurements import measure
from braingui.ui import report_pdf
from gui_helpers import fake_result, isolated_dirs, make_window, open_and_wait, small_case_dir  # noqa: F401 - fixtures
from helpers import REPO_ROOT

PDFTOTEXT = shutil.which("pdftotext")
needs_pdftotext = pytest.mark.skipif(PDFTOTEXT is None, reason="pdftotext (poppler-utils) is not installed: "
                                     "apt-get install -y poppler-utils")
RESEARCH = "Research use only - not for clinical use"
EXPLANATION = {"method": "gradcam", "layer": "features.denseblock1", "class": "G", "mass_in_wt": 0.4321,
               "wt_fraction_of_brain": 0.0612, "enrichment": 7.06, "mass_outside_brain": 0.0345, "peak_in_wt": True,
               "peak_in_brain": True,
               "reference": {"mass_in_wt": 0.5123, "wt_fraction_of_brain": 0.0588, "enrichment": 8.71,
                             "mass_outside_brain": 0.0345, "peak_in_wt": True, "peak_in_brain": True},
               "tumour_occlusion": {"class": "A", "probabilities": {"A": 0.613, "O": 0.287, "G": 0.1}},
               "modality_ablation": {"flair": -0.384, "t1": 0.012, "t1ce": -0.121, "t2": -0.057},
               "deletion": {"map_auc": 0.412, "random_auc": 0.655}, "randomisation": {"spearman": 0.214, "flag": False}}
FLAGS = [{"code": "far_component", "message": "a tumour component lies 34 mm from the main lesion: check it"},
         {"code": "brain_edge", "message": "tumour along the edge of the brain mask: skull left on?"}]


def pdf_text(path: Path) -> list[str]:
    """The text of each page of a PDF (``pdftotext``), whitespace collapsed."""
    out = subprocess.run([PDFTOTEXT, str(path), "-"], capture_output=True, text=True, check=True).stdout
    return [" ".join(page.split()) for page in out.split("\f") if page.strip()]


def full_result(case):
    """The stand-in result with measurements, TTA uncertainty, quality flags and an explanation."""
    r = fake_result(case)
    r.measurements = measure(r.labels, case.grid.affine)
    r.tta_views = 8
    r.uncertainty_regions = {"WT": {"mean": 0.0152, "volume_ml_range": [190.857, 212.5]},
                             "TC": {"mean": 0.0102, "volume_ml_range": [40.525, 45.015]},
                             "ET": {"mean": 0.0184, "volume_ml_range": [18.562, 20.929]}}
    r.quality_flags = [dict(f) for f in FLAGS]
    r.models[0].model_card["metrics"] = {"dice": {"WT": 0.84, "TC": 0.65, "ET": 0.82}, "n_cases": 2}
    r.explanation = dict(EXPLANATION)  # results.json's "explanation" (issue 12)
    return r


@pytest.fixture
def small_case(small_case_dir):
    return load_case(small_case_dir)


@needs_pdftotext
def test_report_holds_the_case_and_every_number(small_case, tmp_path, qapp):
    r = full_result(small_case)
    path = report_pdf.write_report(small_case, r, tmp_path / "reports" / "r.pdf")
    assert path.read_bytes()[:5] == b"%PDF-" and sorted(p.name for p in path.parent.iterdir()) == ["r.pdf"]
    pages = pdf_text(path)
    assert 1 <= len(pages) <= 2 and all(RESEARCH in p for p in pages)
    assert all(f"page {n} of {len(pages)}" in p for n, p in enumerate(pages, start=1))
    text = " ".join(pages)
    s = r.summary()
    ref = small_case.region_volumes_ml()
    expected = [small_case.case_id, "braingui " + report_pdf.build_report(small_case, r).software_version,
                "Glioblastoma (G), probability 0.700", "0" * 64, "Dice WT 0.84"]
    expected += [f"{v:.2f}" for v in s["volumes_ml"].values()] + [f"{v:.2f}" for v in ref.values()]
    expected += [f"{p:.3f}" for p in s["probabilities"].values()]
    for les in s["measurements"]["lesions"]:
        expected += [f"{les['longest_mm']:.1f}", f"{les['perpendicular_mm']:.1f}", f"{les['product_mm2']:.1f}"]
    for region, u in s["uncertainty"].items():
        expected += [f"{u['mean']:.3f}", f"{u['volume_ml_range'][0]:.2f} - {u['volume_ml_range'][1]:.2f}"]
    e = EXPLANATION
    expected += [f"{e[k]:.3f}" for k in ("mass_in_wt", "wt_fraction_of_brain", "mass_outside_brain")]
    expected += [f"{e['reference'][k]:.3f}" for k in ("mass_in_wt", "wt_fraction_of_brain")]
    expected += [f"{e['enrichment']:.2f}", f"{e['reference']['enrichment']:.2f}", "A 0.613", "FLAIR -0.384",
                 "T1ce -0.121", "0.412 / 0.655", "Spearman 0.214", "Sanity check passed."]
    expected += [f["code"] for f in FLAGS]
    missing = [x for x in expected if x not in text]
    assert not missing, missing
    assert "The classifier was trained on synthetic tumour types only" not in text  # the stand-in card says no such thing


@needs_pdftotext
def test_synthetic_classifier_warning_and_no_explanation(small_case, tmp_path, qapp):
    from braingui.ui.results_panel import SYNTHETIC_CLASSIFIER

    r = fake_result(small_case)
    r.models.append(type(r.models[0])("cls", "classification", "/c", "c" * 64, True,
                                      {"synthetic_training_data": True, "metrics": {"balanced_accuracy": 0.98}}))
    text = " ".join(pdf_text(report_pdf.write_report(small_case, r, tmp_path / "r.pdf")))
    assert " ".join(SYNTHETIC_CLASSIFIER.split()) in text and "balanced accuracy 0.98" in text and "c" * 64 in text
    assert "Explanation" not in text and "No quality flag was raised." in text


@needs_pdftotext
def test_report_of_a_case_without_an_analysis(small_case, tmp_path, qapp):
    text = " ".join(pdf_text(report_pdf.write_report(small_case, None, tmp_path / "r.pdf")))
    assert small_case.case_id in text and "No segmentation model was run." in text and "Predicted" not in text
    assert all(f"{v:.2f}" in text for v in small_case.region_volumes_ml().values())


def test_atomic_write_keeps_the_old_file_on_failure(small_case, tmp_path, qapp, monkeypatch):
    target = tmp_path / "r.pdf"
    target.write_bytes(b"old")
    monkeypatch.setattr(report_pdf, "render_pdf", lambda content, tmp: Path(tmp).write_bytes(b"%PDF-half") and 1 / 0)
    with pytest.raises(ZeroDivisionError):
        report_pdf.write_report(small_case, fake_result(small_case), target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["r.pdf"]


def test_report_path_in_the_case_folder_is_refused(small_case, small_case_dir, tmp_path):
    with pytest.raises(BrainguiError, match="case folder"):
        report_pdf.check_report_path(small_case_dir / "r.pdf", small_case)
    with pytest.raises(BrainguiError, match="is a folder"):
        report_pdf.check_report_path(tmp_path, small_case)
    assert report_pdf.check_report_path(small_case_dir / "r.pdf", small_case, force_in_case=True).name == "r.pdf"
    (tmp_path / "file").write_text("x")
    with pytest.raises(BrainguiError, match="cannot write in"):
        report_pdf.check_report_path(tmp_path / "file" / "sub" / "r.pdf", small_case)


@needs_pdftotext
def test_window_file_report_writes_what_the_window_shows(qtbot, small_case_dir, tmp_path, isolated_dirs, monkeypatch):
    win = make_window(qtbot)
    assert "Report" in [a.text().replace("&", "").rstrip("\u2026") for a in win.menuBar().actions()[0].menu().actions()]
    case = open_and_wait(qtbot, win, small_case_dir)
    win.ctx.set_result(full_result(case))
    win.ctx.set_modality("t1ce")
    path = report_pdf.write_window_report(win, tmp_path / "w.pdf")
    text = " ".join(pdf_text(path))
    assert case.case_id in text and "T1ce" in text and "FLAIR +" not in text  # the pane notes name the sequence shown
    from PySide6.QtWidgets import QFileDialog

    asked = []  # File > Report...: the name from the dialog gets ".pdf" when it has none
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a: asked.append(a[2]) or (str(tmp_path / "menu"), "")))
    win.report_action.trigger()
    assert asked and asked[0].endswith(f"{case.case_id}_report.pdf") and (tmp_path / "menu.pdf").is_file()
    win.interactive = False
    assert report_pdf.write_window_report(win, small_case_dir / "no.pdf") is None
    assert "case folder" in win.last_error and not (small_case_dir / "no.pdf").exists()


# ----- headless and batch, with the tiny model bundles
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from inference_helpers import make_models_dir, write_tiny_case

    tmp = tmp_path_factory.mktemp("report_cli")
    cohort = tmp / "cohort"
    for i in range(2):
        write_tiny_case(cohort / f"case{i}", seed=i, case_id=f"SYNTHETIC_tiny{i}")
    return tmp, cohort, make_models_dir(tmp / "models")


@needs_pdftotext
def test_headless_report_without_a_display(tiny):
    tmp, cohort, models = tiny
    out = tmp / "out"
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",  # no DISPLAY, no QT_QPA_PLATFORM
           "XDG_DATA_HOME": str(tmp / "xdg"), "XDG_CACHE_HOME": str(tmp / "xdg-cache"), "HOME": str(tmp)}
    proc = subprocess.run([sys.executable, "-m", "braingui.app", "--case", str(cohort / "case0"), "--no-gui",
                           "--out", str(out), "--models", str(models), "--device", "cpu", "--tta", "2",
                           "--report", str(out / "report.pdf")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"{out / 'report.pdf'}" in next(line for line in proc.stdout.splitlines() if line.startswith("wrote "))
    summary = json.loads((out / "results.json").read_text())
    text = " ".join(pdf_text(out / "report.pdf"))
    assert summary["case_id"] in text
    for value in summary["volumes_ml"].values():
        assert f"{value:.2f}" in text
    for p in summary["probabilities"].values():
        assert f"{p:.3f}" in text
    for m in summary["models"]:
        assert m["sha256"] in text


def test_report_needs_the_headless_run(tiny, capsys):
    from braingui.app.cli import main

    tmp, cohort, _ = tiny
    assert main(["--case", str(cohort / "case0"), "--report", str(tmp / "x.pdf")]) == 1
    assert "--report is written by headless runs" in capsys.readouterr().err


@needs_pdftotext
def test_batch_report_writes_one_pdf_per_case(tiny, qapp, monkeypatch):
    from braingui.app import batch
    from braingui.app.cli import main

    tmp, cohort, models = tiny
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp / "xdg"))
    assert batch.REPORT_HOOK == ("braingui.ui.report_pdf", "write_report") and batch.report_writer() is report_pdf.write_report
    out = tmp / "batch"
    assert main(["batch", str(cohort), "--out", str(out), "--models", str(models), "--device", "cpu", "--tta", "1",
                 "--report"]) == 0
    for i in range(2):
        text = " ".join(pdf_text(out / f"case{i}" / batch.REPORT_NAME))
        summary = json.loads((out / f"case{i}" / "results.json").read_text())
        assert f"SYNTHETIC_tiny{i}" in text and f"SYNTHETIC_tiny{1 - i}" not in text
        assert all(f"{v:.2f}" in text for v in summary["volumes_ml"].values())


def test_a_section_that_would_straddle_a_page_end_starts_the_next_page(qapp):
    from PySide6.QtCore import QSizeF
    from PySide6.QtGui import QTextDocument

    doc = QTextDocument()
    doc.setPageSize(QSizeF(400, 300))
    doc.setHtml("<p>" + "<br>".join(["filler"] * 14) + "</p><h2>Volumes</h2><p>" + "<br>".join(["row"] * 6) + "</p>"
                "<h2>Long</h2><p>" + "<br>".join(["line"] * 40) + "</p>")
    layout = doc.documentLayout()
    heads = [b for b in (doc.findBlockByNumber(n) for n in range(doc.blockCount())) if b.blockFormat().headingLevel()]
    body = layout.blockBoundingRect(heads[0].next())
    assert layout.blockBoundingRect(heads[0]).top() < 300 < body.bottom()  # "Volumes" starts on page 1, ends on 2
    assert report_pdf.keep_sections_together(doc) == 1  # "Long" is taller than a page: it stays where it falls
    layout.documentSize()
    assert 300 <= layout.blockBoundingRect(heads[0]).top() < 330
