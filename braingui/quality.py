"""Quality flags: signs that a segmentation is wrong, each with what to check (numpy + scipy.ndimage).

:func:`assess` runs every check and returns :class:`Flag` objects (``results.json`` ``quality.flags``):

* ``tta_disagreement`` — the flipped views of test-time augmentation disagree on a region's volume.
* ``et_outside_core`` — enhancing tumour predicted outside the predicted tumour core (or core outside
  the whole tumour): the network's region channels are not nested as anatomy requires.
* ``far_component`` — tumour (or tumour core) components more than 20 mm from the main lesion.
* ``bilateral_mirror`` — tumour in both hemispheres, mirrored about the midline (symmetric false
  positives such as periventricular tissue; also a true butterfly tumour).
* ``brain_edge`` — much of the tumour lies along the edge of the brain mask (skull left on, or
  misregistered sequences).
* ``input_intensity`` — a sequence's z-scored brain intensities are unlike the training data's
  (:mod:`braingui.intensity_stats`; the reference is stored in the bundle manifest).

All volumes are on the case's canonical RAS+ grid (axis 0 = x, left to right), so the midline is a plane
of constant x: the centre of the brain mask's x extent. Thresholds are in :class:`Thresholds`; they were
set on data (the real BraTS cases with their expert labels stay quiet, so does the demo phantom; see
``tests/unit/test_quality.py`` and ``training/tta_study.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from braingui import labels as lab
from braingui.geometry import bounding_box
from braingui.intensity_stats import InputStatistics, intensity_distance

_STRUCTURE = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Flag:
    """One quality flag: a stable ``code`` and a ``message`` that says what to check."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Thresholds:
    """When each check fires.

    Attributes:
        disagreement_rel: a region's member volume range (max - min) above this fraction of its volume ...
        disagreement_ml: ... and above this many mL (small regions vary a lot in relative terms).
        nesting_ml: enhancing outside core (or core outside whole tumour) above this many mL ...
        nesting_rel: ... and above this fraction of the enhancing (core) volume.
        far_mm: a component farther than this from the main lesion is far.
        far_min_ml: components smaller than this are ignored by the far check.
        mirror_overlap: fraction of the tumour (outside the midline band) that overlaps its mirror image.
        mirror_band_mm: half-width of the band round the midline left out of the mirror check.
        mirror_min_ml: the smaller hemisphere's tumour must exceed this for the mirror check.
        edge_mm: a tumour voxel this close to the outside of the brain mask is on the edge.
        edge_fraction: the fraction of the tumour on the edge above which the check fires.
        edge_min_ml: tumours smaller than this are not edge-checked.
        intensity_distance: largest robust distance of a sequence's quantiles from the reference.
    """

    disagreement_rel: float = 0.25
    disagreement_ml: float = 5.0
    nesting_ml: float = 1.0
    nesting_rel: float = 0.1
    far_mm: float = 20.0
    far_min_ml: float = 0.5
    mirror_overlap: float = 0.2
    mirror_band_mm: float = 10.0
    mirror_min_ml: float = 5.0
    edge_mm: float = 3.0
    edge_fraction: float = 0.3
    edge_min_ml: float = 1.0
    intensity_distance: float = 6.0


DEFAULT_THRESHOLDS = Thresholds()


