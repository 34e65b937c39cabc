"""Segmentation uncertainty from test-time augmentation: the voxel map, per-region numbers, their text.

Definitions (the members are the flipped views of :mod:`braingui.inference.tta`):

* **voxel map** — per voxel, the standard deviation across the members of the sigmoid probability,
  taken per region channel (TC, WT, ET) and then the largest of the three: 0 where every view agrees,
  at most 0.5 (half the views at 0, half at 1). It is mapped onto the case grid like the probabilities
  (trilinear) and exported as ``uncertainty.nii.gz``.
* **region mean** — the mean of that region's channel standard deviation over the voxels of the
  region as predicted (by the mean of the members), on the network grid.
* **volume range** — the smallest and largest volume (mL) of the region over the members, each member
  thresholded on its own and its regions nested as in the label map, counted on the network grid
  (network voxel = case voxel x the grid map's scale) and rescaled by the ratio of the mean prediction's
  region volume on the case grid to the same on the network grid, so the range is on the scale of the
  reported volume (on a half-resolution network grid a small region's voxel count differs by ~10-20 %
  from the case grid's; mapping every member back would cost one more resampling per member).

With one member (no TTA) there is no spread and no uncertainty (``None``).

Everything here is plain numpy; the panel calls :func:`volume_text`, the viewer :data:`LEGEND`.
"""

from __future__ import annotations

import numpy as np

MEASURE = ("standard deviation across the flipped views (test-time augmentation) of the sigmoid probability, "
           "per region channel; the voxel map is the largest of the three channels (0 = all views agree, "
           "0.5 = maximal disagreement)")
MAX_STD = 0.5
"""The largest possible standard deviation of values in [0, 1]."""
LEGEND = {"title": "uncertainty (s.d. across views)", "range": (0.0, MAX_STD), "colormap": "inferno"}
"""How the viewer shows the voxel map: value range of the legend and the heat colormap
(:data:`braingui.display.colormaps.HEAT_COLORMAPS`); :func:`display_values` maps it to [0, 1]."""


def voxel_map(std: np.ndarray) -> np.ndarray:
    """The uncertainty voxel map from per-channel standard deviations.

    Args:
        std: float ``(R, X, Y, Z)`` standard deviation of each region channel across the members.

    Returns:
        float32 ``(X, Y, Z)``, the largest channel value per voxel, in [0, 0.5].
    """
    return np.asarray(std, dtype=np.float32).max(axis=0)


def display_values(volume: np.ndarray) -> np.ndarray:
    """A voxel map (any shape) scaled to [0, 1] over the legend range, for a heat-map layer (float32)."""
    lo, hi = LEGEND["range"]
    return np.clip((np.asarray(volume, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0)


def region_summary(mean: np.ndarray, std: np.ndarray, member_voxels: np.ndarray, regions: tuple[str, ...],
                   threshold: float, voxel_ml: float, case_ml: dict[str, float] | None = None) -> dict[str, dict]:
    """Per region the mean uncertainty inside the predicted region and the members' volume range.

    Args:
        mean: float ``(R, X, Y, Z)`` mean sigmoid over the members (network grid).
        std: float ``(R, X, Y, Z)`` standard deviation across the members (same grid).
        member_voxels: int ``(N, R)`` nested region voxel counts of each member.
        regions: the region of each channel (a permutation of TC, WT, ET).
        threshold: the sigmoid threshold of a region.
        voxel_ml: volume of one voxel of this grid in mL.
        case_ml: the mean prediction's region volumes on the case grid (before post-processing); the
            members' volumes are rescaled by ``case_ml / (the same on this grid)`` (``None``: no rescaling).

    Returns:
        ``{"WT": {"mean": float, "volume_ml_range": [lo, hi]}, "TC": ..., "ET": ...}`` (``mean`` is 0 for
        an empty region).
    """
    above = np.asarray(mean) > threshold
    ch = {name: i for i, name in enumerate(regions)}
    tc = above[ch["TC"]] | above[ch["ET"]]
    masks = {"ET": above[ch["ET"]], "TC": tc, "WT": above[ch["WT"]] | tc}
    out = {}
    for region in ("WT", "TC", "ET"):
        inside = masks[region]
        values = std[ch[region]][inside]
        ml = np.asarray(member_voxels)[:, ch[region]] * voxel_ml
        here = np.count_nonzero(inside) * voxel_ml
        if case_ml is not None and here > 0:
            ml = ml * (case_ml[region] / here)
        out[region] = {"mean": round(float(values.mean()) if values.size else 0.0, 4),
                       "volume_ml_range": [round(float(ml.min()), 3), round(float(ml.max()), 3)]}
    return out


def case_score(summary: dict[str, dict] | None) -> float | None:
    """One number per case for ranking cases by doubt: the WT region mean (``None`` without TTA)."""
    return None if not summary else float(summary["WT"]["mean"])


def _ml(value: float, lo: float, hi: float) -> str:
    """A range end: whole mL for a range over 10 mL at least 2 mL wide, else one decimal (two below 1 mL)."""
    return f"{value:.0f}" if hi >= 10 and hi - lo >= 2 else f"{value:.1f}" if hi >= 1 else f"{value:.2f}"


def range_text(region: str, summary: dict[str, dict] | None, members: int) -> str:
    """The members' volume range of a region, e.g. ``"29-35 across 8 views"`` (``""`` without TTA)."""
    if not summary or region not in summary or members < 2:
        return ""
    lo, hi = summary[region]["volume_ml_range"]
    return f"{_ml(lo, lo, hi)}-{_ml(hi, lo, hi)} across {members} views"


def volume_text(region: str, volume_ml: float, summary: dict[str, dict] | None = None, members: int = 1) -> str:
    """The panel's line of a region volume, with the range across views when there is one.

    Args:
        region: ``"WT"``, ``"TC"`` or ``"ET"``.
        volume_ml: the region's volume in the label map.
        summary: :func:`region_summary` output, or ``None`` without TTA.
        members: how many views the summary is over.

    Returns:
        e.g. ``"ET 32.9 mL (29-35 across 8 views)"``, or ``"ET 32.9 mL"`` without a range.
    """
    text = f"{region} {volume_ml:.1f} mL"
    spread = range_text(region, summary, members)
    return f"{text} ({spread})" if spread else text
