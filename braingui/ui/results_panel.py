"""The results panel: prediction, class probabilities, region volumes, models, device and timings.

Honesty rules: the "not for clinical use" line is always there; results of research-demonstration
models (``ModelInfo.demo``) carry a red warning; reference volumes from the case's own label file are
shown beside the model's so the user can compare.

Each model is one summary line (name, training data, headline metrics: :func:`model_summary_html`);
its full card (:func:`model_card_html`) opens under it with the line's Details button.
"""

from __future__ import annotations

import html
import re
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QGridLayout, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QToolButton, QVBoxLayout,
                               QWidget)

from braingui.labels import REGION_TITLES, REGIONS
from braingui.ui.explanation_panel import ExplanationPanel, selectable_label as _label
from braingui.results import AnalysisResult
from braingui.uncertainty import range_text

DEMO_WARNING = "Research demonstration models \u2014 not for clinical use"
NOT_CLINICAL = "Research software \u2014 not for clinical use."


SYNTHETIC_CLASSIFIER = ("The classifier was trained on synthetic tumour types only (phantoms, and real brains whose "
                        "tumours were recast as A / O / G), never on diagnosed patients: on real MRI this class is "
                        "not a diagnosis and its accuracy is unknown.")


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def metrics_text(metrics: dict) -> str:
    """One readable line of a model card's ``metrics`` (per-case rows and long lists left out)."""
    parts = []
    n = metrics.get("n_cases")
    if isinstance(metrics.get("dice"), dict):
        parts.append("Dice " + " \u00b7 ".join(f"{r} {_fmt(v)}" for r, v in metrics["dice"].items()))
    if isinstance(metrics.get("hd95_mm"), dict):
        parts.append("HD95 " + " \u00b7 ".join(f"{r} {_fmt(v)}" for r, v in metrics["hd95_mm"].items()) + " mm")
    for key, title in (("balanced_accuracy", "balanced accuracy"), ("f1_macro", "F1 macro"), ("kappa", "kappa")):
        if isinstance(metrics.get(key), (int, float)):
            parts.append(f"{title} {_fmt(float(metrics[key]))}")
    cam = metrics.get("gradcam")
    if isinstance(cam, dict) and isinstance(cam.get("cam_mass_in_wt_mean"), (int, float)):
        parts.append(f"Grad-CAM mass inside the whole tumour {float(cam['cam_mass_in_wt_mean']):.0%}")
    if not parts:  # an unknown layout: its scalar values
        parts = [f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in metrics.items() if isinstance(v, (int, float, str))]
    cases = metrics.get("cases")
    where = f" on {n} case{'s' if n != 1 else ''}" if isinstance(n, int) else ""
    if isinstance(cases, list) and 0 < len(cases) <= 4:
        where += f" ({', '.join(map(str, cases))})"
    return "; ".join(parts) + where


def _linked(escaped: str) -> str:
    """HTML-escaped text with its web addresses made links."""
    return re.sub(r"(https?://[^\s;)<]+[^\s;)<.,])", r"<a href='\1'>\1</a>", escaped)


def model_card_html(info, title: bool = True) -> str:
    """The full card of one model bundle as HTML (``title``: start with its name and task)."""
    card = info.model_card or {}
    rows = [f"<b>{html.escape(info.name)}</b> ({html.escape(info.task)})"] if title else []
    if info.demo:
        rows.append("<span style='color:#e05050'><b>demo model</b></span>")
    if card.get("synthetic_training_data"):
        rows.append(f"<span style='color:#d0a040'>{html.escape(SYNTHETIC_CLASSIFIER)}</span>")
    for key in ("summary", "training_data", "metrics", "intended_use", "limitations"):
        value = card.get(key)
        if value:
            text = metrics_text(value) if key == "metrics" and isinstance(value, dict) else (
                ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) if isinstance(value, dict) else str(value))
            rows.append(f"<i>{key.replace('_', ' ')}</i>: {_linked(html.escape(text))}")
    citations = card.get("citations")
    if isinstance(citations, list) and citations:
        rows.append("<i>cite</i>: " + html.escape(" \u2022 ".join(map(str, citations))))
    rows.append(f"<span style='color:#888'>sha256 {html.escape(info.sha256[:12])}\u2026</span>")
    return "<br>".join(rows)


