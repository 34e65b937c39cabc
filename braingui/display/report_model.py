"""The content of the PDF case report, as plain data: text, tables, the pane layers and the numbers.

:func:`build_report` reads a :class:`~braingui.case.Case` and its :class:`~braingui.results.AnalysisResult`
(numbers from ``result.summary()``, the dict ``results.json`` holds, so the report shows what the JSON
says) and returns a :class:`ReportContent`; :mod:`braingui.ui.report_pdf` lays it out on A4 and paints it
with Qt. Nothing here imports Qt.

The panes are cut at the largest-tumour slice of each plane (:meth:`DisplayContext.tumour_voxel`; the
hottest Grad-CAM voxel, else the volume centre, without a tumour) by :mod:`braingui.display.report_panes`,
which also gives the largest lesion's measured slice with its two diameters.

Number formats (:data:`FORMATS`): volumes 2 decimals (mL), probabilities and map fractions 3 decimals,
diameters 1 decimal (mm), products 1 decimal (mm^2), enrichment 2 decimals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from braingui import __version__
from braingui import labels as lab
from braingui.cam_names import CONTRASTIVE_METHODS, METHOD_HINTS, METHOD_TITLES  # noqa: F401 - re-exported
from braingui.discovery import MODALITY_TITLES
from braingui.display import colormaps, planes
from braingui.display.context import DisplayContext
from braingui.display.report_panes import PlaneSlices, display_context, measured_view, plane_slices

PANES: tuple[tuple[str, str], ...] = (("segmentation", "Segmentation"), ("gradcam", "Grad-CAM"),
                                      ("original", "Original"), ("overlay", "Overlay"))
"""``(key, title)`` of the four panes, in the window's order (:data:`braingui.ui.pane_grid.PANES`)."""
MAX_LESION_ROWS = 8
"""Lesions listed in the report (results.json lists every one)."""
FORMATS = {"ml": "{:.2f}", "p": "{:.3f}", "mm": "{:.1f}", "mm2": "{:.1f}", "ratio": "{:.2f}", "fraction": "{:.3f}"}
NONE_TEXT = "\u2013"
"""What a missing or undefined number shows."""


