"""The PDF case report: Qt's own PDF output (``QPdfWriter`` + ``QPainter`` + ``QTextDocument``), off-screen.

:func:`write_report` is what the window (File > Report...), the headless run (``--report FILE.pdf``) and
the cohort batch (``braingui batch --report``) call. The content comes from the Qt-free
:func:`braingui.display.report_model.build_report`; this module only lays it out on A4 portrait and
paints it: one ``QTextDocument`` (HTML, the pane images as its resources) paginated onto the writer's
pages, with the research-use line, the case id and the page number painted in the footer of every page.

Only ``QtGui`` is needed (``QPdfWriter``, not ``QtPrintSupport``'s ``QPrinter``), and only a
``QGuiApplication``: :func:`ensure_gui_application` makes one (the ``offscreen`` platform on a Linux
machine without a display) when the process has none. The file is written atomically
(:func:`braingui.atomic.write_atomic`).
"""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path

import numpy as np

from braingui.display.report_model import PANES, PlaneSlices, ReportContent, Section, Table, build_report
from braingui.ui.caption import RESEARCH_LINE  # on every page, as under the exported PNG of the panes

RESOLUTION_DPI = 300
MARGINS_MM = (14.0, 12.0, 14.0, 10.0)
"""Left, top, right, bottom page margins (mm); the footer sits inside the bottom margin's band."""
FOOTER_MM = 7.0
CSS_DPI = 96.0
"""``QTextDocument`` lengths (image sizes) are in 1/96 inch."""
PANE_PIXELS = 520
"""Width in pixels of each pane image in the PDF (about 300 dpi at its printed size)."""
FONT_PT = 8.5
MEASURED_CSS = 130
"""Width (1/96 inch) of the measured lesion's view."""
TONE_COLOURS = {"plain": "#202020", "good": "#1d6b2a", "warning": "#a04000"}
_APP = None  # the QGuiApplication made here (kept alive for the process)