def headline_metrics(metrics: Any) -> str:
    """The card's main numbers in a few words: Dice per region for a segmenter, balanced accuracy for a
    classifier (``Dice WT 0.84 · TC 0.65 · ET 0.82 on 2 cases``); else the first part of :func:`metrics_text`."""
    if not isinstance(metrics, dict) or not metrics:
        return "no metrics recorded"
    n = metrics.get("n_cases")
    where = f" on {n} case{'s' if n != 1 else ''}" if isinstance(n, int) else ""
    dice = metrics.get("dice")
    if isinstance(dice, dict) and dice:
        order = [r for r in ("WT", "TC", "ET") if r in dice] + [r for r in dice if r not in ("WT", "TC", "ET")]
        return "Dice " + " · ".join(f"{r} {float(dice[r]):.2f}" for r in order) + where
    if isinstance(metrics.get("balanced_accuracy"), (int, float)):
        return f"balanced accuracy {float(metrics['balanced_accuracy']):.2f}" + where
    return metrics_text(metrics).split("; ")[0]


def training_data_short(card: dict) -> str:
    """The card's training data in a few words (``training_data_short``, else the start of ``training_data``)."""
    short = card.get("training_data_short")
    if isinstance(short, str) and short:
        return short
    text = str(card.get("training_data") or "not recorded")
    head = text.split(". ")[0].split(" (")[0]
    return head if len(head) <= 60 else head[:59].rstrip() + "…"


def model_summary_html(info) -> str:
    """One line about a model bundle: name and task, training data, headline metrics (HTML)."""
    card = info.model_card or {}
    return (f"<b>{html.escape(info.name)}</b> ({html.escape(info.task)}) — trained on "
            f"{html.escape(training_data_short(card))} — {html.escape(headline_metrics(card.get('metrics')))}")


