"""RANO-style bidimensional measurements of the enhancing lesions of a label map (numpy + scipy).

What is measured (``results.json`` ``measurements``, the results panel, the report and the panes):

* **lesion** — a connected component of enhancing tumour (ET, label 4) in 3D with **26-connectivity**
  (voxels that touch by a face, an edge or a corner belong to one lesion, so a thin enhancing rim that
  meets itself only diagonally, across slices of a few millimetres, is not split into several lesions).
  When the map holds no ET at all, the components of the tumour core (TC: labels 1 and 4) are measured
  instead and ``region`` says ``"TC"``; with neither, there is nothing to measure.
* **axial slice** — a plane of constant canonical ``z`` (the case arrays are RAS+ ``[x, y, z]``; ``z``
  runs inferior -> superior). Every axial slice a lesion touches is measured; the one reported is where
  the longest diameter is largest (ties: the larger perpendicular diameter, then the lower slice).
* **outline** — on that slice, the lesion's pixel set is outlined where a radiologist would click: at
  the midpoints between each lesion pixel centre and each of its 4-neighbours outside the lesion (the
  vertices of the marching-squares contour at level 0.5). A bar of ``n`` pixels thus measures exactly
  ``n`` pixels; distances are in mm through the grid affine's in-plane columns, exact for anisotropic
  and oblique grids.
* **longest diameter** — the largest distance between two outline points (exact: a farthest pair lies
  on the convex hull, ``scipy.spatial.ConvexHull``, whose vertices are compared pairwise).
* **perpendicular diameter** — the longest segment between two outline points whose direction lies
  within :data:`PERPENDICULAR_TOLERANCE_DEG` (5 degrees) of the perpendicular to the longest diameter
  (a reader's "perpendicular" on a pixel grid). A lesion a few pixels across may have no such pair; the
  pair closest to perpendicular is then taken (the longer one of ties). ``perpendicular_angle_deg`` is
  the angle between the two diameters as measured.
* **product** — longest x perpendicular (mm^2). **Measurable** (RANO, Wen et al., J Clin Oncol 2010):
  both diameters at least :data:`MEASURABLE_MM` (10 mm). The **sum of products** is over the measurable
  lesions (RANO's bidimensional sum); ``sum_of_products_all_mm2`` is over every lesion.
* **specks** — components whose longest diameter is below :data:`MIN_LESION_MM` (5 mm) are not counted
  as lesions (their number is ``specks_ignored``): on the 14 expert label maps of BraTS 2018 they are
  fragments of 1-60 voxels of the annotation (up to 49 in one case), not lesions a reader would count.

A ring-enhancing lesion is measured across its rim, necrotic centre included (as automated RANO tools
measure the ET segmentation). Lesions are numbered from 1 by product, largest first. Coordinates of the
diameters' ends are canonical voxel coordinates (integers are voxel centres, so outline points are
half-integers in ``x`` or ``y``); ``slice`` is 1-based, as the window shows it.

:func:`measure` computes a :class:`Measurements`; :func:`measurements_text` is the panel's line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from braingui import labels as lab
from braingui.geometry import bounding_box

CONNECTIVITY = 26
"""3D connectivity of a lesion (face, edge and corner neighbours)."""
PERPENDICULAR_TOLERANCE_DEG = 5.0
"""Largest deviation from the perpendicular allowed for the perpendicular diameter (degrees)."""
MEASURABLE_MM = 10.0
"""RANO: a lesion is measurable when both diameters are at least this long (mm)."""
MIN_LESION_MM = 5.0
"""Components with a shorter longest diameter (mm) are specks, not lesions (see the module docstring)."""

_STRUCTURE = np.ones((3, 3, 3), dtype=bool)
_NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))
_CHUNK = 256  # outline points per block of the pairwise search (memory ~ 4 x _CHUNK x n floats)


@dataclass(frozen=True)
class Lesion:
    """One measured lesion.

    Attributes:
        index: 1-based number, by product (largest first).
        region: ``"ET"`` or ``"TC"`` (see the module docstring).
        voxels: voxels of the 3D component.
        volume_ml: its volume (mL).
        slice_index: 0-based canonical ``z`` of the measured axial slice.
        longest_mm, perpendicular_mm: the two diameters (mm).
        perpendicular_angle_deg: angle between them (90 = exactly perpendicular).
        longest_ends, perpendicular_ends: the ends of each diameter, canonical voxel ``(x, y, z)``.
        centroid_voxel: mean voxel coordinate of the 3D component.
        centroid_world: the same in world mm (RAS).
    """

    index: int
    region: str
    voxels: int
    volume_ml: float
    slice_index: int
    longest_mm: float
    perpendicular_mm: float
    perpendicular_angle_deg: float
    longest_ends: tuple[tuple[float, float, float], tuple[float, float, float]]
    perpendicular_ends: tuple[tuple[float, float, float], tuple[float, float, float]]
    centroid_voxel: tuple[float, float, float]
    centroid_world: tuple[float, float, float]

    @property
    def product_mm2(self) -> float:
        """Longest x perpendicular diameter (mm^2)."""
        return self.longest_mm * self.perpendicular_mm

    @property
    def measurable(self) -> bool:
        """Both diameters at least :data:`MEASURABLE_MM`."""
        return self.longest_mm >= MEASURABLE_MM and self.perpendicular_mm >= MEASURABLE_MM

    def as_dict(self) -> dict:
        """JSON-ready (``slice`` is 1-based; ends and centroids rounded to 1/1000 voxel or mm)."""
        def pt(p):
            return [round(float(v), 3) for v in p]

        return {"index": self.index, "region": self.region, "slice": self.slice_index + 1,
                "longest_mm": round(self.longest_mm, 2), "perpendicular_mm": round(self.perpendicular_mm, 2),
                "product_mm2": round(self.product_mm2, 1), "measurable": self.measurable,
                "perpendicular_angle_deg": round(self.perpendicular_angle_deg, 1),
                "voxels": self.voxels, "volume_ml": round(self.volume_ml, 4),
                "longest_ends_voxel": [pt(p) for p in self.longest_ends],
                "perpendicular_ends_voxel": [pt(p) for p in self.perpendicular_ends],
                "centroid_voxel": pt(self.centroid_voxel), "centroid_world_mm": pt(self.centroid_world)}


@dataclass(frozen=True)
class Measurements:
    """The lesions of one label map.

    Attributes:
        region: ``"ET"``, ``"TC"`` (no ET in the map) or ``None`` (no tumour core either).
        lesions: the lesions, largest product first.
        specks_ignored: components left out for a longest diameter below ``min_lesion_mm``.
        min_lesion_mm: that limit.
    """

    region: str | None
    lesions: tuple[Lesion, ...] = ()
    specks_ignored: int = 0
    min_lesion_mm: float = MIN_LESION_MM

    @property
    def count(self) -> int:
        return len(self.lesions)

    @property
    def measurable_count(self) -> int:
        return sum(1 for les in self.lesions if les.measurable)

    @property
    def sum_of_products_mm2(self) -> float:
        """Sum of the products of the measurable lesions (RANO)."""
        return float(sum(les.product_mm2 for les in self.lesions if les.measurable))

    @property
    def sum_of_products_all_mm2(self) -> float:
        """Sum of the products of every lesion."""
        return float(sum(les.product_mm2 for les in self.lesions))

    @property
    def largest(self) -> Lesion | None:
        return self.lesions[0] if self.lesions else None

    def as_dict(self) -> dict:
        """JSON-ready: definitions, counts, sums and the lesions (:meth:`Lesion.as_dict`)."""
        return {"region": self.region, "lesion_count": self.count, "measurable_count": self.measurable_count,
                "sum_of_products_mm2": round(self.sum_of_products_mm2, 1),
                "sum_of_products_all_mm2": round(self.sum_of_products_all_mm2, 1),
                "connectivity": CONNECTIVITY, "perpendicular_tolerance_deg": PERPENDICULAR_TOLERANCE_DEG,
                "measurable_mm": MEASURABLE_MM, "specks_ignored": self.specks_ignored,
                "min_lesion_mm": self.min_lesion_mm, "plane": "axial (canonical z)",
                "text": measurements_text(self), "lesions": [les.as_dict() for les in self.lesions]}


def lesion_mask(labels: np.ndarray) -> tuple[str | None, np.ndarray]:
    """The voxels measured and their region: ET, or TC when the map has no ET.

    Args:
        labels: uint8 ``(X, Y, Z)`` internal (BraTS 1/2/4) label map, canonical RAS+.

    Returns:
        ``(region, mask)``: ``"ET"``, ``"TC"`` or ``None`` (empty mask), and a bool ``(X, Y, Z)`` mask.
    """
    regions = lab.regions(np.asarray(labels))
    for region in ("ET", "TC"):
        if regions[region].any():
            return region, regions[region]
    return None, regions["ET"]


def measure(labels: np.ndarray, affine: np.ndarray, min_lesion_mm: float = MIN_LESION_MM) -> Measurements:
    """Measure every lesion of a label map (definitions in the module docstring).

    Args:
        labels: uint8 ``(X, Y, Z)`` internal (BraTS 1/2/4) label map on the canonical RAS+ grid.
        affine: float ``(4, 4)`` canonical voxel -> world (mm) affine (``Grid.affine``).
        min_lesion_mm: components with a shorter longest diameter are specks, not lesions.

    Returns:
        The :class:`Measurements`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (X, Y, Z), got shape {labels.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    region, mask = lesion_mask(labels)
    if region is None:
        return Measurements(None, min_lesion_mm=min_lesion_mm)
    lo, hi = bounding_box(mask)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    components, _ = ndimage.label(mask[crop], structure=_STRUCTURE)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    found = []
    for k, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        whole = tuple(slice(s.start + c.start, s.stop + c.start) for s, c in zip(box, crop))
        found.append(_measure_component(components[box] == k, whole, region, affine, voxel_ml))
    kept = sorted((les for les in found if les.longest_mm >= min_lesion_mm),
                  key=lambda les: (-les.product_mm2, -les.voxels, les.slice_index))
    return Measurements(region, tuple(_renumber(les, i) for i, les in enumerate(kept, start=1)),
                        len(found) - len(kept), min_lesion_mm)


def _renumber(lesion: Lesion, index: int) -> Lesion:
    return Lesion(index, *[getattr(lesion, f) for f in Lesion.__dataclass_fields__ if f != "index"])


def _measure_component(comp: np.ndarray, box: tuple[slice, ...], region: str, affine: np.ndarray,
                       voxel_ml: float) -> Lesion:
    """One 3D component ``comp`` (bool, cropped to ``box``) -> its :class:`Lesion` (index 0 for now)."""
    offset = np.array([s.start for s in box], dtype=np.float64)
    # world = Q @ R @ (x, y): R (2x2) gives in-plane mm coordinates with the world's distances
    _, r = np.linalg.qr(affine[:3, :2])
    slices = []
    for z in range(comp.shape[2]):
        if comp[:, :, z].any():
            points = outline_points(comp[:, :, z])
            mm = points @ r.T
            slices.append([z, points, mm, farthest_pair(mm), None])
    longest = max(s[3][2] for s in slices)
    tied = [s for s in slices if s[3][2] >= longest - 1e-9]
    for s in tied:
        s[4] = perpendicular_pair(s[2], s[3][0], s[3][1])
    z, points, _, (i, j, longest), (p, q, perpendicular, angle) = max(tied, key=lambda s: (s[4][2], -s[0]))

    def ends(a: int, b: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        return tuple((float(points[m, 0] + offset[0]), float(points[m, 1] + offset[1]), float(z + offset[2]))
                     for m in (a, b))

    coords = np.argwhere(comp).mean(axis=0) + offset
    centroid_world = affine[:3, :3] @ coords + affine[:3, 3]
    voxels = int(comp.sum())
    return Lesion(0, region, voxels, voxels * voxel_ml, int(z + offset[2]), float(longest), float(perpendicular),
                  float(angle), ends(i, j), ends(p, q), tuple(float(c) for c in coords),
                  tuple(float(c) for c in centroid_world))


def outline_points(section: np.ndarray) -> np.ndarray:
    """Outline of a 2D pixel set: midpoints between its pixels and their 4-neighbours outside it.

    Args:
        section: bool ``(X, Y)`` pixel set (one axial slice of a lesion).

    Returns:
        float64 ``(N, 2)`` points in pixel coordinates ``(x, y)`` (pixel centres are integers), unique.
    """
    padded = np.pad(section, 1)
    inside = padded[1:-1, 1:-1]
    points = []
    for dx, dy in _NEIGHBOURS:
        neighbour = padded[1 + dx: padded.shape[0] - 1 + dx, 1 + dy: padded.shape[1] - 1 + dy]
        idx = np.argwhere(inside & ~neighbour).astype(np.float64)
        if idx.size:
            points.append(idx + (0.5 * dx, 0.5 * dy))
    return np.unique(np.concatenate(points), axis=0)


def farthest_pair(points: np.ndarray) -> tuple[int, int, float]:
    """The two points farthest apart (exact) and their distance.

    Args:
        points: float ``(N, 2)`` points, ``N >= 1`` (in-plane mm).

    Returns:
        ``(i, j, distance)`` with indices into ``points``.
    """
    candidates = np.arange(len(points))
    if len(points) > 3:
        try:
            candidates = ConvexHull(points).vertices
        except QhullError:  # collinear points: every point is a candidate
            pass
    sub = points[candidates]
    d = np.sqrt(((sub[:, None, :] - sub[None, :, :]) ** 2).sum(axis=-1))
    a, b = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(candidates[a]), int(candidates[b]), float(d[a, b])


def perpendicular_pair(points: np.ndarray, i: int, j: int,
                       tolerance_deg: float = PERPENDICULAR_TOLERANCE_DEG) -> tuple[int, int, float, float]:
    """The perpendicular diameter: the longest pair within ``tolerance_deg`` of perpendicular to ``i``-``j``.

    Args:
        points: float ``(N, 2)`` outline points (in-plane mm).
        i, j: the ends of the longest diameter.
        tolerance_deg: the largest deviation from the perpendicular.

    Returns:
        ``(p, q, length, angle_deg)``: indices of its ends, its length and the angle between it and the
        longest diameter. Without a pair within the tolerance, the pair closest to perpendicular (the
        longest of ties); a single point gives ``(i, i, 0, 90)``.
    """
    axis = points[j] - points[i]
    norm = float(np.linalg.norm(axis))
    if norm == 0.0:
        return i, i, 0.0, 90.0
    u = axis / norm
    limit = math.sin(math.radians(tolerance_deg))
    best_in = (-1.0, i, i, 1.0)  # (length, p, q, |cos|)
    best_out = (2.0, -1.0, i, i)  # (|cos|, -length, p, q)
    n = len(points)
    for start in range(0, n, _CHUNK):
        block = points[start:start + _CHUNK]
        diff = points[None, :, :] - block[:, None, :]
        length = np.sqrt((diff ** 2).sum(axis=-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.abs(diff @ u) / length
        cos[length == 0] = 2.0  # a point with itself has no direction
        ok = cos <= limit + 1e-12
        if ok.any():
            masked = np.where(ok, length, -1.0)
            a, b = np.unravel_index(int(np.argmax(masked)), masked.shape)
            if masked[a, b] > best_in[0]:
                best_in = (float(masked[a, b]), start + int(a), int(b), float(cos[a, b]))
        elif best_in[0] < 0:
            c = cos.min()
            rows, cols = np.nonzero(cos <= c + 1e-12)
            k = int(np.argmax(length[rows, cols]))
            cand = (float(c), -float(length[rows[k], cols[k]]), start + int(rows[k]), int(cols[k]))
            best_out = min(best_out, cand)
    if best_in[0] >= 0:
        length, p, q, c = best_in
    else:
        c, neg, p, q = best_out
        length = -neg
        if p == q:  # every other point coincides along the axis (two points): no perpendicular extent
            return i, i, 0.0, 90.0
    return p, q, length, math.degrees(math.acos(min(1.0, c)))


def measurements_text(m: Measurements | None) -> str:
    """The panel's line, e.g. ``"2 lesions; largest 34 x 21 mm = 714 mm², measurable"``.

    Args:
        m: the measurements, or ``None`` without a segmentation.
    """
    if m is None:
        return "no segmentation: nothing measured"
    if m.region is None:
        return "no enhancing lesion and no tumour core: nothing measured"
    big = m.largest
    what = "enhancing" if m.region == "ET" else "tumour core (no enhancing tumour)"
    if big is None:
        return f"no {what} lesion of {m.min_lesion_mm:.0f} mm or more ({m.specks_ignored} smaller specks)"
    noun = "enhancing lesion" if m.region == "ET" else "tumour core lesion (no enhancing tumour)"
    if m.count != 1:
        noun = noun.replace("lesion", "lesions", 1)
    state = "measurable" if big.measurable else f"not measurable (< {MEASURABLE_MM:.0f} mm)"
    text = (f"{m.count} {noun}; largest {big.longest_mm:.0f} x {big.perpendicular_mm:.0f} mm = "
            f"{big.product_mm2:.0f} mm\u00b2, {state}")
    if m.count > 1:
        text += f"; {m.measurable_count} measurable, sum of products {m.sum_of_products_mm2:.0f} mm\u00b2"
    return text
