"""Controls bound to the display context: the depth slider and plane switch, and the look controls.

Each control writes to :class:`DisplayContext` and follows its ``changed`` signal (with signals
blocked while it updates itself, so nothing loops).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
                               QLabel, QPushButton, QSlider, QWidget)

from braingui.discovery import MODALITIES, MODALITY_TITLES
from braingui.display import colormaps, planes
from braingui.display.context import MODEL, REFERENCE, DisplayContext


class SliceControls(QWidget):
    """Plane buttons, the depth slider with "slice n / total", and the jump buttons.

    Signals:
        jump_tumour(): the user asked for the slice with the largest tumour area.
        jump_hottest(): the user asked for the hottest heat-map voxel.
    """

    jump_tumour = Signal()
    jump_hottest = Signal()

    def __init__(self, ctx: DisplayContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 2, 4, 2)
        self.plane_buttons: dict[str, QPushButton] = {}
        group = QButtonGroup(self)
        for plane, key in zip(planes.PLANES, ("A", "C", "S")):
            b = QPushButton(plane.capitalize())
            b.setCheckable(True)
            b.setToolTip(f"{plane} plane (key {key})")
            b.clicked.connect(lambda _=False, p=plane: self.ctx.set_plane(p))
            group.addButton(b)
            row.addWidget(b)
            self.plane_buttons[plane] = b
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Depth: mouse wheel, arrow keys, Page Up/Down")
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(lambda v: self.ctx.set_slice(v - 1))
        row.addWidget(self.slider, 1)
        self.slice_label = QLabel("- / -")
        # a fixed size: a new text then repaints the label only, not the window's layout (each slider step)
        self.slice_label.setFixedSize(max(90, self.slice_label.fontMetrics().horizontalAdvance("0000 / 0000") + 8),
                                      self.slice_label.sizeHint().height())
        self.slice_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.slice_label)
        self.tumour_button = QPushButton("Largest tumour slice")
        self.tumour_button.setToolTip("Jump to the slice of this plane with the largest tumour area (key T)")
        self.tumour_button.clicked.connect(self.jump_tumour)
        self.hot_button = QPushButton("Hottest Grad-CAM")
        self.hot_button.setToolTip("Jump to the voxel where the Grad-CAM is highest (key H)")
        self.hot_button.clicked.connect(self.jump_hottest)
        row.addWidget(self.tumour_button)
        row.addWidget(self.hot_button)
        ctx.changed.connect(self.sync)
        self.sync()

    def sync(self, what=None) -> None:
        ctx = self.ctx
        n = ctx.n_slices
        self.slider.blockSignals(True)
        self.slider.setRange(1, max(n, 1))
        self.slider.setValue(ctx.slice_index + 1 if n else 1)
        self.slider.setEnabled(n > 0)
        self.slider.blockSignals(False)
        self.slice_label.setText(f"{ctx.slice_index + 1} / {n}" if n else "- / -")
        for plane, b in self.plane_buttons.items():
            b.setChecked(plane == ctx.plane)
        self.tumour_button.setEnabled(ctx.has_tumour)
        self.hot_button.setEnabled(ctx.heat is not None)


WINDOW_LABELS = {
    "low": ("Window low", "Intensity shown as black, in the image's intensity units (darker values are black "
                          "too). Or right-drag in a pane: left / right narrows / widens the window, up / down "
                          "brightens / darkens it."),
    "high": ("Window high", "Intensity shown as white, in the image's intensity units (brighter values are white "
                            "too). Or right-drag in a pane."),
}
"""``key -> (label, tooltip)`` of the two window spin boxes."""
WINDOW_UNITS_TIP = ("MRI intensities have no physical unit: the numbers are the scanner's (or the "
                    "preprocessing's) arbitrary units, as stored in the image file.")


def window_summary(lo: float, hi: float) -> str:
    """The window as level / width, in the image's intensity units (the line under the spin boxes)."""
    return f"level {(lo + hi) / 2:.1f}, width {hi - lo:.1f} (image intensity units)"


