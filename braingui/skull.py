"""Is the skull still on? A check of the input the models expect (skull-stripped, as BraTS).

Two signs, measured on the T1 volume at about 2 mm resolution:

* *background*: a skull-stripped volume is exactly 0 outside the brain, so about half of the head's
  bounding box is non-zero (an ellipsoid fills 52% of its box); a scanner image has noise everywhere
  (close to 100%);
* *bright shell*: in a stripped T1 the outer 5 mm of the head mask are cortex and CSF, darker than the
  white matter inside; with the skull on they are scalp fat, brighter than the inside.

Measured on the 14 BraTS 2018 cases in ``shared/data/brats2018`` (T1): non-zero fraction 0.42-0.51,
shell / inside median ratio 0.62-0.85, fraction of shell voxels brighter than the inside's 90th
percentile 0.00-0.13; on a synthetic head with scalp, skull and a noisy background: 1.00, 1.75, 1.00.
The check warns at a non-zero fraction above :data:`MAX_NONZERO_FRACTION`, or a ratio above :data:`MAX_SHELL_RATIO`
together with a bright fraction above :data:`MAX_BRIGHT_FRACTION`; it says nothing about volumes whose
head spans less than :data:`MIN_EXTENT_MM` along an axis (not a head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MAX_NONZERO_FRACTION = 0.85
MAX_SHELL_RATIO = 1.05
MAX_BRIGHT_FRACTION = 0.3
MIN_EXTENT_MM = 80.0
SHELL_MM = 5.0
STEP_MM = 3.0
STRIP_TOOLS = "HD-BET, SynthStrip, FSL BET or BraTS Toolkit"


@dataclass(frozen=True)
class SkullSigns:
    """What :func:`measure` found.

    Attributes:
        nonzero_fraction: non-zero voxels / voxels of the head's bounding box.
        shell_ratio: median of the outer shell / median of the inside.
        bright_fraction: shell voxels brighter than the inside's 90th percentile.
        extent_mm: the head mask's size along each axis.
    """

    nonzero_fraction: float
    shell_ratio: float
    bright_fraction: float
    extent_mm: tuple[float, float, float]

    @property
    def judged(self) -> bool:
        """False when the volume is too small to be a head (then :attr:`skull_on` is False too)."""
        return min(self.extent_mm) >= MIN_EXTENT_MM and np.isfinite(self.shell_ratio)

    @property
    def skull_on(self) -> bool:
        """True when the signs say the skull has not been removed."""
        if not self.judged:
            return False
        return self.nonzero_fraction > MAX_NONZERO_FRACTION or (
            self.shell_ratio > MAX_SHELL_RATIO and self.bright_fraction > MAX_BRIGHT_FRACTION)


def measure(volume: np.ndarray, spacing: tuple[float, float, float]) -> SkullSigns | None:
    """Measure the signs of a skull on one volume.

    Args:
        volume: float ``(X, Y, Z)`` array (any axis order with matching ``spacing``).
        spacing: voxel size in mm along the three axes.

    Returns:
        The signs, or ``None`` for a volume with no positive voxels.
    """
    step = [max(1, int(round(STEP_MM / s))) for s in spacing]
    v = np.asarray(volume[:: step[0], :: step[1], :: step[2]], dtype=np.float32)
    sp = np.asarray(spacing, dtype=np.float64) * step
    positive = v[v > 0]
    if positive.size == 0:
        return None
    head = v > 0.1 * float(np.percentile(positive, 99))
    labels, n = ndimage.label(head)
    if n > 1:
        sizes = ndimage.sum_labels(head, labels, range(1, n + 1))
        head = labels == 1 + int(np.argmax(sizes))
    head = ndimage.binary_fill_holes(head)
    idx = np.argwhere(head)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    extent = tuple(float(e) for e in (hi - lo) * sp)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    nonzero = float(np.count_nonzero(v[box])) / float(np.prod(hi - lo))
    k = max(1, int(round(SHELL_MM / float(sp.min()))))
    inner_edge = ndimage.binary_erosion(head, iterations=k)
    shell = head & ~inner_edge
    inside = ndimage.binary_erosion(inner_edge, iterations=2 * k)
    if not inside.any() or not shell.any():
        return SkullSigns(nonzero, float("nan"), float("nan"), extent)
    inner = v[inside]
    ratio = float(np.median(v[shell]) / max(float(np.median(inner)), 1e-12))
    bright = float(np.mean(v[shell] > np.percentile(inner, 90)))
    return SkullSigns(nonzero, ratio, bright, extent)


def skull_warning(images: dict[str, np.ndarray], spacing: tuple[float, float, float]) -> str | None:
    """A warning when the T1 volume looks not skull-stripped, else ``None``.

    Args:
        images: modality -> float32 ``(X, Y, Z)`` volume (the case's canonical arrays); ``t1`` is used.
        spacing: the voxel size in mm.
    """
    volume = images.get("t1")
    if volume is None:
        return None
    signs = measure(volume, spacing)
    if signs is None or not signs.skull_on:
        return None
    seen = []
    if signs.nonzero_fraction > MAX_NONZERO_FRACTION:
        seen.append(f"{100 * signs.nonzero_fraction:.0f}% of the head's bounding box is non-zero, about 50% "
                    "for a stripped brain")
    if signs.shell_ratio > MAX_SHELL_RATIO and signs.bright_fraction > MAX_BRIGHT_FRACTION:
        seen.append(f"its outer {SHELL_MM:.0f} mm are {signs.shell_ratio:.2f}x as bright as the inside, "
                    "as a scalp is")
    return (f"the images look not skull-stripped (T1: {'; '.join(seen)}); the models were trained on "
            "skull-stripped BraTS images, so results may be wrong - strip the skull first "
            f"({STRIP_TOOLS}); the analysis can still be run")
