"""The cursor read-out: voxel and world coordinates, intensity, label and heat-map value at a voxel
(the words come from :meth:`braingui.display.context.DisplayContext.describe_voxel`)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit, QWidget

from braingui.display.context import DisplayContext


class CursorReadout(QLineEdit):
    """One line under the panes describing the voxel under the mouse (or the crosshair).

    A read-only, frameless line edit rather than a label: its size does not follow its text, so a new
    text (every slider step, every mouse move) repaints this line only instead of laying the window out
    again; the text can still be selected with the mouse and copied (context menu). It takes no keyboard
    focus, so the arrow keys keep stepping through the slices."""

    def __init__(self, ctx: DisplayContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.setReadOnly(True)
        self.setFrame(False)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setStyleSheet("QLineEdit { background: transparent; }")
        self.setToolTip("0-based voxel index as stored in the file (as nibabel and FSLeyes count) and scanner world coordinates (mm)")
        self.fields: dict[str, str] = {}
        ctx.changed.connect(lambda what: self.show_voxel(None))
        self.show_voxel(None)

    def show_voxel(self, ijk) -> None:
        """Describe ``ijk``; ``None`` describes the crosshair voxel."""
        if self.ctx.case is None:
            self.fields = {}
            self.setText("")
            return
        self.fields = self.ctx.describe_voxel(self.ctx.cursor if ijk is None else ijk)
        names = {"voxel": "voxel", "world": "world", "intensity": "", "label": "label", "heat": "Grad-CAM"}
        self.setText("   ".join(f"{names[k]} {v}".strip() for k, v in self.fields.items()))
        self.setCursorPosition(0)  # a line too long for the window shows its start (the voxel), not its end