class ModelRow(QWidget):
    """One model: its summary line with a Details button that shows / hides the full card under it."""

    def __init__(self, info, parent: QWidget | None = None):
        super().__init__(parent)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(2)
        head = QHBoxLayout()
        self.summary = _label(model_summary_html(info))
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        head.addWidget(self.summary, 1)
        self.details_button = QToolButton()
        self.details_button.setText("Details")
        self.details_button.setCheckable(True)
        self.details_button.setArrowType(Qt.ArrowType.RightArrow)
        self.details_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.details_button.setToolTip(f"Show the full model card of {info.name}")
        self.details_button.toggled.connect(self.set_expanded)
        head.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignTop)
        col.addLayout(head)
        self.details = _label(model_card_html(info, title=False))
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setOpenExternalLinks(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.details.setStyleSheet("margin-left: 10px;")
        self.details.setVisible(False)
        col.addWidget(self.details)

    def set_expanded(self, on: bool) -> None:
        """Show (``True``) or hide the full card."""
        self.details.setVisible(on)
        self.details_button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        if self.details_button.isChecked() != on:
            self.details_button.setChecked(on)


class ResultsPanel(QWidget):
    """Shows one :class:`AnalysisResult` (and the case's reference volumes, when it has a label file)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        col = QVBoxLayout(self)
        col.setContentsMargins(4, 4, 4, 4)
        self.case_info = _label("")
        self.case_info.setTextFormat(Qt.TextFormat.RichText)
        col.addWidget(self.case_info)
        self.demo_banner = _label(DEMO_WARNING)
        self.demo_banner.setStyleSheet("background:#7a1010; color:white; font-weight:bold; padding:6px; border-radius:3px;")
        self.demo_banner.setVisible(False)
        col.addWidget(self.demo_banner)
        self.prediction = _label("No analysis yet")
        self.prediction.setStyleSheet("font-size: 16px; font-weight: bold;")
        col.addWidget(self.prediction)
        self.note = _label("")
        self.note.setStyleSheet("color: #d0a040;")
        self.note.setVisible(False)
        col.addWidget(self.note)
        self.prob_box = QGroupBox("Class probabilities")
        self.prob_grid = QGridLayout(self.prob_box)
        col.addWidget(self.prob_box)
        self.prob_bars: dict[str, QProgressBar] = {}
        self.explanation = ExplanationPanel()  # the verdict on the heat map shown (braingui.ui.explanation_panel)
        col.addWidget(self.explanation)
        vol_box = QGroupBox("Tumour volumes (mL)")
        self.vol_grid = QGridLayout(vol_box)
        col.addWidget(vol_box)
        self.volume_labels: dict[tuple[str, str], QLabel] = {}
        for c, head in enumerate(("", "model", "reference")):
            self.vol_grid.addWidget(_label(f"<b>{head}</b>"), 0, c)
        for r, region in enumerate(REGIONS, start=1):
            name = _label(f"{region}")
            name.setToolTip(REGION_TITLES[region])
            self.vol_grid.addWidget(name, r, 0)
            for c, source in enumerate(("model", "reference"), start=1):
                lab = _label("\u2013")
                lab.setAlignment(Qt.AlignmentFlag.AlignRight)
                self.vol_grid.addWidget(lab, r, c)
                self.volume_labels[(region, source)] = lab
        self.measure = _label("")
        self.measure.setToolTip("RANO-style bidimensional measurement of each enhancing lesion (connected component "
                                "of ET; of TC where there is no ET): longest axial diameter x the longest one "
                                "perpendicular to it; measurable when both are at least 10 mm")
        col.addWidget(self.measure)
        self.quality_box = QGroupBox("Quality checks")
        self.quality = _label("")
        QVBoxLayout(self.quality_box).addWidget(self.quality)
        self.quality_box.setVisible(False)
        col.addWidget(self.quality_box)
        self.model_rows: list[ModelRow] = []
        self.models_box = QGroupBox("Models")
        self.models_layout = QVBoxLayout(self.models_box)
        col.addWidget(self.models_box)
        self.run_info = _label("")
        col.addWidget(self.run_info)
        self.warnings = _label("")
        self.warnings.setStyleSheet("color: #d08020;")
        col.addWidget(self.warnings)
        note = _label(NOT_CLINICAL)
        note.setStyleSheet("color: #999;")
        col.addWidget(note)
        col.addStretch(1)
        self.show_result(None)

    def show_case(self, case) -> None:
        """One header line about the case: id, grid, voxel size, stored orientation; synthetic or not."""
        if case is None:
            self.case_info.setText("")
            return
        shape = "\u00d7".join(str(n) for n in case.grid.shape)
        spacing = "\u00d7".join(f"{v:.3g}" for v in case.grid.spacing)
        synthetic = "<br><span style='color:#d0a040'>synthetic phantom \u2014 not a patient</span>" if case.is_synthetic else ""
        self.case_info.setText(f"<b>{html.escape(case.case_id)}</b><br><span style='color:#aaa'>{shape} voxels, "
                               f"{spacing} mm, stored {''.join(case.grid.original_axcodes)}</span>{synthetic}")
        self.case_info.setToolTip("\n".join(str(p) for p in case.files.all_files()))

    def show_note(self, text: str) -> None:
        """A line under the prediction (e.g. why the analysis did not start)."""
        self.prediction.setText("No analysis yet")
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def show_reference_volumes(self, volumes: dict[str, float] | None) -> None:
        """Volumes of the case's own label map (``None``: the case has none)."""
        for region in REGIONS:
            text = f"{volumes[region]:.1f}" if volumes else "\u2013"
            self.volume_labels[(region, "reference")].setText(text)

    def show_result(self, result: AnalysisResult | None, case_warnings: list[str] | None = None) -> None:
        """Fill the panel from ``result`` (``None`` clears it)."""
        for bar in self.prob_bars.values():
            self.prob_grid.removeWidget(bar)
            bar.deleteLater()
        while self.prob_grid.count():
            item = self.prob_grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.prob_bars = {}
        warnings = list(case_warnings or [])
        self.note.setVisible(False)
        if result is None:
            self.prediction.setText("No analysis yet")
            self.demo_banner.setVisible(False)
            self.prob_box.setVisible(False)
            self.explanation.show_explanation(None, visible=False)
            for region in REGIONS:
                self.volume_labels[(region, "model")].setText("\u2013")
                self.volume_labels[(region, "model")].setToolTip("")
            self.show_quality(None)
            self.measure.setText("")
            self._show_models([])
            self.models_box.setVisible(False)
            self.run_info.setText("")
            self.warnings.setText("<br>".join(html.escape(w) for w in warnings))
            return
        self.demo_banner.setVisible(result.demo_models)
        pred = result.predicted_class
        if pred is not None:
            title = result.class_titles.get(pred, pred)
            self.prediction.setText(f"{title.capitalize()} ({pred}) \u2014 {result.probabilities.get(pred, 0.0):.1%}")
        else:
            self.prediction.setText("Segmentation only (no classifier)")
        synthetic = [m for m in result.models if m.task == "classification" and (m.model_card or {}).get("synthetic_training_data")]
        if synthetic and pred is not None:
            self.note.setText(SYNTHETIC_CLASSIFIER)
            self.note.setVisible(True)
        self.prob_box.setVisible(bool(result.probabilities))
        for r, code in enumerate(result.class_names or tuple(result.probabilities)):
            p = float(result.probabilities.get(code, 0.0))
            self.prob_grid.addWidget(_label(f"{result.class_titles.get(code, code)} ({code})", wrap=False), r, 0)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setValue(round(p * 1000))
            bar.setFormat(f"{p:.1%}")
            bar.setTextVisible(True)
            chunk = "#3a7bd5" if code == pred else "#5a6f8f"
            bar.setStyleSheet("QProgressBar { text-align: center; border: 1px solid #555; border-radius: 2px; }"
                              f"QProgressBar::chunk {{ background: {chunk}; }}")
            self.prob_grid.addWidget(bar, r, 1)
            self.prob_bars[code] = bar
        explanation = getattr(result, "explanation", None)
        self.explanation.show_explanation(explanation, result.class_titles, pred,
                                          visible=bool(result.cams) or explanation is not None)
        self.explanation.show_comparison({})  # the classes side by side: filled by braingui.ui.cam_requests
        for region in REGIONS:
            v = result.volumes_ml.get(region)
            spread = range_text(region, result.uncertainty_regions, result.tta_views) if v is not None else ""
            label = self.volume_labels[(region, "model")]
            label.setText("\u2013" if v is None else f"{v:.1f}" + (f" ({spread})" if spread else ""))
            region_unc = (result.uncertainty_regions or {}).get(region) or {}
            label.setToolTip(f"mean uncertainty inside the predicted {region}: {region_unc['mean']:.3f} "
                             f"(s.d. of the probability across {result.tta_views} flipped views)"
                             if "mean" in region_unc else "")
        self.show_quality(result.quality_flags)
        from braingui.measurements import measurements_text  # scipy: not on the start-up path

        m = getattr(result, "measurements", None)
        self.measure.setText("" if result.labels is None else f"<b>Measurements</b>: {html.escape(measurements_text(m))}")
        self._show_models(result.models)
        self.models_box.setVisible(True)
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings_s.items()) or "\u2013"
        layer = f"<br>Grad-CAM layer: {html.escape(result.cam_layer)}" if result.cam_layer else ""
        self.run_info.setText(f"Device: <b>{html.escape(result.device)}</b><br>Timings: {html.escape(timing)}{layer}")
        warnings += [w for w in result.warnings if w not in warnings]
        self.warnings.setText("<br>".join(html.escape(w) for w in warnings))

    def show_quality(self, flags: list[dict] | None) -> None:
        """The segmentation's quality flags (:func:`braingui.quality.assess`), each saying what to check;
        "no flag raised" after an analysis without any."""
        self.quality_box.setVisible(flags is not None)
        if not flags:
            self.quality.setText("<span style='color:#7c7'>no flag raised</span>")
            return
        self.quality.setText("<br>".join(f"<b style='color:#e8a33d'>{html.escape(f['code'])}</b>: "
                                         f"{html.escape(f['message'])}" for f in flags))

    def _show_models(self, models) -> None:
        """One :class:`ModelRow` per model (``none`` without any)."""
        while self.models_layout.count():
            item = self.models_layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.model_rows = [ModelRow(info) for info in models]
        for row in self.model_rows:
            self.models_layout.addWidget(row)
        if not self.model_rows:
            self.models_layout.addWidget(_label("none"))

    def models_text(self) -> str:
        """The full text of every model card shown (summary lines and details), for tests and copying."""
        return "\n".join(f"{row.summary.text()}\n{row.details.text()}" for row in self.model_rows)
