"""The cursor read-out: voxel and world coordinates, intensity, label and heat-map value at a voxel."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from braingui.discovery import MODALITY_TITLES
from braingui.labels import LABEL_NAMES
from braingui.display.context import DisplayContext


def describe_voxel(ctx: DisplayContext, ijk) -> dict[str, str]:
    """What the read-out says about canonical voxel ``ijk``, field by field.

    The voxel index is given as the *file's* voxel index (what ITK-SNAP, 3D Slicer and FSLeyes show for
    the same file), world coordinates in mm (scanner RAS, from the affine).
    """
    case = ctx.case
    ijk = tuple(int(v) for v in ijk)
    world = case.grid.voxel_to_world(np.array(ijk, dtype=float))
    file_ijk = np.rint(np.linalg.solve(case.grid.original_affine, np.append(world, 1.0))[:3]).astype(int)
    out = {
        "voxel": "({}, {}, {})".format(*file_ijk),
        "world": "({:.1f}, {:.1f}, {:.1f}) mm".format(*world),
        "intensity": f"{MODALITY_TITLES.get(ctx.modality, ctx.modality)} {float(ctx.image[ijk]):.4g}",
    }
    labels = ctx.labels
    if labels is not None:
        value = int(labels[ijk])
        out["label"] = LABEL_NAMES.get(value, "background") if value else "background"
    heat = ctx.heat
    if heat is not None:
        out["heat"] = f"{float(heat[ijk]):.2f}"
    return out


class CursorReadout(QLabel):
    """One line under the panes describing the voxel under the mouse (or the crosshair)."""

    def __init__(self, ctx: DisplayContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setToolTip("Voxel index as stored in the file (as ITK-SNAP shows it) and scanner world coordinates")
        self.fields: dict[str, str] = {}
        ctx.changed.connect(lambda what: self.show_voxel(None))
        self.show_voxel(None)

    def show_voxel(self, ijk) -> None:
        """Describe ``ijk``; ``None`` describes the crosshair voxel."""
        if self.ctx.case is None:
            self.fields = {}
            self.setText("")
            return
        self.fields = describe_voxel(self.ctx, self.ctx.cursor if ijk is None else ijk)
        names = {"voxel": "voxel", "world": "world", "intensity": "", "label": "label", "heat": "Grad-CAM"}
        self.setText("   ".join(f"{names[k]} {v}".strip() for k, v in self.fields.items()))