def fmt(value: Any, kind: str) -> str:
    """``value`` as the report prints it (:data:`FORMATS`); ``None``/NaN -> :data:`NONE_TEXT`; bools yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE_TEXT
    return FORMATS[kind].format(float(value))


@dataclass(frozen=True)
class Table:
    """A table: a header row and rows of text cells (``highlight``: row indices to emphasise)."""

    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    highlight: tuple[int, ...] = ()


@dataclass
class Section:
    """One titled part of the report.

    Attributes:
        key: ``volumes``, ``measurements``, ``classification``, ``explanation``, ``quality``, ``models`` or ``run``.
        title: the heading.
        paragraphs: plain-text paragraphs before the tables.
        tables: the tables.
        notes: plain-text paragraphs after the tables.
        tone: ``plain``, ``good`` or ``warning`` (the colour of the paragraphs).
    """

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tone: str = "plain"


@dataclass
class ReportContent:
    """Everything the PDF shows, Qt-free (see :func:`build_report`).

    Attributes:
        case_id, synthetic: the case and whether it is a phantom.
        created: date and time of the report (with UTC offset); software_version: braingui's.
        grid: the case grid in words.
        prediction: ``"Glioblastoma (G), probability 0.700"``, or ``None`` without a classifier.
        demo_models: a research-demonstration model was used (the PDF shows the app's warning).
        synthetic_classifier: the classifier's card says it was trained on synthetic data.
        planes: one :class:`PlaneSlices` per plane (axial, coronal, sagittal).
        seg_opacity, heat_opacity: how strongly the label and heat layers are drawn (0..1).
        legend: ``(value, name, rgb)`` of each tumour label.
        colormap, heat_lut: the heat map's colormap and its ``(256, 4)`` uint8 table (the colour bar).
        pane_notes: pane key -> what it shows (labels source, map class and layer, sequence).
        sections: the text parts, in order.
        models: the :class:`~braingui.results.ModelInfo` used (the PDF writes each card's summary line).
        measured: the largest lesion's measured axial slice, cropped around it (``None`` without lesions).
        diameters: its longest and perpendicular diameters, each ``((row, col), (row, col))`` in ``measured``'s
            pixels (pixel ``(r, c)`` spans ``r..r+1``, ``c..c+1``: a voxel centre is at ``(r + 0.5, c + 0.5)``).
    """

    case_id: str
    synthetic: bool
    created: str
    software_version: str
    grid: str
    prediction: str | None = None
    demo_models: bool = False
    synthetic_classifier: bool = False
    planes: list[PlaneSlices] = field(default_factory=list)
    seg_opacity: float = 0.6
    heat_opacity: float = 0.45
    legend: list[tuple[int, str, tuple[int, int, int]]] = field(default_factory=list)
    colormap: str = colormaps.DEFAULT_COLORMAP
    heat_lut: np.ndarray | None = None
    pane_notes: dict[str, str] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    models: list = field(default_factory=list)
    measured: PlaneSlices | None = None
    diameters: list[tuple[tuple[float, float], tuple[float, float]]] = field(default_factory=list)

    def section(self, key: str) -> Section | None:
        """The section called ``key``, or ``None``."""
        return next((s for s in self.sections if s.key == key), None)

    def text(self) -> str:
        """All the text of the sections, one line per paragraph or table row (for tests and logs)."""
        lines = [self.case_id, self.created, self.software_version, self.prediction or ""]
        for s in self.sections:
            lines += [s.title, *s.paragraphs]
            for t in s.tables:
                lines += [" | ".join(t.header)] + [" | ".join(r) for r in t.rows]
            lines += s.notes
        return "\n".join(lines)


def build_report(case, result=None, *, summary: dict | None = None, when: datetime | None = None,
                 modality: str = "flair", colormap: str = colormaps.DEFAULT_COLORMAP,
                 convention: str = planes.RADIOLOGICAL, window: tuple[float, float] | None = None,
                 cam_class: str | None = None, seg_opacity: float = 0.6, heat_opacity: float = 0.45) -> ReportContent:
    """The report of ``case`` and its analysis.

    Args:
        case: the loaded :class:`~braingui.case.Case`.
        result: its :class:`~braingui.results.AnalysisResult`, or ``None`` (the case and its own labels only).
        summary: the results dict (default ``result.summary()``: what ``results.json`` holds).
        when: the report's time (default now; a naive time is local time).
        modality, colormap, convention, window, cam_class, seg_opacity, heat_opacity: the look of the panes
            (the window passes its own; default: FLAIR, jet, radiological, the automatic window, the
            predicted class's map).
    """
    summary = summary if summary is not None else (result.summary() if result is not None else {})
    when = when if when is not None and when.tzinfo is not None else (when or datetime.now()).astimezone()
    shape, spacing = case.grid.shape, case.grid.spacing
    content = ReportContent(
        case_id=case.case_id, synthetic=case.is_synthetic, created=when.strftime("%Y-%m-%d %H:%M UTC%z"),
        software_version=summary.get("software_version") or __version__,
        grid=f"{' x '.join(map(str, shape))} voxels of {' x '.join(f'{s:.3g}' for s in spacing)} mm",
        seg_opacity=seg_opacity, heat_opacity=heat_opacity, legend=colormaps.label_legend(), colormap=colormap,
        heat_lut=colormaps.heat_lut(colormap), models=list(result.models) if result is not None else [])
    if result is not None:
        content.demo_models = result.demo_models
        content.synthetic_classifier = result.predicted_class is not None and any(
            m.task == "classification" and (m.model_card or {}).get("synthetic_training_data") for m in result.models)
        pred = summary.get("predicted_class")
        if pred is not None:
            title = (summary.get("class_titles") or {}).get(pred, pred)
            content.prediction = f"{title.capitalize()} ({pred}), probability {fmt(summary['probabilities'].get(pred), 'p')}"
    ctx = display_context(case, result, modality, colormap, convention, window, cam_class)
    content.planes = [plane_slices(ctx, plane) for plane in planes.PLANES]
    content.measured, content.diameters = measured_view(ctx, summary)
    content.pane_notes = _pane_notes(ctx, summary)
    content.sections = [s for s in (
        _volumes(case, result, summary), _measurements(summary), _quality(summary, result is not None),
        _classification(summary), _explanation(summary), _models(summary), _run(case, summary)) if s]
    return content


# ----- panes
def _pane_notes(ctx: DisplayContext, summary: dict) -> dict[str, str]:
    mod = MODALITY_TITLES.get(ctx.modality, ctx.modality)
    code = ctx.cam_class if ctx.heat is not None else None
    if code is not None:
        title = (summary.get("class_titles") or {}).get(code, code)
        layer = (summary.get("gradcam") or {}).get("layer")
        method = (summary.get("explanation") or {}).get("method") or "gradcam"
        method = METHOD_TITLES.get(method, method)
        cam = f"{method} of {title} ({code})" + (f" at {layer}" if layer else "")
    else:
        cam = "no heat map"
    return {"segmentation": ctx.label_title, "gradcam": cam, "original": mod,
            "overlay": f"{mod} + heat map + label outlines"}


# ----- text sections
def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _volumes(case, result, summary: dict) -> Section:
    model = summary.get("volumes_ml") or {}
    ref = case.region_volumes_ml()
    unc = summary.get("uncertainty") or {}
    views = (summary.get("segmentation") or {}).get("tta_views")
    header = ["Region", "Model (mL)"]
    if unc:
        header += [f"Range across {views} views (mL)", "Mean uncertainty"]
    dice = None
    if ref is not None:
        header += ["Reference (mL)"]
        if result is not None and result.labels is not None:
            header += ["Dice vs reference"]
            pred, true = lab.regions(result.labels), lab.regions(case.labels)
            dice = {r: _dice(pred[r], true[r]) for r in lab.REGIONS
                    if not (r == "ET" and case.label_convention == lab.BRATS2012)}
    rows = []
    for region in ("WT", "TC", "ET"):
        row = [f"{region} ({lab.REGION_TITLES[region]})", fmt(model.get(region), "ml")]
        if unc:
            u = unc.get(region) or {}
            lo_hi = u.get("volume_ml_range") or [None, None]
            row += [f"{fmt(lo_hi[0], 'ml')} - {fmt(lo_hi[1], 'ml')}", fmt(u.get("mean"), "fraction")]
        if ref is not None:
            row.append(fmt(ref.get(region), "ml"))
            if dice is not None:
                row.append(fmt(dice.get(region), "fraction"))
        rows.append(tuple(row))
    notes = []
    if ref is not None:
        notes.append(f"Reference: the case's own label map ({case.files.seg.name if case.files.seg else 'label file'}).")
    if unc:
        notes.append("Uncertainty: the spread of the test-time-augmentation views, mean inside the predicted region "
                     "(0 = all views agree, 0.5 = most uncertain).")
    if not model:
        notes.insert(0, "No segmentation model was run.")
    return Section("volumes", "Tumour volumes", tables=[Table(tuple(header), rows)], notes=notes)


def _measurements(summary: dict) -> Section | None:
    m = summary.get("measurements")
    if not m:
        return None
    lesions = m.get("lesions") or []
    rows = [(str(les["index"]), les["region"], str(les["slice"]), fmt(les["longest_mm"], "mm"),
             fmt(les["perpendicular_mm"], "mm"), fmt(les["product_mm2"], "mm2"), fmt(les["measurable"], "p"),
             fmt(les["volume_ml"], "ml")) for les in lesions[:MAX_LESION_ROWS]]
    notes = [f"{m['measurable_count']} of {m['lesion_count']} lesions measurable (both diameters >= "
             f"{m['measurable_mm']:g} mm); sum of products of the measurable lesions "
             f"{fmt(m['sum_of_products_mm2'], 'mm2')} mm\u00b2 (all lesions {fmt(m['sum_of_products_all_mm2'], 'mm2')} mm\u00b2)."]
    if m.get("specks_ignored"):
        notes.append(f"{m['specks_ignored']} specks under {m['min_lesion_mm']:g} mm ignored.")
    if len(lesions) > MAX_LESION_ROWS:
        notes.append(f"{len(lesions) - MAX_LESION_ROWS} more lesions in results.json.")
    tables = [Table(("Lesion", "Region", "Axial slice", "Longest (mm)", "Perpendicular (mm)", "Product (mm\u00b2)",
                     "Measurable", "Volume (mL)"), rows)] if rows else []
    return Section("measurements", "Measurements (RANO-style, axial)", paragraphs=[m.get("text") or ""],
                   tables=tables, notes=notes if lesions else [])


def _classification(summary: dict) -> Section | None:
    probs = summary.get("probabilities") or {}
    if not probs:
        return None
    titles, pred = summary.get("class_titles") or {}, summary.get("predicted_class")
    codes = list(probs)
    rows = [(titles.get(c, c), c, fmt(probs[c], "p"), f"{100 * float(probs[c]):.1f} %") for c in codes]
    return Section("classification", "Classification", tables=[Table(("Class", "Code", "Probability", "%"), rows,
                                                                     highlight=tuple(i for i, c in enumerate(codes) if c == pred))])


_LOCALISATION_ROWS = (("mass_in_wt", "Heat mass in the whole tumour", "fraction"),
                      ("wt_fraction_of_brain", "Whole tumour's fraction of the brain", "fraction"),
                      ("enrichment", "Enrichment (1 = a uniform map)", "ratio"),
                      ("mass_outside_brain", "Heat mass outside the brain", "fraction"),
                      ("peak_in_wt", "Hottest voxel in the tumour", "p"), ("peak_in_brain", "Hottest voxel in the brain", "p"))


def _explanation(summary: dict) -> Section | None:
    e = summary.get("explanation")
    if not isinstance(e, dict) or not e:
        return None
    titles = summary.get("class_titles") or {}
    ref = e.get("reference") if isinstance(e.get("reference"), dict) else None
    if ref is not None:  # the same map in the same brain: its mass outside the brain is the same
        ref = {"mass_outside_brain": e.get("mass_outside_brain"), **ref}
    header = ("Localisation", "Predicted tumour") + (("Reference labels",) if ref else ())
    rows = [(title, fmt(e.get(key), kind)) + ((fmt(ref.get(key), kind),) if ref else ())
            for key, title, kind in _LOCALISATION_ROWS]
    tables = [Table(header, rows)]
    checks = []
    occ = e.get("tumour_occlusion")
    if isinstance(occ, dict) and occ.get("class") is not None:
        p = (occ.get("probabilities") or {})
        checks.append(("Without the tumour (occluded)", f"{titles.get(occ['class'], occ['class'])} ({occ['class']})",
                       ", ".join(f"{c} {fmt(v, 'p')}" for c, v in p.items())))
    abl = e.get("modality_ablation")
    if isinstance(abl, dict) and abl:
        checks.append(("Sequence removed: change of the call", ", ".join(
            f"{MODALITY_TITLES.get(k, k)} {_signed(v)}" for k, v in abl.items()), ""))
    dele = e.get("deletion")
    if isinstance(dele, dict) and dele:
        gain = dele.get("gain")
        if gain is None and dele.get("map_auc") is not None and dele.get("random_auc") is not None:
            gain = float(dele["random_auc"]) - float(dele["map_auc"])
        checks.append(("Deletion curve: area (map / random)", f"{fmt(dele.get('map_auc'), 'p')} / "
                       f"{fmt(dele.get('random_auc'), 'p')}", f"gain {_signed(gain)}"))
    rnd = e.get("randomisation")
    if isinstance(rnd, dict) and rnd:
        flag = rnd.get("flag")
        checks.append(("Sanity check (model randomisation)", f"Spearman {fmt(rnd.get('spearman'), 'p')}",
                       NONE_TEXT if flag is None else ("FAILED" if flag else "passed")))
    if checks:
        tables.append(Table(("Faithfulness check", "Result", ""), checks))
    what = ", ".join(str(v) for v in (METHOD_TITLES.get(e.get("method"), e.get("method")), e.get("layer")) if v)
    cls = e.get("class")
    head = f"{what or 'Heat map'}" + (f", class {titles.get(cls, cls)} ({cls})" if cls else "")
    if e.get("level") == "quick":
        head += "; quick checks only (no deletion curve, no sanity check: --explain full computes them)"
    verdict = explanation_verdict(e, titles, summary.get("predicted_class"))
    poor = verdict.startswith("This map is poor")
    return Section("explanation", "Explanation: can the heat map be trusted?", paragraphs=[head + "."],
                   tables=tables, notes=[verdict] if verdict else [], tone="warning" if poor else "good")


def _signed(value) -> str:
    return NONE_TEXT if value is None else f"{float(value):+.3f}"


def explanation_verdict(e: dict, titles: dict, predicted: str | None) -> str:
    """The verdict in words: ``e["verdict"]`` when results.json holds it, else :func:`braingui.explanation.verdict`
    of its numbers (``""`` when they are incomplete)."""
    if isinstance(e.get("verdict"), str):
        return e["verdict"]
    from braingui import explanation as ex

    def loc(d):
        def num(key):
            return float("nan") if d.get(key) is None else float(d[key])

        try:
            return ex.Localisation(1.0 - num("mass_outside_brain"), num("mass_outside_brain"), num("mass_in_wt"),
                                   num("wt_fraction_of_brain"), num("enrichment"), bool(d.get("peak_in_wt")),
                                   bool(d.get("peak_in_brain")))
        except (TypeError, ValueError):
            return None

    main = loc(e)
    if main is None:
        return ""
    occ, rnd, dele = e.get("tumour_occlusion") or {}, e.get("randomisation") or {}, e.get("deletion") or {}
    deletion = None
    if dele.get("map_auc") is not None and dele.get("random_auc") is not None:
        deletion = ex.DeletionAreas(float(dele["map_auc"]), float(dele["random_auc"]))
    occ_class = occ.get("class")
    return ex.verdict(main, predicted_title=titles.get(predicted, predicted) if predicted else None,
                      occluded_title=titles.get(occ_class, occ_class) if occ_class else None,
                      occluded_probability=(occ.get("probabilities") or {}).get(occ_class),
                      ablation={k: float(v) for k, v in (e.get("modality_ablation") or {}).items() if v is not None} or None,
                      deletion=deletion, randomisation_spearman=rnd.get("spearman"), randomisation_flag=rnd.get("flag"),
                      reference=loc(e["reference"]) if isinstance(e.get("reference"), dict) else None)


def _quality(summary: dict, analysed: bool) -> Section | None:
    if not analysed:
        return None
    flags = [f for f in (summary.get("quality") or {}).get("flags", []) if isinstance(f, dict)]
    if not flags:
        return Section("quality", "Quality checks", paragraphs=["No quality flag was raised."], tone="good")
    return Section("quality", "Quality checks", paragraphs=[f"{len(flags)} flag{'s' if len(flags) != 1 else ''}: "
                                                           "check these before using the numbers."],
                   tables=[Table(("Flag", "What to check"), [(str(f.get("code", "")), str(f.get("message", "")))
                                                             for f in flags])], tone="warning")


def _models(summary: dict) -> Section | None:
    models = summary.get("models") or []
    if not models:
        return None
    return Section("models", "Models", notes=[f"{m['name']} ({m['task']}): sha256 {m['sha256']}" for m in models])


def _run(case, summary: dict) -> Section:
    paras = [f"Case grid: {' x '.join(map(str, case.grid.shape))} voxels, spacing "
             f"{' x '.join(f'{s:.3g}' for s in case.grid.spacing)} mm (shown RAS+, stored "
             f"{''.join(case.grid.original_axcodes)})."]
    if summary.get("device"):
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in (summary.get("timings_s") or {}).items())
        paras.append(f"Device: {summary['device']}" + (f"; timings: {timing}." if timing else "."))
    warnings = list(dict.fromkeys([*case.warnings, *summary.get("warnings", [])]))
    return Section("run", "Run", paragraphs=paras, notes=[f"Warning: {w}" for w in warnings],
                   tone="warning" if warnings else "plain")
