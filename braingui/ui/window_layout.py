"""The main window's widgets and where they sit (no behaviour: :mod:`braingui.ui.main_window` wires them).

Left: the figure (the four panes of the paper's Fig. 1 with the label legend and the Grad-CAM colour
bar), the depth slider with the plane switch and jumps, the cursor read-out. Right, in a scroll area:
the Run button, the display controls and the results panel. Status bar: stage, progress, Cancel.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QSplitter, QVBoxLayout,
                               QWidget)

from braingui.ui.controls import LookControls, SliceControls
from braingui.ui.legend import ColorBar, LabelLegend
from braingui.ui.pane_grid import PaneGrid
from braingui.ui.readout import CursorReadout
from braingui.ui.results_panel import ResultsPanel
from braingui.uncertainty import LEGEND as UNCERTAINTY_LEGEND


def build_layout(win) -> None:
    """Create the widgets of main window ``win`` as its attributes (``figure``, ``panes``, ``label_legend``,
    ``colorbar``, ``slice_controls``, ``readout``, ``look``, ``results``, ``analyse_button``,
    ``stage_label``, ``progress``, ``cancel_button``) and lay them out."""
    ctx = win.ctx
    win.figure = QWidget()
    fig = QVBoxLayout(win.figure)
    fig.setContentsMargins(0, 0, 0, 0)
    win.panes = PaneGrid(ctx)
    win.panes.set_arrangement(win.settings.arrangement if win.settings.arrangement in ("grid", "row") else "grid")
    fig.addWidget(win.panes, 1)
    legends = QHBoxLayout()
    win.label_legend = LabelLegend()
    win.colorbar = ColorBar()
    win.colorbar.set_colormap(ctx.colormap)
    win.uncertainty_bar = ColorBar(title=UNCERTAINTY_LEGEND["title"], value_range=UNCERTAINTY_LEGEND["range"],
                                   ends=("views agree", "views disagree"))
    win.uncertainty_bar.set_colormap(UNCERTAINTY_LEGEND["colormap"])
    win.uncertainty_bar.setToolTip("Segmentation pane with 'Show the uncertainty map': the standard deviation of the "
                                   "tumour probability across the flipped views of test-time augmentation")
    win.uncertainty_bar.setVisible(False)
    legends.addWidget(win.label_legend, 1)
    legends.addWidget(win.uncertainty_bar, 1)
    legends.addWidget(win.colorbar, 1)
    fig.addLayout(legends)
    left = QWidget()
    lcol = QVBoxLayout(left)
    lcol.setContentsMargins(4, 4, 4, 0)
    lcol.addWidget(win.figure, 1)
    win.slice_controls = SliceControls(ctx)
    lcol.addWidget(win.slice_controls)
    win.readout = CursorReadout(ctx)
    lcol.addWidget(win.readout)
    win.look = LookControls(ctx)
    win.results = ResultsPanel()
    right = QWidget()
    rcol = QVBoxLayout(right)
    rcol.setContentsMargins(0, 0, 0, 0)
    win.analyse_button = QPushButton("Run analysis")
    win.analyse_button.setToolTip("Segment, classify and compute the Grad-CAM (Ctrl+R)")
    rcol.addWidget(win.analyse_button)
    rcol.addWidget(win.look)
    rcol.addWidget(win.results, 1)
    scroll = QScrollArea()
    scroll.setWidget(right)
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setMinimumWidth(400)
    right.setMaximumWidth(520)
    split = QSplitter(Qt.Orientation.Horizontal)
    split.addWidget(left)
    split.addWidget(scroll)
    split.setStretchFactor(0, 1)
    split.setSizes([1150, 430])
    win.setCentralWidget(split)
    win.stage_label, win.progress, win.cancel_button = job_indicator(win.statusBar(), 260, "Cancel",
                                                                     "Stop the analysis (Esc)")


def job_indicator(status_bar, width: int, button: str, tip: str) -> tuple[QLabel, QProgressBar, QPushButton]:
    """A stage label, a progress bar (0..1000) of at most ``width`` pixels and a stop button, added to the
    right of ``status_bar``; returns the three widgets (the analysis and the on-demand heat maps each have one)."""
    label, bar, stop = QLabel(""), QProgressBar(), QPushButton(button)
    bar.setRange(0, 1000)
    bar.setMaximumWidth(width)
    stop.setToolTip(tip)
    for w in (label, bar, stop):
        status_bar.addPermanentWidget(w)
    return label, bar, stop
