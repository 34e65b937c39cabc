"""What the Explanation panel shows, as plain data: the verdict in words, its severity and the key numbers.

:func:`build_view` reads one explanation dict (``AnalysisResult.explanation``, the ``"explanation"`` of
results.json: method, layer, class, the five localisation numbers against the model's whole tumour and,
when the case has one, against its own label map, tumour occlusion, sequence ablation, deletion and
randomisation, ``verdict`` and ``level``) and returns an :class:`ExplanationView`;
:mod:`braingui.ui.explanation_panel` only paints it. Nothing here imports Qt.

Severity (:data:`SEVERITIES`), from :func:`braingui.explanation.map_problems` of the dict's numbers:

* ``"poor"`` (red heading) - a grave problem (empty map, most heat outside the brain, worse than a
  uniform map, the hottest point outside the brain, the sanity check failed) or two problems or more;
* ``"doubtful"`` (amber heading) - one milder problem (hardly better than chance, the hottest point
  outside the tumour, a deletion curve no better than random);
* ``"good"`` - nothing wrong found; ``"none"`` - no explanation to judge.

A poor or doubtful map always gets the plain heading "This map is poor: ..." (the verdict's first
sentence). While ``level == "quick"`` the deletion curve and the sanity check are still being computed
and :attr:`ExplanationView.pending` says so.

Also the heat-map methods and the DenseNet's layers by name (:data:`CAM_METHODS`, :data:`DENSENET_LAYERS`),
torch-free, for the window's method / layer choice (a unit test keeps them equal to
:mod:`braingui.inference.cam_methods`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from braingui import explanation as ex
from braingui.cam_names import CAM_METHODS, CONTRASTIVE_METHODS, METHOD_HINTS, METHOD_TITLES
from braingui.display.report_model import explanation_verdict

DENSENET_LAYERS: tuple[str, ...] = ("features.denseblock1", "features.transition1", "features.denseblock2",
                                    "features.transition2", "features.denseblock3", "features.transition3",
                                    "features.denseblock4")
"""The layers of MONAI's DenseNet a map can be taken at (:func:`braingui.inference.cam_methods.cam_layers`)."""
SEVERITIES = ("good", "doubtful", "poor", "none")
COLOURS = {"good": "#5cb85c", "doubtful": "#e0a030", "poor": "#e05050", "none": "#999999", "plain": ""}
"""Text colour of each severity / cell tone (``"plain"``: the palette's)."""
PENDING_TEXT = "Computing the deletion curve and sanity check\u2026"
COMPUTING = "computing\u2026"
NONE_TEXT = "\u2013"
NO_EXPLANATION = "No explanation was computed for this map."
GRAVE = ("it is empty", "most of its heat lies outside the brain", "it is worse than a uniform map at the tumour",
         "its hottest point lies outside the brain", "it fails the sanity check")
"""Problems of :func:`braingui.explanation.map_problems` that make a map ``"poor"`` on their own."""


def layer_title(layer: str | None) -> str:
    """``features.denseblock1`` -> ``dense block 1``, ``features.transition2`` -> ``transition 2`` (others as they are)."""
    if not layer:
        return NONE_TEXT
    name = layer.rsplit(".", 1)[-1]
    for stem, title in (("denseblock", "dense block"), ("transition", "transition")):
        if name.startswith(stem) and name[len(stem):].isdigit():
            return f"{title} {name[len(stem):]}"
    return layer


def method_title(method: str | None) -> str:
    """``gradcam++`` -> ``Grad-CAM++`` (unknown names as they are)."""
    return METHOD_TITLES.get(method or "", method or "Grad-CAM")


def method_hint(method: str | None) -> str:
    """What ``method``'s map shows, in a sentence (empty for an unknown name)."""
    return METHOD_HINTS.get(method or "", "")


@dataclass(frozen=True)
class Cell:
    """One table cell: its text and tone (a key of :data:`COLOURS`)."""

    text: str
    tone: str = "plain"


