"""Legends: the Grad-CAM colour bar (scale, "low / high contribution") and the tumour-label key."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QWidget

from braingui.display import colormaps

TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)


class ColorBar(QWidget):
    """A horizontal colour bar of the heat-map colormap with its 0-1 scale.

    The Grad-CAM is normalised to [0, 1] per case (0: no contribution to the predicted class,
    1: the strongest contribution), so the scale is relative, not an absolute quantity.
    """

    def __init__(self, parent: QWidget | None = None, title: str = "Grad-CAM contribution (normalised per case)",
                 value_range: tuple[float, float] = (0.0, 1.0), ends: tuple[str, str] = ("low contribution",
                                                                                       "high contribution")):
        super().__init__(parent)
        self.colormap = colormaps.DEFAULT_COLORMAP
        self.title, self.value_range, self.ends = title, value_range, ends
        self.setMinimumSize(260, 64)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Grad-CAM colour scale: dark blue = regions that contributed little to the predicted "
                        "class, dark red = regions that contributed most. Normalised to 0..1 for each case.")

    def set_colormap(self, name: str) -> None:
        colormaps.heat_lut(name)
        if name != self.colormap:
            self.colormap = name
            self.update()

    def bar_colours(self) -> np.ndarray:
        """``(256, 4)`` RGBA colours the bar paints, low to high (for tests)."""
        return colormaps.heat_lut(self.colormap)

    def paintEvent(self, ev):
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        fg = self.palette().windowText().color()
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, self.font().pointSizeF() * 0.85))
        m, line = 12, 15
        w = self.width() - 2 * m
        p.setPen(fg)
        p.drawText(QRectF(m, 0, w, line), Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, self.title)
        top, bar_h = line + 2, 12
        lut = np.ascontiguousarray(self.bar_colours()[None, :, :])
        img = QImage(lut.data, 256, 1, 256 * 4, QImage.Format.Format_RGBA8888)
        p.drawImage(QRectF(m, top, w, bar_h), img)
        p.setPen(QPen(QColor(120, 120, 120)))
        p.drawRect(QRectF(m, top, w, bar_h))
        p.setFont(small)
        p.setPen(fg)
        y = top + bar_h
        for t in TICKS:
            x = m + t * w
            p.drawLine(int(round(x)), int(y), int(round(x)), int(y + 3))
            lo, hi = self.value_range
            p.drawText(QRectF(x - 20, y + 3, 40, line), Qt.AlignmentFlag.AlignHCenter, f"{lo + t * (hi - lo):g}")
        y += 3 + line
        p.drawText(QRectF(0, y, w / 2 + m, line), Qt.AlignmentFlag.AlignLeft, f"  {self.ends[0]}")
        p.drawText(QRectF(m + w / 2, y, w / 2 + m, line), Qt.AlignmentFlag.AlignRight, f"{self.ends[1]}  ")
        p.end()


class LabelLegend(QWidget):
    """The tumour-label key: a coloured swatch and the name of each label (paper colours)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 0, 4, 0)
        row.setSpacing(12)
        self.entries: list[tuple[str, tuple[int, int, int]]] = []
        for value, name, rgb in colormaps.label_legend():
            swatch = QLabel()
            swatch.setFixedSize(14, 14)
            swatch.setStyleSheet(f"background: rgb{tuple(rgb)}; border: 1px solid #777;")
            text = QLabel(f"{name} ({value})")
            text.setToolTip(f"label {value} in the BraTS convention")
            row.addWidget(swatch)
            row.addWidget(text)
            self.entries.append((name, rgb))
        row.addStretch(1)