def _crop(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    bounds = bounding_box(mask)
    if bounds is None:
        return None
    return tuple(slice(max(lo - margin, 0), min(hi + margin, n)) for lo, hi, n in zip(*bounds, mask.shape))


def check_disagreement(summary: dict | None, volumes_ml: dict[str, float], members: int,
                       t: Thresholds = DEFAULT_THRESHOLDS) -> list[Flag]:
    """``tta_disagreement``: regions whose volume varies across the TTA members beyond the thresholds.

    Args:
        summary: :func:`braingui.uncertainty.region_summary` output (``None`` without TTA: no flag).
        volumes_ml: the label map's region volumes.
        members: how many views.
    """
    if not summary:
        return []
    parts = []
    for region in ("WT", "TC", "ET"):
        lo, hi = summary[region]["volume_ml_range"]
        ref = max(volumes_ml.get(region, 0.0), hi)
        if hi - lo > t.disagreement_ml and hi - lo > t.disagreement_rel * ref:
            parts.append(f"{region} {lo:.0f}-{hi:.0f} mL")
    if not parts:
        return []
    return [Flag("tta_disagreement",
                 f"the {members} flipped views of the input disagree on the volume ({', '.join(parts)}): the "
                 "network is unsure here; check the outline against the images slice by slice with the "
                 "uncertainty map on, and do not rely on these volumes")]


def check_nesting(channels: np.ndarray | None, regions: tuple[str, ...], voxel_ml: float,
                  t: Thresholds = DEFAULT_THRESHOLDS) -> list[Flag]:
    """``et_outside_core``: thresholded region channels that are not nested (ET in TC in WT).

    Args:
        channels: bool ``(R, X, Y, Z)`` region channels above threshold, named by ``regions`` (``None``:
            no flag).
        regions: the region of each channel.
        voxel_ml: volume of one voxel in mL.
    """
    if channels is None:
        return []
    ch = {name: np.asarray(channels[i], dtype=bool) for i, name in enumerate(regions)}
    flags = []
    for inner, outer, what in (("ET", "TC", "enhancing tumour outside the tumour core"),
                               ("TC", "WT", "tumour core outside the whole tumour")):
        n_in = int(np.count_nonzero(ch[inner]))
        out_ml = float(np.count_nonzero(ch[inner] & ~ch[outer]) * voxel_ml)
        if out_ml > t.nesting_ml and out_ml > t.nesting_rel * n_in * voxel_ml:
            flags.append(Flag("et_outside_core",
                              f"{out_ml:.1f} mL of {what} (the network's regions are not nested as anatomy "
                              "requires): check the enhancing and core labels against T1ce and T2, "
                              "especially away from the main lesion"))
    return flags


def far_components(mask: np.ndarray, spacing: tuple[float, float, float], voxel_ml: float, far_mm: float,
                   min_ml: float) -> list[tuple[float, float]]:
    """Components of ``mask`` farther than ``far_mm`` from its largest component.

    Args:
        mask: bool ``(X, Y, Z)``.
        spacing: voxel size in mm.
        voxel_ml: volume of one voxel in mL.
        far_mm: distance (mm, nearest voxel to nearest voxel) beyond which a component is far.
        min_ml: smaller components are ignored.

    Returns:
        ``[(volume_ml, distance_mm), ...]`` of the far components, largest first.
    """
    crop = _crop(mask)
    if crop is None:
        return []
    comp, n = ndimage.label(mask[crop], structure=_STRUCTURE)
    if n < 2:
        return []
    sizes = np.bincount(comp.ravel())[1:]
    main = int(np.argmax(sizes)) + 1
    dist = ndimage.distance_transform_edt(comp != main, sampling=spacing)
    nearest = ndimage.minimum(dist, comp, index=np.arange(1, n + 1))
    out = [(float(sizes[k] * voxel_ml), float(nearest[k])) for k in range(n)
           if k + 1 != main and sizes[k] * voxel_ml >= min_ml and nearest[k] > far_mm]
    return sorted(out, reverse=True)


def check_far(labels: np.ndarray, spacing, voxel_ml: float, t: Thresholds = DEFAULT_THRESHOLDS) -> list[Flag]:
    """``far_component``: whole-tumour or tumour-core components far from the main lesion.

    Args:
        labels: uint8 ``(X, Y, Z)`` internal BraTS labels.
        spacing: voxel size (mm).
        voxel_ml: volume of one voxel in mL.
    """
    masks = lab.regions(labels)
    flags = []
    for region, what in (("WT", "tumour"), ("TC", "tumour core (necrosis or enhancing)")):
        far = far_components(masks[region], spacing, voxel_ml, t.far_mm, t.far_min_ml)
        if far:
            total = sum(v for v, _ in far)
            flags.append(Flag("far_component",
                              f"{len(far)} {what} component(s), {total:.1f} mL in all, lie more than "
                              f"{t.far_mm:.0f} mm from the main lesion (the nearest {min(d for _, d in far):.0f} mm "
                              "away): check whether each is a second lesion or a false positive (vessels, "
                              "choroid plexus, artefacts)"))
    return flags


def midline_index(brain: np.ndarray) -> float:
    """The midline as a (fractional) x index: the centre of the brain mask's x extent (RAS+ grid)."""
    xs = np.flatnonzero(brain.any(axis=(1, 2)))
    if xs.size == 0:
        return (brain.shape[0] - 1) / 2.0
    return (xs[0] + xs[-1]) / 2.0


def mirror_overlap(mask: np.ndarray, brain: np.ndarray, spacing, band_mm: float) -> tuple[float, float, float]:
    """How much of ``mask`` overlaps its mirror image about the midline, outside a band round it.

    Args:
        mask: bool ``(X, Y, Z)`` on a RAS+ grid.
        brain: bool ``(X, Y, Z)`` brain mask (gives the midline).
        spacing: voxel size (mm); only x is used.
        band_mm: voxels closer than this to the midline are left out.

    Returns:
        ``(overlap fraction, voxels on the left, voxels on the right)`` outside the band.
    """
    c = midline_index(brain)
    x = np.arange(mask.shape[0], dtype=np.float64)
    outside = np.abs(x - c) * float(spacing[0]) >= band_mm
    src = np.rint(2 * c - x).astype(np.intp)
    valid = outside & (src >= 0) & (src < mask.shape[0])
    per_x = mask.reshape(mask.shape[0], -1)
    mirrored = np.zeros_like(per_x)
    mirrored[valid] = per_x[src[valid]]
    kept = per_x & outside[:, None]
    n = int(np.count_nonzero(kept))
    if n == 0:
        return 0.0, 0.0, 0.0
    both = int(np.count_nonzero(kept & mirrored))
    left = float(np.count_nonzero(kept[x < c]))
    return both / n, left, float(n - left)


def check_mirror(labels: np.ndarray, brain: np.ndarray, spacing, voxel_ml: float,
                 t: Thresholds = DEFAULT_THRESHOLDS) -> list[Flag]:
    """``bilateral_mirror``: tumour in both hemispheres that overlaps its own mirror image.

    Args:
        labels: uint8 ``(X, Y, Z)`` internal BraTS labels on the RAS+ grid.
        brain: bool ``(X, Y, Z)`` brain mask.
        spacing: voxel size (mm).
        voxel_ml: volume of one voxel in mL.
    """
    overlap, left, right = mirror_overlap(labels > 0, brain, spacing, t.mirror_band_mm)
    if overlap < t.mirror_overlap or min(left, right) * voxel_ml < t.mirror_min_ml:
        return []
    return [Flag("bilateral_mirror",
                 f"tumour is labelled in both hemispheres, mirrored about the midline ({100 * overlap:.0f} % of "
                 f"it overlaps its mirror image; {left * voxel_ml:.0f} mL left, {right * voxel_ml:.0f} mL right): "
                 "check for a symmetric false positive (e.g. tissue round both ventricles) before accepting a "
                 "bilateral tumour")]


def edge_fraction(mask: np.ndarray, brain: np.ndarray, spacing, edge_mm: float) -> float:
    """Fraction of ``mask`` outside ``brain`` or within ``edge_mm`` of its outside (0 for an empty mask).

    Args:
        mask, brain: bool ``(X, Y, Z)``.
        spacing: voxel size (mm).
        edge_mm: how close to the outside counts as on the edge.
    """
    margin = int(np.ceil(edge_mm / min(spacing))) + 1
    crop = _crop(mask, margin)
    if crop is None:
        return 0.0
    sub_mask = mask[crop]
    sub_brain = np.pad(brain[crop], 1, constant_values=False)  # the volume's border is outside too
    inner = tuple(slice(1, -1) for _ in range(3))
    depth = ndimage.distance_transform_edt(sub_brain, sampling=spacing)[inner]
    on_edge = sub_mask & (depth <= edge_mm)
    return float(np.count_nonzero(on_edge)) / float(np.count_nonzero(sub_mask))


def check_edge(labels: np.ndarray, brain: np.ndarray, spacing, voxel_ml: float,
               t: Thresholds = DEFAULT_THRESHOLDS) -> list[Flag]:
    """``brain_edge``: a large part of the tumour along the edge of the brain mask.

    Args:
        labels: uint8 ``(X, Y, Z)`` internal BraTS labels.
        brain: bool ``(X, Y, Z)`` brain mask (non-zero in any sequence).
        spacing: voxel size (mm).
        voxel_ml: volume of one voxel in mL.
    """
    wt = labels > 0
    if np.count_nonzero(wt) * voxel_ml < t.edge_min_ml:
        return []
    frac = edge_fraction(wt, brain, spacing, t.edge_mm)
    if frac < t.edge_fraction:
        return []
    return [Flag("brain_edge",
                 f"{100 * frac:.0f} % of the tumour lies within {t.edge_mm:.0f} mm of the edge of the brain mask: "
                 "check that the skull was stripped and that the four sequences are registered to each other")]


def check_intensities(stats: dict[str, list[float]] | None, reference: InputStatistics | None,
                      t: Thresholds = DEFAULT_THRESHOLDS) -> list[Flag]:
    """``input_intensity``: sequences whose z-scored brain quantiles are far from the training data's.

    Args:
        stats: :func:`braingui.intensity_stats.intensity_statistics` of the case (``None``: no flag).
        reference: the bundle's reference (``None``: no flag).
    """
    if not stats or reference is None:
        return []
    distance = intensity_distance(stats, reference)
    odd = {seq: d for seq, d in distance.items() if d > t.intensity_distance}
    if not odd:
        return []
    listed = ", ".join(f"{seq} ({d:.1f})" for seq, d in sorted(odd.items(), key=lambda kv: -kv[1]))
    return [Flag("input_intensity",
                 f"input intensities unlike the {reference.cases} training cases in {listed} (a distance "
                 f"above {t.intensity_distance:.0f} is unusual): check that the sequences are not swapped, that the "
                 "background is 0 (skull-stripped) and that nothing rescaled the images unevenly")]


def assess(labels: np.ndarray, brain: np.ndarray, spacing, voxel_ml: float, *,
           channels: np.ndarray | None = None, regions: tuple[str, ...] = ("TC", "WT", "ET"),
           volumes_ml: dict[str, float] | None = None, summary: dict | None = None, members: int = 1,
           stats: dict[str, list[float]] | None = None, reference: InputStatistics | None = None,
           thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[Flag]:
    """Every check on one result.

    Args:
        labels: uint8 ``(X, Y, Z)`` internal BraTS labels on the case's RAS+ grid.
        brain: bool ``(X, Y, Z)`` brain mask.
        spacing: voxel size (mm); voxel_ml: voxel volume (mL).
        channels: bool ``(R, X, Y, Z)`` thresholded region channels before nesting (or ``None``).
        regions: the region of each channel.
        volumes_ml: region volumes of ``labels`` (computed when ``None``).
        summary, members: the TTA uncertainty summary and member count (:mod:`braingui.uncertainty`).
        stats, reference: the case's intensity statistics and the bundle's reference.
        thresholds: when each check fires.

    Returns:
        The flags raised, in the order of the module docstring.
    """
    t = thresholds
    spacing = tuple(float(s) for s in spacing)
    volumes_ml = volumes_ml if volumes_ml is not None else lab.region_volumes_ml(labels, voxel_ml)
    return (check_disagreement(summary, volumes_ml, members, t) + check_nesting(channels, regions, voxel_ml, t)
            + check_far(labels, spacing, voxel_ml, t) + check_mirror(labels, brain, spacing, voxel_ml, t)
            + check_edge(labels, brain, spacing, voxel_ml, t) + check_intensities(stats, reference, t))