@dataclass(frozen=True)
class ExplanationView:
    """What the panel paints.

    Attributes:
        title: what the map is, e.g. ``"Grad-CAM at dense block 1, glioblastoma (G)"``.
        severity: one of :data:`SEVERITIES`.
        heading: ``"This map is poor: ..."`` for a poor / doubtful map, else ``None``.
        verdict: the rest of the verdict in words (after the heading).
        header: the localisation table's column titles: against the model's tumour, and the case's own
            reference labels when it has them.
        localisation: rows ``(name, against the model's tumour, against the reference labels or None)``.
        checks: rows ``(name, result)`` of the faithfulness checks.
        pending: :data:`PENDING_TEXT` while the slow part is being computed, else ``None``.
    """

    title: str
    severity: str
    heading: str | None
    verdict: str
    header: tuple[str, ...] = ()
    localisation: list[tuple[str, Cell, Cell | None]] = field(default_factory=list)
    checks: list[tuple[str, Cell]] = field(default_factory=list)
    pending: str | None = None

    @property
    def colour(self) -> str:
        """The heading's colour (:data:`COLOURS`)."""
        return COLOURS[self.severity]


def _num(d: Mapping, key: str) -> float:
    v = d.get(key)
    return math.nan if v is None or isinstance(v, bool) else float(v)


def localisation_of(d: Mapping) -> ex.Localisation | None:
    """The :class:`braingui.explanation.Localisation` of an explanation's five numbers (``None`` if missing)."""
    try:
        outside = _num(d, "mass_outside_brain")
        return ex.Localisation(1.0 - outside, outside, _num(d, "mass_in_wt"), _num(d, "wt_fraction_of_brain"),
                               _num(d, "enrichment"), bool(d.get("peak_in_wt")), bool(d.get("peak_in_brain")))
    except (TypeError, ValueError):
        return None


def _gain(deletion: Any) -> float | None:
    if not isinstance(deletion, Mapping):
        return None
    if deletion.get("gain") is not None:
        return float(deletion["gain"])
    if deletion.get("map_auc") is None or deletion.get("random_auc") is None:
        return None
    return float(deletion["random_auc"]) - float(deletion["map_auc"])


def problems_of(e: Mapping) -> list[str]:
    """:func:`braingui.explanation.map_problems` of an explanation dict (localisation against the model's WT)."""
    loc = localisation_of(e)
    if loc is None:
        return []
    rnd = e.get("randomisation") if isinstance(e.get("randomisation"), Mapping) else {}
    return ex.map_problems(loc, rnd.get("flag"), _gain(e.get("deletion")))


def severity_of(problems: list[str]) -> str:
    """``"poor"``, ``"doubtful"`` or ``"good"`` for a list of :func:`problems_of` (see the module docstring)."""
    if not problems:
        return "good"
    return "poor" if len(problems) >= 2 or any(p in GRAVE for p in problems) else "doubtful"


def pct(x: Any) -> str:
    """A fraction as a percentage with one decimal (``0.3821`` -> ``38.2 %``); missing -> a dash."""
    return NONE_TEXT if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.1f} %"


def times(x: Any) -> str:
    """An enrichment (``6.333`` -> ``6.33x``); missing -> a dash."""
    return NONE_TEXT if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.2f}x"


def _yes_no(x: Any) -> str:
    return NONE_TEXT if x is None else ("yes" if x else "no")


def _localisation_cells(d: Mapping) -> dict[str, Cell]:
    e, out, peak = d.get("enrichment"), d.get("mass_outside_brain"), d.get("peak_in_wt")
    e_tone = "plain" if e is None else ("poor" if e < 1 else "doubtful" if e < ex.POOR_ENRICHMENT else "good")
    out_tone = "plain" if out is None else ("poor" if out > ex.POOR_OUTSIDE else
                                            "doubtful" if out > ex.NOTE_OUTSIDE else "plain")
    peak_tone = "plain" if peak is None else ("good" if peak else
                                              "poor" if d.get("peak_in_brain") is False else "doubtful")
    return {"mass_in_wt": Cell(pct(d.get("mass_in_wt"))), "wt_fraction_of_brain": Cell(pct(d.get("wt_fraction_of_brain"))),
            "enrichment": Cell(times(e), e_tone), "mass_outside_brain": Cell(pct(out), out_tone),
            "peak_in_wt": Cell(_yes_no(peak), peak_tone)}