class LookControls(QWidget):
    """Modality, window/level, convention, colormap, Grad-CAM class, label source and opacities.

    Signals:
        cam_class_requested(str): the user chose a class whose map is not computed yet (the window computes
            it in the background, :mod:`braingui.ui.cam_requests`, and shows it when ready).
    """

    cam_class_requested = Signal(str)

    def __init__(self, ctx: DisplayContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        form = QFormLayout(self)
        form.setContentsMargins(4, 4, 4, 4)
        self.modality = QComboBox()
        for m in MODALITIES:
            self.modality.addItem(MODALITY_TITLES[m], m)
        self.modality.setToolTip("Image shown in the panes (keys 1-4)")
        self.modality.activated.connect(lambda i: ctx.set_modality(self.modality.itemData(i)))
        form.addRow("Image", self.modality)
        self.win_lo, self.win_hi = QDoubleSpinBox(), QDoubleSpinBox()
        self.win_labels: dict[str, QLabel] = {}
        self.win_reset = QPushButton("Auto")
        self.win_reset.setToolTip("Window from the 1st-99th percentile of the brain voxels")
        self.win_reset.clicked.connect(ctx.reset_window)
        for key, box in (("low", self.win_lo), ("high", self.win_hi)):
            text, tip = WINDOW_LABELS[key]
            box.setRange(-1e7, 1e7)
            box.setDecimals(1)
            box.setKeyboardTracking(False)
            box.setToolTip(tip)
            box.setAccessibleName(text)
            box.valueChanged.connect(self._on_window)
            label = QLabel(text)
            label.setBuddy(box)
            label.setToolTip(tip)
            self.win_labels[key] = label
            row = QHBoxLayout()
            row.addWidget(box, 1)
            if key == "low":
                row.addWidget(self.win_reset)
            form.addRow(label, row)
        self.win_units = QLabel("")
        self.win_units.setStyleSheet("color: #999;")
        self.win_units.setToolTip(WINDOW_UNITS_TIP)
        form.addRow("", self.win_units)
        self.convention = QComboBox()
        self.convention.addItem("Radiological (R on left)", planes.RADIOLOGICAL)
        self.convention.addItem("Neurological (L on left)", planes.NEUROLOGICAL)
        self.convention.activated.connect(lambda i: ctx.set_convention(self.convention.itemData(i)))
        form.addRow("Convention", self.convention)
        self.colormap = QComboBox()
        for name in colormaps.HEAT_COLORMAPS:
            self.colormap.addItem(name + (" (paper)" if name == "jet" else ""), name)
        self.colormap.activated.connect(lambda i: ctx.set_colormap(self.colormap.itemData(i)))
        form.addRow("Colormap", self.colormap)
        self.cam_class = QComboBox()
        self.cam_class.setToolTip("Which class's heat map to show (the predicted class by default); a class "
                                  "not computed yet is computed on demand, in a few seconds")
        self.cam_class.activated.connect(self._on_cam_class)
        form.addRow("Grad-CAM of", self.cam_class)
        self.reference = QCheckBox("Show the case's own label file")
        self.reference.setToolTip("Compare: show the reference labels that came with the case instead of the model's")
        self.reference.toggled.connect(lambda on: ctx.set_label_source(REFERENCE if on else MODEL))
        form.addRow("Labels", self.reference)
        self.uncertainty = QCheckBox("Show the uncertainty map")
        self.uncertainty.setToolTip("Segmentation pane: where the flipped views of test-time augmentation disagree "
                                    "(s.d. of the probability; dark = they agree), with the label outlines")
        self.uncertainty.toggled.connect(ctx.set_show_uncertainty)
        form.addRow("Uncertainty", self.uncertainty)
        self.measurements = QCheckBox("Draw the RANO diameters")
        self.measurements.setToolTip("Axial panes: the longest diameter of each enhancing lesion (yellow) and the "
                                     "longest one perpendicular to it (cyan), on the slice where it is largest. "
                                     "Ctrl + drag in a pane measures a distance in mm")
        self.measurements.toggled.connect(ctx.set_show_measurements)
        form.addRow("Measurements", self.measurements)
        self.seg_opacity = self._opacity_slider(ctx.set_seg_opacity, "Opacity of the segmentation fill")
        form.addRow("Segmentation", self.seg_opacity)
        self.heat_opacity = self._opacity_slider(ctx.set_heat_opacity, "Opacity of the heat map over the anatomy "
                                                 "(Grad-CAM and overlay panes)")
        form.addRow("Heat map", self.heat_opacity)
        ctx.changed.connect(self.sync)
        self.sync()

    def _opacity_slider(self, setter, tip: str) -> QSlider:
        s = QSlider(Qt.Orientation.Horizontal)
        s.setRange(0, 100)
        s.setToolTip(tip)
        s.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        s.valueChanged.connect(lambda v: setter(v / 100.0))
        return s

    def _on_cam_class(self, index: int) -> None:
        code, result = self.cam_class.itemData(index), self.ctx.result
        if result is not None and code not in result.cams:
            self.cam_class.setCurrentIndex(max(0, self.cam_class.findData(self.ctx.cam_class)))  # until it is ready
            self.cam_class_requested.emit(code)
        else:
            self.ctx.set_cam_class(code)

    def _on_window(self, _=None) -> None:
        self.ctx.set_window(self.win_lo.value(), self.win_hi.value())

    def sync(self, what=None) -> None:
        if what is not None and not (what - {"cursor"}):
            return  # a slider step changes nothing here
        ctx = self.ctx
        widgets = (self.modality, self.win_lo, self.win_hi, self.convention, self.colormap, self.cam_class,
                   self.reference, self.seg_opacity, self.heat_opacity, self.uncertainty, self.measurements)
        for w in widgets:
            w.blockSignals(True)
        self.modality.setCurrentIndex(max(0, self.modality.findData(ctx.modality)))
        lo, hi = ctx.window
        self.win_lo.setValue(lo)
        self.win_hi.setValue(hi)
        self.win_units.setText(window_summary(lo, hi) if ctx.case is not None else "")
        self.convention.setCurrentIndex(max(0, self.convention.findData(ctx.convention)))
        self.colormap.setCurrentIndex(max(0, self.colormap.findData(ctx.colormap)))
        if what is None or "data" in what or "look" in what:  # "look": a map computed on demand arrived
            self.cam_class.clear()
            if ctx.result is not None and ctx.result.cams:  # every class: a missing map is computed on demand
                for code in dict.fromkeys((*ctx.result.class_names, *ctx.result.cams)):
                    title = ctx.result.class_titles.get(code, code)
                    more = " (predicted)" if code == ctx.result.predicted_class else ""
                    self.cam_class.addItem(title + more + ("" if code in ctx.result.cams else " — compute"), code)
        self.cam_class.setCurrentIndex(max(0, self.cam_class.findData(ctx.cam_class)))
        self.cam_class.setEnabled(self.cam_class.count() > 1)
        has_ref = ctx.case is not None and ctx.case.labels is not None
        self.reference.setEnabled(has_ref and ctx.result is not None and ctx.result.labels is not None)
        self.reference.setChecked(has_ref and ctx.labels is ctx.case.labels)
        self.seg_opacity.setValue(round(ctx.seg_opacity * 100))
        self.heat_opacity.setValue(round(ctx.heat_opacity * 100))
        self.uncertainty.setEnabled(ctx.uncertainty is not None)
        self.uncertainty.setChecked(ctx.show_uncertainty and ctx.uncertainty is not None)
        self.measurements.setChecked(ctx.show_measurements)
        self.measurements.setEnabled(getattr(ctx.result, "measurements", None) is not None)
        for w in widgets:
            w.blockSignals(False)
        for w in (self.modality, self.win_lo, self.win_hi, self.win_reset):
            w.setEnabled(ctx.case is not None)
