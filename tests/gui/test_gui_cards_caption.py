"""The right panel's model lines (full card behind Details) and the caption band of the exported PNG
(pytest-qt, offscreen)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PySide6.QtGui import QColor, QImage

from braingui import __version__
from braingui.results import ModelInfo
from gui_helpers import fake_result, isolated_dirs, make_window, open_and_wait, small_case_dir  # noqa: F401 - fixtures

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("isolated_dirs")]

SEG_CARD = {"training_data": "twelve cases of a public challenge, with a very long description " * 5,
            "training_data_short": "BraTS 2018 (12 cases)",
            "metrics": {"n_cases": 2, "dice": {"ET": 0.8212, "TC": 0.6535, "WT": 0.8404},
                        "hd95_mm": {"ET": 3.0, "TC": 12.37, "WT": 8.62}},
            "limitations": "a long paragraph of limitations " * 10, "intended_use": "research demonstration"}
CLS_CARD = {"training_data": "Synthetic tumour-type phantoms (360 of them): more words follow here.",
            "synthetic_training_data": True, "metrics": {"n_cases": 60, "balanced_accuracy": 0.98333}}


@pytest.fixture
def panel(qtbot, small_case_dir):
    from braingui.case import load_case
    from braingui.ui.results_panel import ResultsPanel

    panel = ResultsPanel()
    qtbot.addWidget(panel)
    panel.resize(420, 900)
    panel.show()
    result = fake_result(load_case(small_case_dir))
    result.models = [ModelInfo("seg-bundle", "segmentation", "/x", "1" * 64, True, SEG_CARD),
                     ModelInfo("cls-bundle", "classification", "/y", "2" * 64, True, CLS_CARD)]
    panel.show_result(result)
    return panel


def test_each_model_is_one_summary_line_with_its_card_behind_details(qtbot, panel):
    from PySide6.QtCore import Qt

    rows = panel.model_rows
    assert len(rows) == 2
    seg, cls = (r.summary.text() for r in rows)
    assert "seg-bundle" in seg and "BraTS 2018 (12 cases)" in seg and "Dice WT 0.84 \u00b7 TC 0.65 \u00b7 ET 0.82 on 2 cases" in seg
    assert "cls-bundle" in cls and "Synthetic tumour-type phantoms" in cls and "balanced accuracy 0.98 on 60 cases" in cls
    assert "limitations" not in seg and "HD95" not in seg and "more words" not in cls  # the summary stays short
    for row in rows:
        assert row.details.isHidden() and row.details_button.text() == "Details"
    collapsed = panel.sizeHint().height()
    qtbot.mouseClick(rows[0].details_button, Qt.MouseButton.LeftButton)
    assert not rows[0].details.isHidden() and rows[1].details.isHidden()
    assert "HD95 ET 3 \u00b7 TC 12.4 \u00b7 WT 8.62 mm" in rows[0].details.text()
    assert "a long paragraph of limitations" in rows[0].details.text()
    assert panel.sizeHint().height() > collapsed + 60  # the full card is what made the panel scroll
    qtbot.mouseClick(rows[0].details_button, Qt.MouseButton.LeftButton)
    assert rows[0].details.isHidden()
    panel.show_result(None)
    assert panel.model_rows == [] and panel.models_box.isHidden()


def test_the_shipped_cards_summarise_their_data_by_name(qtbot, small_case_dir):
    from braingui.case import load_case
    from braingui.inference.locate import PACKAGE_MODELS
    from braingui.inference.manifest import read_bundle
    from braingui.ui.results_panel import ResultsPanel

    panel = ResultsPanel()
    qtbot.addWidget(panel)
    result = fake_result(load_case(small_case_dir))
    result.models = []
    for name in ("demo-segresnet", "demo-densenet169"):
        m = read_bundle(PACKAGE_MODELS / name).manifest
        result.models.append(ModelInfo(name, m.task, "/x", m.sha256, True, m.model_card))
    panel.show_result(result)
    seg, cls = (r.summary.text() for r in panel.model_rows)
    assert "BraTS 2018 (12 cases) + synthetic phantoms" in seg and "Dice WT" in seg
    assert "synthetic tumour types (phantoms + recast BraTS brains)" in cls and "balanced accuracy" in cls
    details = panel.models_text()
    assert "shared/data" not in details
    assert "<a href='https://www.med.upenn.edu/sbia/brats2018.html'>" in panel.model_rows[0].details.text()


def test_caption_lines_name_case_time_class_software_and_research_use(small_case_dir):
    from braingui.case import load_case
    from braingui.ui.caption import RESEARCH_LINE, caption_lines

    case = load_case(small_case_dir)
    result = fake_result(case)
    when = datetime(2024, 3, 5, 14, 7, tzinfo=timezone(timedelta(hours=1)))
    view = {"plane": "axial", "slice": 12, "n_slices": 40, "modality": "flair"}
    first, second = caption_lines(case.case_id, result, view, when)
    assert first.startswith(f"Case {case.case_id}") and "2024-03-05 14:07 UTC+0100" in first
    assert "predicted glioblastoma (G) 70.0%" in first and "axial slice 12/40, FLAIR" in first
    assert f"braingui {__version__}" in second and second.endswith(RESEARCH_LINE)
    assert RESEARCH_LINE == "Research use only - not for clinical use"
    assert "demonstration" in second  # the stand-in result says its models are demo models
    assert "synthetic phantom, not a patient" not in first
    assert caption_lines(case.case_id, result, view, when, synthetic=True)[0].startswith(
        f"Case {case.case_id} (synthetic phantom, not a patient)  \u00b7  ")
    result.predicted_class = None
    assert "no classification" in caption_lines(case.case_id, result, None, when)[0]
    assert "no classification" in caption_lines(case.case_id, None, None, when)[0]


def _band_pixels(image: QImage, top: int) -> np.ndarray:
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(rgb.constBits(), np.uint8).reshape(rgb.height(), rgb.bytesPerLine())[:, :rgb.width() * 3]
    return arr.reshape(rgb.height(), rgb.width(), 3)[top:].copy()  # a copy: rgb's buffer goes with rgb


def test_the_exported_png_has_a_caption_band_with_text(qtbot, small_case_dir, tmp_path):
    from braingui.ui.caption import BAND_BACKGROUND, add_caption

    win = make_window(qtbot)
    open_and_wait(qtbot, win, small_case_dir)
    with qtbot.waitSignal(win.analysis_done, timeout=10000):
        win.run_analysis()
    figure = win.figure.grab().toImage()
    written = win.export_to(tmp_path)
    png = next(p for p in written if p.suffix == ".png")
    image = QImage(str(png))
    assert image.width() == figure.width() and image.height() > figure.height() + 20
    band = _band_pixels(image, figure.height())
    background = np.all(band == BAND_BACKGROUND, axis=-1)
    assert background.mean() > 0.6 and (~background).sum() > 500  # a dark band, with text in it
    # the text is the caption: the same band with other text differs, a blank one has no text at all
    blank = _band_pixels(add_caption(figure, ("", "")), figure.height())
    assert np.all(blank == BAND_BACKGROUND)
    other = _band_pixels(add_caption(figure, ("Case someone_else", "x")), figure.height())
    assert other.shape[1] == band.shape[1] and not np.array_equal(other[:band.shape[0]], band[:other.shape[0]])
    # the panes above the band are the grab, unchanged
    top = _band_pixels(image, 0)[:figure.height()]
    assert np.mean(np.all(top == _band_pixels(figure, 0), axis=-1)) > 0.99
    assert QColor(*BAND_BACKGROUND).name() == "#161616"