LOCALISATION_ROWS = (("mass_in_wt", "Heat in the tumour"), ("wt_fraction_of_brain", "Tumour's share of brain"),
                     ("enrichment", "Enrichment (1 = chance)"), ("mass_outside_brain", "Heat outside the brain"),
                     ("peak_in_wt", "Hottest point in tumour"))
"""``(key, row title)`` of the localisation table, in order."""
ROW_TIPS = {
    "Heat in the tumour": "The share of the map's heat inside the brain that lies in the whole tumour",
    "Tumour's share of brain": "The whole tumour's volume as a share of the brain's: what a uniform map would score",
    "Enrichment (1 = chance)": "Heat in the tumour / the tumour's share of the brain: 1 = no better than a uniform "
                               "map; below 1.5 the map hardly points at the tumour",
    "Heat outside the brain": "The share of the map's heat that fell outside the brain (not shown in the panes, "
                              "reported here)",
    "Hottest point in tumour": "Does the map's hottest voxel lie in the tumour (the pointing game)?",
    "Without the tumour": "The class when the tumour is replaced by normal-brain intensity and the case re-classified",
    "Sequence that moved the call most": "Each sequence removed in turn: the largest change of this class's "
                                         "probability",
    "Deletion gain": "How much faster the class's probability falls when the map's hottest "
                                             "voxels are deleted than when random ones are (area between the curves)",
    "Sanity check": "Adebayo et al. 2018: the map recomputed with the model's last layers "
                                         "randomised must change; a rank correlation above 0.5 is flagged",
}
"""Row title -> what the number means (the panel's tooltips)."""


def _class_text(code: str | None, titles: Mapping[str, str]) -> str:
    return f"{titles.get(code, code)} ({code})" if code else NONE_TEXT


def _checks(e: Mapping, titles: Mapping[str, str], quick: bool) -> list[tuple[str, Cell]]:
    rows: list[tuple[str, Cell]] = []
    occ = e.get("tumour_occlusion")
    if isinstance(occ, Mapping) and occ.get("class"):
        p = (occ.get("probabilities") or {}).get(occ["class"])
        same = occ["class"] == e.get("class")
        rows.append(("Without the tumour", Cell(f"{titles.get(occ['class'], occ['class'])}"
                                                + (f" ({100 * float(p):.0f} %)" if p is not None else ""),
                                                "doubtful" if same else "plain")))
    abl = e.get("modality_ablation")
    if isinstance(abl, Mapping) and any(v is not None for v in abl.values()):
        name, delta = max(((k, float(v)) for k, v in abl.items() if v is not None), key=lambda kv: abs(kv[1]))
        text = (f"{ex.SEQUENCE_TITLES.get(name, name)} ({100 * delta:+.0f} %)" if abs(delta) >= 0.05
                else "none by 5 % or more")
        rows.append(("Sequence that moved the call most", Cell(text)))
    gain = _gain(e.get("deletion"))
    if gain is not None:
        rows.append(("Deletion gain", Cell(f"{gain:+.3f}", "good" if gain > 0 else "poor")))
    else:
        rows.append(("Deletion gain", Cell(COMPUTING if quick else "not computed")))
    rnd = e.get("randomisation")
    if isinstance(rnd, Mapping) and rnd:
        rho, flag = rnd.get("spearman"), rnd.get("flag")
        rho_text = f" (Spearman {float(rho):.2f})" if rho is not None and not math.isnan(float(rho)) else ""
        if rho is None or math.isnan(float(rho)):
            cell = Cell("inconclusive (a constant map)")
        else:
            cell = Cell(f"flagged{rho_text}", "poor") if flag else Cell(f"passed{rho_text}", "good")
        rows.append(("Sanity check", cell))
    else:
        rows.append(("Sanity check", Cell(COMPUTING if quick else "not computed")))
    return rows


def split_verdict(text: str) -> tuple[str | None, str]:
    """``("This map is poor: ... .", the rest)`` when the verdict starts with that heading, else ``(None, text)``."""
    if not text.startswith("This map is poor"):
        return None, text
    end = text.find(". ")
    if end < 0:
        return text, ""
    return text[:end + 1], text[end + 2:]