def ensure_gui_application():
    """The running ``QGuiApplication`` (a ``QApplication`` counts), else a new one.

    A new one uses the ``offscreen`` platform on Linux when no display is set (no ``DISPLAY`` or
    ``WAYLAND_DISPLAY``) and ``QT_QPA_PLATFORM`` is not set already. While it lives, the process cannot make a
    ``QApplication`` (the window): a process that opens both writes its reports after the window exists.
    """
    global _APP
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance()
    if app is not None:
        return app
    if (sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM")
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    _APP = QGuiApplication([sys.argv[0] if sys.argv and sys.argv[0] else "braingui"])
    return _APP


def write_report(case, result, path, **look) -> Path:
    """Write the PDF report of ``case`` and its analysis to ``path`` (atomically); returns ``path``.

    Args:
        case: the loaded :class:`~braingui.case.Case`.
        result: its :class:`~braingui.results.AnalysisResult` (``None``: the case and its labels only).
        path: the PDF file (its folder is created when missing; an existing file is replaced).
        **look: passed to :func:`~braingui.display.report_model.build_report` (``modality``, ``colormap``,
            ``convention``, ``window``, ``cam_class``, opacities, ``when``, ``summary``).

    Raises:
        OSError: the file cannot be written.
    """
    from braingui.atomic import write_atomic

    ensure_gui_application()
    content = build_report(case, result, **look)
    return write_atomic(path, lambda tmp: render_pdf(content, tmp), suffix=".pdf")


def render_pdf(content: ReportContent, path) -> int:
    """Paint ``content`` into the PDF file ``path`` (not atomic: :func:`write_report` is); returns the page count."""
    from PySide6.QtCore import QMarginsF, QRectF, QSizeF, Qt
    from PySide6.QtGui import QColor, QFont, QPageLayout, QPageSize, QPainter, QPdfWriter, QPen

    writer = QPdfWriter(str(path))
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setPageOrientation(QPageLayout.Orientation.Portrait)
    writer.setResolution(RESOLUTION_DPI)
    left, top, right, bottom = MARGINS_MM
    writer.setPageMargins(QMarginsF(left, top, right, bottom + FOOTER_MM), QPageLayout.Unit.Millimeter)
    writer.setTitle(f"braingui report {content.case_id}")
    writer.setCreator(f"braingui {content.software_version}")
    body_w, body_h = writer.width(), writer.height()
    doc = _document(content, writer, body_w)
    doc.setPageSize(QSizeF(body_w, body_h))
    keep_sections_together(doc)
    pages = doc.pageCount()
    painter = QPainter()
    if not painter.begin(writer):
        raise OSError(f"{path}: cannot write the PDF")
    try:
        dots_per_mm = RESOLUTION_DPI / 25.4
        font = QFont(doc.defaultFont())
        font.setPointSizeF(7.5)
        for page in range(pages):
            if page:
                writer.newPage()
            painter.save()
            painter.translate(0, -page * body_h)
            doc.drawContents(painter, QRectF(0, page * body_h, body_w, body_h))
            painter.restore()
            y = body_h + 2.5 * dots_per_mm
            painter.setPen(QPen(QColor(150, 150, 150), 2))
            painter.drawLine(0, int(y), body_w, int(y))
            painter.setFont(font)
            band = QRectF(0, y + 0.8 * dots_per_mm, body_w, FOOTER_MM * dots_per_mm)
            painter.setPen(QColor(176, 0, 0))
            painter.drawText(band, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, RESEARCH_LINE)
            painter.setPen(QColor(90, 90, 90))
            painter.drawText(band, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop,
                             f"{content.case_id}  \u00b7  braingui {content.software_version}  \u00b7  "
                             f"page {page + 1} of {pages}")
    finally:
        painter.end()
    return pages


# ----- the document
def _esc(text: str) -> str:
    return html.escape(str(text))


def _document(content: ReportContent, device, body_w: int):
    from PySide6.QtGui import QFont, QTextDocument

    doc = QTextDocument()
    doc.documentLayout().setPaintDevice(device)
    doc.setDocumentMargin(0)
    font = QFont()
    font.setPointSizeF(FONT_PT)
    font.setFeature(QFont.Tag("liga"), 0)  # no "fi" ligature glyphs: the PDF's text searches and copies as typed
    doc.setDefaultFont(font)
    doc.setDefaultStyleSheet("th { background-color: #e6e6e6; text-align: left; } td, th { padding: 1px 5px; }"
                             "h2 { font-size: 10.5pt; margin-top: 8px; margin-bottom: 2px; }")
    width_css = body_w / device.logicalDpiX() * CSS_DPI
    parts = [_header(content), _panes(content, doc, width_css), _legend(content, doc)]
    parts += [_section(content, s, doc) for s in content.sections]
    doc.setHtml("".join(parts))
    return doc


def keep_sections_together(doc) -> int:
    """Start a section (from its ``<h2>`` heading to the next) on a new page when it would run across a page
    end and fits on one page; ``doc`` must have its page size set. Returns the sections moved."""
    from PySide6.QtGui import QTextCursor, QTextFormat

    page_h = doc.pageSize().height()
    layout, moved = doc.documentLayout(), 0
    for _ in range(64):  # one section moved per pass: everything after it moves too
        layout.documentSize()  # lay the whole document out again (the layout is lazy)
        sections, block = [], doc.begin()  # [heading block, top, bottom of its last block]
        while block.isValid():
            rect = layout.blockBoundingRect(block)
            if block.blockFormat().headingLevel():
                sections.append([block, rect.top(), rect.bottom()])
            elif sections:
                sections[-1][2] = max(sections[-1][2], rect.bottom())
            block = block.next()
        for head, top, bottom in sections:
            if int(top // page_h) != int(bottom // page_h) and bottom - top < 0.9 * page_h and top % page_h > 1:
                fmt = head.blockFormat()
                fmt.setPageBreakPolicy(QTextFormat.PageBreakFlag.PageBreak_AlwaysBefore)
                QTextCursor(head).setBlockFormat(fmt)
                moved += 1
                break
        else:
            return moved
    return moved


def _header(c: ReportContent) -> str:
    from braingui.ui.results_panel import DEMO_WARNING, SYNTHETIC_CLASSIFIER

    synthetic = ("<br><span style='color:#a06000'>synthetic phantom - not a patient</span>" if c.synthetic else "")
    out = ["<table width='100%' cellspacing='0' cellpadding='0'><tr>"
           f"<td><span style='font-size:15pt; font-weight:bold'>braingui case report</span><br>"
           f"<span style='font-size:11pt'>Case <b>{_esc(c.case_id)}</b></span>{synthetic}</td>"
           f"<td align='right'>{_esc(c.created)}<br>braingui {_esc(c.software_version)}<br>{_esc(c.grid)}</td>"
           "</tr></table>",
           f"<p style='color:#b00000; font-weight:bold; margin-top:3px'>{RESEARCH_LINE}</p>"]
    if c.demo_models:
        out.append("<table width='100%' cellpadding='3' bgcolor='#7a1010'><tr><td style='color:white; "
                   f"font-weight:bold'>{_esc(DEMO_WARNING)}</td></tr></table>")
    if c.prediction:
        out.append(f"<p style='font-size:12.5pt; font-weight:bold; margin-top:4px; margin-bottom:0px'>"
                   f"Predicted: {_esc(c.prediction)}</p>")
    if c.synthetic_classifier:
        out.append(f"<p style='color:#a06000; margin-top:1px'>{_esc(SYNTHETIC_CLASSIFIER)}</p>")
    return "".join(out)


def _panes(c: ReportContent, doc, width_css: float) -> str:
    spacing, padding = 3, 5  # cell spacing; the style sheet's left + right padding of a cell is 2 x 5
    cell = (width_css - (len(PANES) + 1) * spacing - len(PANES) * 2 * padding) / len(PANES)
    head = "".join(f"<th align='center'>{_esc(title)}</th>" for _, title in PANES)
    notes = "".join(f"<td align='center' style='color:#555; font-size:7pt'>{_esc(c.pane_notes.get(k, ''))}</td>"
                    for k, _ in PANES)
    rows = [f"<tr>{head}</tr><tr>{notes}</tr>"]
    for ps in c.planes:
        h_mm, w_mm = ps.base.shape[0] * ps.pixel_mm[0], ps.base.shape[1] * ps.pixel_mm[1]
        height = cell * h_mm / w_mm
        cells = []
        for key, _ in PANES:
            name = f"img:{ps.plane}-{key}"
            doc.addResource(_image_resource(), _url(name), _pane_image(c, ps, key, PANE_PIXELS,
                                                                           round(PANE_PIXELS * h_mm / w_mm)))
            cells.append(f"<td align='center'><img src='{name}' width='{cell:.1f}' height='{height:.1f}'></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
        rows.append(f"<tr><td colspan='{len(PANES)}' style='color:#444; font-size:7.5pt'>{ps.plane.capitalize()} "
                    f"slice {ps.slice_number}/{ps.n_slices} ({ps.why}, voxel {ps.voxel[0]}, {ps.voxel[1]}, "
                    f"{ps.voxel[2]})</td></tr>")
    return f"<table cellspacing='{spacing}' cellpadding='0' width='100%'>" + "".join(rows) + "</table>"


def _legend(c: ReportContent, doc) -> str:
    """Two lines: the label swatches with their names; the heat colour bar from 0 to 1."""
    doc.addResource(_image_resource(), _url("img:colourbar"), _colourbar_image(c.heat_lut))
    labels = "".join(f"<td bgcolor='#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}' width='11'>&nbsp;</td>"
                     f"<td>{_esc(name)} ({value})&nbsp;&nbsp;</td>" for value, name, rgb in c.legend)
    bar = (f"<td>Heat map ({_esc(c.colormap)}):&nbsp;0</td><td><img src='img:colourbar' width='120' height='9'></td>"
           "<td>1&nbsp;&nbsp;</td><td style='font-size:7pt; color:#555'>0 = low, 1 = high contribution to the class "
           "shown (normalised per case)</td>")
    return (f"<table cellspacing='2' cellpadding='0'><tr><td>Labels:</td>{labels}</tr></table>"
            f"<table cellspacing='2' cellpadding='0'><tr>{bar}</tr></table>")


def _section(c: ReportContent, s: Section, doc) -> str:
    colour = TONE_COLOURS.get(s.tone, TONE_COLOURS["plain"])
    out = [f"<h2>{_esc(s.title)}</h2>"]
    paragraphs = "".join(f"<p style='margin:1px 0px'>{_esc(p)}</p>" for p in s.paragraphs if p)
    if s.key == "measurements" and c.measured is not None:
        out.append(_measured_html(c, doc, paragraphs))
    else:
        out.append(paragraphs)
    if s.key == "models" and c.models:
        out.append(_models_html(c.models))
    else:
        out += [_table(t) for t in s.tables]
        out += [f"<p style='margin:1px 0px; color:{colour}'>{_esc(n)}</p>" for n in s.notes]
    return "".join(out)


def _measured_html(c: ReportContent, doc, paragraphs: str) -> str:
    """The measured lesion's slice with its two diameters drawn, beside the section's first words."""
    ps = c.measured
    h_mm, w_mm = ps.base.shape[0] * ps.pixel_mm[0], ps.base.shape[1] * ps.pixel_mm[1]
    width = MEASURED_CSS
    doc.addResource(_image_resource(), _url("img:measured"), _measured_image(c, 400, round(400 * h_mm / w_mm)))
    return ("<table cellspacing='0' cellpadding='0'><tr>"
            f"<td style='padding:0px 8px 0px 0px'><img src='img:measured' width='{width}' "
            f"height='{width * h_mm / w_mm:.1f}'></td><td>{paragraphs}"
            f"<p style='margin:3px 0px; color:#555'>Left: axial slice {ps.slice_number}/{ps.n_slices}, {_esc(ps.why)}, "
            "with its longest diameter (yellow) and the longest perpendicular to it (cyan), as measured.</p></td>"
            "</tr></table>")


def _table(t: Table) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in t.header)
    rows = []
    for i, row in enumerate(t.rows):
        style = " style='font-weight:bold'" if i in t.highlight else ""
        rows.append(f"<tr{style}>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>")
    return ("<table cellspacing='0' cellpadding='1' border='0.5' style='border-collapse:collapse; "
            f"border-color:#bbbbbb'><tr>{head}</tr>{''.join(rows)}</table>")


def _models_html(models) -> str:
    """One line per model (the results panel's summary line, :func:`model_summary_html`), its sha256 under it."""
    from braingui.ui.results_panel import model_summary_html

    rows = []
    for m in models:
        demo = " <span style='color:#b00000'>(research demonstration model)</span>" if m.demo else ""
        rows.append(f"<p style='margin:2px 0px'>{model_summary_html(m)}{demo}<br>"
                    f"<span style='font-size:7pt; color:#555'>sha256 {_esc(m.sha256)}</span></p>")
    return "".join(rows)


# ----- images
def _image_resource():
    from PySide6.QtGui import QTextDocument

    return QTextDocument.ResourceType.ImageResource


def _url(name: str):
    from PySide6.QtCore import QUrl

    return QUrl(name)


def _qimage(rgba: np.ndarray):
    """A deep-copied ``QImage`` of a ``(rows, cols, 4)`` uint8 RGBA array."""
    from PySide6.QtGui import QImage

    data = np.ascontiguousarray(rgba, dtype=np.uint8)
    return QImage(data.data, data.shape[1], data.shape[0], data.shape[1] * 4, QImage.Format.Format_RGBA8888).copy()


def pane_rgba(c: ReportContent, ps: PlaneSlices, key: str) -> np.ndarray:
    """The ``(rows, cols, 4)`` uint8 RGBA of one pane (``segmentation``, ``gradcam``, ``original``,
    ``overlay``), composed as the window composes its layers (:mod:`braingui.ui.pane_grid`)."""
    from braingui.display.colormaps import gradcam_rgba

    if key == "gradcam":
        if ps.heat is None:
            return (ps.base.astype(np.uint16) * 3 // 10).astype(np.uint8) | np.array([0, 0, 0, 255], np.uint8)
        return gradcam_rgba(ps.base, ps.heat, ps.head, c.heat_opacity)
    layers = {"segmentation": [(ps.fill, c.seg_opacity)], "original": [],
              "overlay": [(ps.heat, c.heat_opacity), (ps.outline, 1.0)]}[key]
    out = ps.base.astype(np.float32)
    for layer, opacity in layers:
        if layer is None:
            continue
        a = layer[..., 3:4].astype(np.float32) / 255.0 * float(opacity)
        out[..., :3] = out[..., :3] * (1.0 - a) + layer[..., :3].astype(np.float32) * a
    return np.round(out).astype(np.uint8)


def _pane_image(c: ReportContent, ps: PlaneSlices, key: str, width: int, height: int):
    """One pane as a ``QImage`` of ``width`` x ``height`` (nearest-neighbour, as the window draws voxels),
    with the anatomical side letters."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QColor, QFont, QPainter

    img = _qimage(pane_rgba(c, ps, key)).scaled(width, height, Qt.AspectRatioMode.IgnoreAspectRatio,
                                                 Qt.TransformationMode.FastTransformation)
    p = QPainter(img)
    font = QFont()
    font.setPixelSize(max(12, width // 16))
    font.setBold(True)
    p.setFont(font)
    p.setPen(QColor(255, 220, 0))
    m = width // 60
    A = Qt.AlignmentFlag
    for side, align in (("left", A.AlignLeft | A.AlignVCenter), ("right", A.AlignRight | A.AlignVCenter),
                        ("top", A.AlignTop | A.AlignHCenter), ("bottom", A.AlignBottom | A.AlignHCenter)):
        p.drawText(QRectF(m, m, width - 2 * m, height - 2 * m), align, ps.sides.get(side, ""))
    p.end()
    return img


def _measured_image(c: ReportContent, width: int, height: int):
    """The segmentation pane of :attr:`ReportContent.measured` with the two diameters drawn on it."""
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QColor, QPainter, QPen

    ps = c.measured
    img = _pane_image(c, ps, "segmentation", width, height)
    sx, sy = width / ps.base.shape[1], height / ps.base.shape[0]
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    for (a, b), colour in zip(c.diameters, (QColor(255, 230, 0), QColor(0, 230, 255))):
        p.setPen(QPen(colour, max(2.0, width / 100), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        p.drawLine(QPointF((a[1] + 0.5) * sx, (a[0] + 0.5) * sy), QPointF((b[1] + 0.5) * sx, (b[0] + 0.5) * sy))
    p.end()
    return img


def _colourbar_image(lut: np.ndarray):
    from PySide6.QtCore import Qt

    return _qimage(np.ascontiguousarray(lut[None, :, :])).scaled(512, 16, Qt.AspectRatioMode.IgnoreAspectRatio,
                                                                 Qt.TransformationMode.FastTransformation)


# ----- the window's File > Report...
def report_dialog(window) -> Path | None:
    """Ask for a file name (``QFileDialog``) and write the report of the window's case; returns the file."""
    from PySide6.QtWidgets import QFileDialog

    ctx = window.ctx
    if ctx.case is None:
        window.show_error("No report", "Open a case first (File > Open folder).")
        return None
    from braingui.export import safe_filename

    suggested = Path(window.default_export_dir()) / f"{safe_filename(ctx.case.case_id)}_report.pdf"
    name, _ = QFileDialog.getSaveFileName(window, "Save the PDF report", str(suggested), "PDF files (*.pdf)")
    if not name:
        return None
    if not name.lower().endswith(".pdf"):
        name += ".pdf"
    return write_window_report(window, name)


def write_window_report(window, path) -> Path | None:
    """Write the report of what the window shows (its case, result, sequence, colormap, window, map class);
    a file in the case folder or a write error becomes an error dialog (``None`` returned)."""
    from braingui.errors import BrainguiError

    ctx = window.ctx
    try:
        check_report_path(path, ctx.case)
        out = write_report(ctx.case, ctx.result, path, modality=ctx.modality, colormap=ctx.colormap,
                           convention=ctx.convention, window=ctx.window, cam_class=ctx.cam_class,
                           seg_opacity=ctx.seg_opacity, heat_opacity=ctx.heat_opacity)
    except (BrainguiError, OSError) as exc:
        window.show_error("Could not write the report", str(exc))
        return None
    window.statusBar().showMessage(f"Report written to {out}", 8000)
    return out


def check_report_path(path, case, force_in_case: bool = False) -> Path:
    """Refuse a report file inside the case folder (the app never writes there unless forced).

    Raises:
        BrainguiError: ``path`` lies in a folder of the case's input files, is a folder, or its folder (the
            nearest existing one above it) cannot be written.
    """
    from braingui.errors import BrainguiError
    from braingui.export_set import case_folder_of, case_folders

    target = Path(path).expanduser()
    if target.is_dir():
        raise BrainguiError(f"{target}: is a folder; give the report a file name (e.g. report.pdf)")
    folder = case_folder_of(target.parent, case_folders(case.files.all_files(), case.files.folder))
    if folder is not None and not force_in_case:
        raise BrainguiError(f"{target}: lies in the case folder {folder}; braingui does not write there "
                            "(choose another folder)")
    existing = next((p for p in target.parents if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise BrainguiError(f"{target}: cannot write in {existing or target.parent}")
    return target
