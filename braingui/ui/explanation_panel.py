"""The Explanation panel: can the heat map be trusted? The verdict in words, the key numbers, the method / layer.

It paints an :class:`braingui.display.explanation_view.ExplanationView` (all wording, severity and colours
are decided there, Qt-free): the map's title, a plain coloured heading when the map is poor ("This map is
poor: ..."), the verdict, a table of the localisation numbers against the model's tumour (and the case's own
label map when it has one), the faithfulness checks, and "Computing the deletion curve and sanity check..."
while only the quick part is in. Two combos choose the heat-map method and the layer; choosing one emits
:attr:`ExplanationPanel.recompute_requested` (the window recomputes the map and its explanation as a job,
:mod:`braingui.ui.cam_requests`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from braingui.display import explanation_view as xv

HEADING_STYLE = "font-weight: bold; padding: 5px; border-radius: 3px; color: white; background: {colour};"


def selectable_label(text: str = "", wrap: bool = True) -> QLabel:
    """A word-wrapped label whose text can be selected and copied (the panels' numbers and verdicts)."""
    lab = QLabel(text)
    lab.setWordWrap(wrap)
    lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return lab


_label = selectable_label


def _clear(grid: QGridLayout) -> None:
    while grid.count():
        item = grid.takeAt(0)
        if item.widget():
            item.widget().deleteLater()


class ExplanationPanel(QGroupBox):
    """The Explanation section of the results panel.

    Signals:
        recompute_requested(str, str): the user chose a method / layer ``(method, layer)``.
    """

    recompute_requested = Signal(str, str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Explanation: can this heat map be trusted?", parent)
        col = QVBoxLayout(self)
        choice = QHBoxLayout()
        self.method = QComboBox()
        for i, m in enumerate(xv.CAM_METHODS):
            self.method.addItem(xv.method_title(m), m)
            self.method.setItemData(i, xv.method_hint(m), Qt.ItemDataRole.ToolTipRole)
        self.method.setToolTip("How the heat map is computed (the map and its explanation are recomputed)")
        self.layer = QComboBox()
        for name in xv.DENSENET_LAYERS:
            self.layer.addItem(xv.layer_title(name), name)
        self.layer.setToolTip("The classifier layer the map is taken at: earlier layers are finer, later ones "
                              "closer to the decision")
        for box in (self.method, self.layer):
            box.activated.connect(self._on_choice)
        choice.addWidget(self.method, 1)
        choice.addWidget(QLabel("at"))
        choice.addWidget(self.layer, 1)
        col.addLayout(choice)
        self.title = _label("")
        self.title.setStyleSheet("color: #aaa;")
        col.addWidget(self.title)
        self.heading = _label("")
        self.heading.setVisible(False)
        col.addWidget(self.heading)
        self.verdict = _label("")
        col.addWidget(self.verdict)
        self.table = QGridLayout()
        self.table.setHorizontalSpacing(10)
        self.table.setVerticalSpacing(1)
        col.addLayout(self.table)
        self.checks = QGridLayout()
        self.checks.setHorizontalSpacing(10)
        self.checks.setVerticalSpacing(1)
        col.addLayout(self.checks)
        self.pending = _label("")
        self.pending.setStyleSheet("color: #aaa; font-style: italic;")
        self.pending.setVisible(False)
        col.addWidget(self.pending)
        self.compare_title = _label("<b>Classes side by side</b> (the same method and layer)")
        self.compare_title.setToolTip("Why the predicted class, and why not the others: choose a class in "
                                      "\"Grad-CAM of\" to add its map")
        col.addWidget(self.compare_title)
        self.compare = QGridLayout()
        self.compare.setHorizontalSpacing(10)
        self.compare.setVerticalSpacing(1)
        col.addLayout(self.compare)
        self.comparison: xv.Comparison | None = None
        self.compare_cells: dict[tuple[str, str], QLabel] = {}
        """``(row name, class code)`` -> the label of each number in the comparison table."""
        self.view: xv.ExplanationView | None = None
        self.cells: dict[tuple[str, int], QLabel] = {}
        """``(row name, column)`` -> the label of each number shown (column 1: model, 2: reference)."""
        self.show_explanation(None)
        self.show_comparison({})

    # ----- what is shown
    def show_explanation(self, explanation: Mapping | None, class_titles: Mapping[str, str] | None = None,
                         predicted: str | None = None, visible: bool = True) -> None:
        """Paint one explanation dict (``None``: the map has none); ``visible=False`` hides the panel
        (no classifier, no map)."""
        self.setVisible(visible)
        view = xv.build_view(explanation, class_titles, predicted)
        self.view = view
        if isinstance(explanation, Mapping):
            self.set_choice(explanation.get("method"), explanation.get("layer"))
        self.title.setText(view.title)
        self.heading.setVisible(view.heading is not None)
        self.heading.setText(view.heading or "")
        self.heading.setStyleSheet(HEADING_STYLE.format(colour=view.colour) if view.heading else "")
        self.verdict.setText(view.verdict)
        self._paint_table(view)
        self.pending.setText(view.pending or "")
        self.pending.setVisible(view.pending is not None)

    def show_comparison(self, explanations: Mapping[str, Mapping], class_titles: Mapping[str, str] | None = None,
                        predicted: str | None = None) -> None:
        """The classes explained so far side by side (hidden with fewer than two)."""
        _clear(self.compare)
        self.compare_cells = {}
        self.comparison = cmp = xv.build_comparison(explanations, class_titles, predicted)
        self.compare_title.setVisible(cmp is not None)
        if cmp is None:
            return
        for c, head in enumerate(cmp.header):
            if head:
                h = _label(f"<b>{html.escape(head)}</b>")
                h.setAlignment(Qt.AlignmentFlag.AlignRight)
                self.compare.addWidget(h, 0, c)
        for r, (name, row) in enumerate(cmp.rows, start=1):
            self.compare.addWidget(_label(name), r, 0)
            for c, (code, cell) in enumerate(zip(cmp.codes, row), start=1):
                lab = self._cell(cell)
                lab.setAlignment(Qt.AlignmentFlag.AlignRight)
                self.compare.addWidget(lab, r, c)
                self.compare_cells[(name, code)] = lab
        self.compare.setColumnStretch(0, 1)

    def set_choice(self, method: str | None, layer: str | None) -> None:
        """Show ``method`` / ``layer`` in the combos (no signal); an unknown layer is added to the list."""
        for box, value in ((self.method, method), (self.layer, layer)):
            if not value:
                continue
            i = box.findData(value)
            if i < 0:
                box.addItem(xv.layer_title(value) if box is self.layer else xv.method_title(value), value)
                i = box.count() - 1
            box.blockSignals(True)
            box.setCurrentIndex(i)
            box.blockSignals(False)

    def set_status(self, text: str) -> None:
        """A line under the verdict about work on this map (e.g. ``Recomputing ...``; ``""`` hides it)."""
        if text:
            self.pending.setText(text)
            self.pending.setVisible(True)
        else:
            pending = self.view.pending if self.view is not None else None
            self.pending.setText(pending or "")
            self.pending.setVisible(pending is not None)

    def choice(self) -> tuple[str, str]:
        """The ``(method, layer)`` the combos show."""
        return self.method.currentData(), self.layer.currentData()

    def _on_choice(self, _index: int = 0) -> None:
        self.recompute_requested.emit(*self.choice())

    def _paint_table(self, view: xv.ExplanationView) -> None:
        _clear(self.table)
        _clear(self.checks)
        self.cells = {}
        for c, head in enumerate(view.header):
            if head:
                h = _label(f"<b>{html.escape(head)}</b>", wrap=False)
                h.setAlignment(Qt.AlignmentFlag.AlignRight)
                self.table.addWidget(h, 0, c)
        for r, (name, model, ref) in enumerate(view.localisation, start=1):
            self.table.addWidget(self._name(name), r, 0)
            for c, cell in ((1, model), (2, ref)):
                if cell is None:
                    continue
                lab = self._cell(cell)
                lab.setAlignment(Qt.AlignmentFlag.AlignRight)
                self.table.addWidget(lab, r, c)
                self.cells[(name, c)] = lab
        self.table.setColumnStretch(0, 1)
        for r, (name, cell) in enumerate(view.checks):
            self.checks.addWidget(self._name(name), r, 0)
            lab = self._cell(cell)
            self.checks.addWidget(lab, r, 1)
            self.cells[(name, 1)] = lab
        self.checks.setColumnStretch(0, 1)

    @staticmethod
    def _name(name: str) -> QLabel:
        lab = _label(name)
        lab.setToolTip(xv.ROW_TIPS.get(name, ""))
        return lab

    @staticmethod
    def _cell(cell: xv.Cell) -> QLabel:
        lab = _label(cell.text, wrap=False)
        colour = xv.COLOURS.get(cell.tone, "")
        if colour:
            lab.setStyleSheet(f"color: {colour};" + (" font-weight: bold;" if cell.tone == "poor" else ""))
        return lab

    def text(self) -> str:
        """Everything the panel says, as plain text (for tests and copying)."""
        parts = [self.title.text(), self.heading.text() if self.heading.isVisible() else "", self.verdict.text()]
        parts += [f"{name}: {lab.text()}" for (name, _), lab in self.cells.items()]
        parts.append(self.pending.text() if self.pending.isVisible() else "")
        return "\n".join(p for p in parts if p)