def build_view(e: Mapping | None, class_titles: Mapping[str, str] | None = None,
               predicted: str | None = None) -> ExplanationView:
    """The panel's content for one explanation dict (``None``: nothing computed for the map shown).

    Args:
        e: the explanation (see the module docstring); ``verdict`` is shown when present, else built from
            the numbers (:func:`braingui.display.report_model.explanation_verdict`).
        class_titles: class code -> name in words.
        predicted: the predicted class code (a map of another class is titled "not the predicted class").
    """
    titles = dict(class_titles or {})
    if not isinstance(e, Mapping) or not e:
        return ExplanationView(title="Heat map", severity="none", heading=None, verdict=NO_EXPLANATION)
    code = e.get("class")
    title = f"{method_title(e.get('method'))} at {layer_title(e.get('layer'))}, {_class_text(code, titles)}"
    if code and e.get("method") in CONTRASTIVE_METHODS:
        title += " against the other classes"
    if code and predicted and code != predicted:
        title += " \u2014 not the predicted class"
    problems = problems_of(e)
    verdict = explanation_verdict(dict(e), titles, code)
    heading, rest = split_verdict(verdict)
    severity = severity_of(problems)
    if heading is None and problems:  # a stored verdict with other thresholds: the numbers still speak
        heading = f"This map is poor: {'; '.join(problems)}."
    elif heading is not None and severity == "good":
        severity = "doubtful"
    ref = e.get("reference") if isinstance(e.get("reference"), Mapping) else None
    if ref is not None and ref.get("mass_outside_brain") is None:  # the same map, the same brain: the same number
        ref = {**ref, "mass_outside_brain": e.get("mass_outside_brain")}
    main, refc = _localisation_cells(e), (_localisation_cells(ref) if ref else None)
    rows = [(name, main[key], refc[key] if refc else None) for key, name in LOCALISATION_ROWS]
    header = ("", "model") + (("reference",) if ref else ())
    quick = e.get("level") == "quick"
    return ExplanationView(title=title, severity=severity, heading=heading, verdict=rest, header=header,
                           localisation=rows, checks=_checks(e, titles, quick), pending=PENDING_TEXT if quick else None)


COMPARISON_ROWS = (("mass_in_wt", "Heat in the tumour"), ("enrichment", "Enrichment"),
                   ("mass_outside_brain", "Heat outside the brain"), ("peak_in_wt", "Hottest point in tumour"),
                   ("deletion", "Deletion gain"),
                   ("randomisation", "Sanity check"))


@dataclass(frozen=True)
class Comparison:
    """The maps of several classes side by side ("why G" beside "why not A").

    Attributes:
        header: ``("", "glioblastoma (predicted)", "astrocytoma", ...)``, the predicted class first.
        codes: the class code of each column after the first.
        rows: ``(name, cell per class)``.
    """

    header: tuple[str, ...]
    codes: tuple[str, ...]
    rows: list[tuple[str, tuple[Cell, ...]]]


def _compare_cell(e: Mapping, key: str) -> Cell:
    if key == "deletion":
        gain = _gain(e.get("deletion"))
        return Cell(COMPUTING if gain is None and e.get("level") == "quick" else
                    NONE_TEXT if gain is None else f"{gain:+.3f}",
                    "plain" if gain is None else "good" if gain > 0 else "poor")
    if key == "randomisation":
        rnd = e.get("randomisation")
        if not isinstance(rnd, Mapping) or not rnd:
            return Cell(COMPUTING if e.get("level") == "quick" else NONE_TEXT)
        return Cell("flagged", "poor") if rnd.get("flag") else Cell("passed", "good")
    return _localisation_cells(e)[key]


def build_comparison(explanations: Mapping[str, Mapping], class_titles: Mapping[str, str] | None = None,
                     predicted: str | None = None) -> Comparison | None:
    """The comparison table of the classes explained so far (``None`` with fewer than two).

    Args:
        explanations: class code -> its explanation dict (one method and layer).
        class_titles: class code -> name.
        predicted: the predicted class (its column comes first).
    """
    titles = dict(class_titles or {})
    codes = tuple(sorted(explanations, key=lambda c: (c != predicted, c)))
    if len(codes) < 2:
        return None
    header = ("",) + tuple(titles.get(c, c) + (" (predicted)" if c == predicted else "") for c in codes)
    rows = [(name, tuple(_compare_cell(explanations[c], key) for c in codes)) for key, name in COMPARISON_ROWS]
    return Comparison(header, codes, rows)
