"""The caption band of the exported panes PNG: case, date, class, view, software and the research-use line.

A picture of the panes travels without its ``results.json``; the band under it says what it shows, so
the PNG alone cannot be mistaken for a clinical image or for another case. The text is built by
:func:`caption_lines` (plain strings, testable without Qt) and painted by :func:`add_caption`.
"""

from __future__ import annotations

from datetime import datetime

from braingui import __version__
from braingui.discovery import MODALITY_TITLES

RESEARCH_LINE = "Research use only - not for clinical use"
NO_CLASS = "no classification"
BAND_BACKGROUND = (22, 22, 22)
TEXT_COLOURS = ((235, 235, 235), (240, 192, 64))
"""Colour of the first caption line, and of the second (software and research-use line)."""


def prediction_text(result) -> str:
    """``predicted glioblastoma (G) 99%``, or :data:`NO_CLASS` without a result or a classifier."""
    if result is None or result.predicted_class is None:
        return NO_CLASS
    code = result.predicted_class
    title = result.class_titles.get(code, code)
    p = result.probabilities.get(code)
    return f"predicted {title} ({code})" + (f" {float(p):.1%}" if p is not None else "")


def caption_lines(case_id: str, result=None, view: dict | None = None, when: datetime | None = None,
                  version: str = __version__, synthetic: bool = False) -> tuple[str, str]:
    """The two caption lines.

    Args:
        case_id: the case's id.
        result: the :class:`braingui.results.AnalysisResult` shown, or ``None``.
        view: :meth:`DisplayContext.view_record` (``plane``, 1-based ``slice``, ``n_slices``, ``modality``);
            optional.
        when: the export time (default now; a naive time is taken as local time), shown with its UTC offset.
        version: the software version.
        synthetic: the case is a synthetic phantom (said after its id).

    Returns:
        ``(case line, software line)``: case id, date/time, predicted class with its probability (or "no
        classification") and the slice shown; then the software version, the demo-model note and
        :data:`RESEARCH_LINE`.
    """
    when = when if when is not None and when.tzinfo is not None else (when or datetime.now()).astimezone()
    parts = [f"Case {case_id}" + (" (synthetic phantom, not a patient)" if synthetic else ""), when.strftime("%Y-%m-%d %H:%M UTC%z"), prediction_text(result)]
    if view and view.get("plane"):
        where = f"{view['plane']} slice {view.get('slice', '?')}/{view.get('n_slices', '?')}"
        if view.get("modality"):
            where += f", {MODALITY_TITLES.get(view['modality'], view['modality'])}"
        parts.append(where)
    soft = [f"braingui {version}"]
    if result is not None and getattr(result, "demo_models", False):
        soft.append("research demonstration models")
    soft.append(RESEARCH_LINE)
    return "  \u00b7  ".join(parts), "  \u00b7  ".join(soft)


def add_caption(image, lines: tuple[str, ...] | list[str]):
    """``image`` (a ``QImage`` / ``QPixmap``) with a dark band under it holding ``lines``, as a new ``QImage``.

    The band is as wide as the image; lines too long for it wrap. Sizes are in device pixels (a HiDPI
    grab keeps its resolution and gets a proportionally larger font).
    """
    from PySide6.QtCore import QRect, Qt
    from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPixmap

    src = image.toImage() if isinstance(image, QPixmap) else QImage(image)
    scale = max(src.devicePixelRatio(), 1.0)
    src.setDevicePixelRatio(1.0)
    w = src.width()
    font = QFont()
    font.setPixelSize(round(13 * scale))
    fm = QFontMetrics(font)
    pad = round(6 * scale)
    flags = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap)
    heights = [fm.boundingRect(QRect(0, 0, max(w - 2 * pad, 1), 10000), flags, line).height() for line in lines]
    band = sum(heights) + pad * (len(lines) + 1)
    out = QImage(w, src.height() + band, QImage.Format.Format_RGB32)
    out.fill(QColor(*BAND_BACKGROUND))
    painter = QPainter(out)
    painter.drawImage(0, 0, src)
    painter.setFont(font)
    y = src.height() + pad
    for n, (line, height) in enumerate(zip(lines, heights)):
        painter.setPen(QColor(*TEXT_COLOURS[min(n, len(TEXT_COLOURS) - 1)]))
        painter.drawText(QRect(pad, y, max(w - 2 * pad, 1), height), flags, line)
        y += height + pad
    painter.end()
    return out
