"""The series dialog: confirm or change which DICOM series is FLAIR, T1, T1ce and T2.

One row per series (number, description, grid, TE / TR / TI, why the rules proposed its role) with a
combo box for its role. The logic - one series per role, a role chosen for one series leaves the
series it was on, which roles are still missing - is :class:`braingui.series.Proposal`'s; this widget
only shows it. OK stays disabled until each of the four roles has a series.
"""

from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from braingui.discovery import MODALITIES, MODALITY_TITLES
from braingui.series import Proposal

_COLUMNS = ("Series", "Description", "Grid", "Timing", "Role", "Why")
_ROLE_COLUMN = _COLUMNS.index("Role")
NO_ROLE = "\u2014 not used"


class SeriesDialog(QDialog):
    """A table of the study's series with a role combo per series.

    Args:
        proposal: the suggested roles (a copy is edited; the caller's object is left alone).
        parent: the parent window.
    """

    def __init__(self, proposal: Proposal, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("DICOM series: which is which?")
        self.proposal = proposal.copy()
        self.combos: dict[str, QComboBox] = {}
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("The roles below were proposed from the series' descriptions, sequences and "
                                "timing. Check them, change any that are wrong, then press OK."))
        self.table = QTableWidget(len(self.proposal.series), len(_COLUMNS), self)
        self.table.setHorizontalHeaderLabels(_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        for row, info in enumerate(self.proposal.rows()):
            cells = ("" if info["number"] is None else str(info["number"]), info["description"], info["grid"],
                     info["timing"], None, "; ".join(info["why"]))
            for col, text in enumerate(cells):
                if text is not None:
                    item = QTableWidgetItem(text)
                    item.setToolTip(text)
                    self.table.setItem(row, col, item)
            combo = QComboBox(self.table)
            combo.addItem(NO_ROLE, None)
            for m in MODALITIES:
                combo.addItem(MODALITY_TITLES[m], m)
            combo.currentIndexChanged.connect(lambda _i, key=info["key"]: self._on_role_changed(key))
            self.table.setCellWidget(row, _ROLE_COLUMN, combo)
            self.combos[info["key"]] = combo
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(_COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table)
        self.status = QLabel(self)
        layout.addWidget(self.status)
        buttons = QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        self.buttons = QDialogButtonBox(buttons, self)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.resize(980, 120 + 34 * min(len(self.proposal.series), 12))
        self._refresh()

    def set_role(self, key: str, role: str | None) -> None:
        """Choose ``role`` (a modality or ``None``) for series ``key``, as the combo box does."""
        combo = self.combos[key]
        combo.setCurrentIndex(combo.findData(role) if role is not None else 0)

    def series_map(self) -> dict[str, str]:
        """modality -> series key, as chosen."""
        return dict(self.proposal.assignment)

    def _on_role_changed(self, key: str) -> None:
        self.proposal.assign(key, self.combos[key].currentData())
        self._refresh()

    def _refresh(self) -> None:
        for key, combo in self.combos.items():
            role = self.proposal.role_of(key)
            combo.blockSignals(True)
            combo.setCurrentIndex(combo.findData(role) if role is not None else 0)
            combo.blockSignals(False)
        missing = self.proposal.missing()
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not missing)
        self.status.setText("Choose a series for: " + ", ".join(MODALITY_TITLES[m] for m in missing) if missing
                            else "Each of FLAIR, T1, T1ce and T2 has a series.")


def ask_series(parent: QWidget | None, question) -> dict[str, str] | None:
    """Show the dialog for a :class:`braingui.ui.jobs.SeriesQuestion`; the chosen map, or ``None`` if cancelled."""
    from braingui.session import apply_selectors

    selectors = {m: v for m, v in (question.explicit or {}).items() if m in MODALITIES}
    dialog = SeriesDialog(apply_selectors(question.study, selectors), parent)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return dialog.series_map()
