"""Tumour label conventions, the ET / TC / WT regions and their volumes.

Conventions (value -> meaning):

* ``brats`` (BraTS 2017-2022): 1 necrotic / non-enhancing core, 2 edema, 4 enhancing tumour;
* ``brats2023`` (BraTS 2023+): 1 necrotic core, 2 edema, 3 enhancing tumour;
* ``msd`` (Medical Segmentation Decathlon Task01): 1 edema, 2 non-enhancing tumour, 3 enhancing tumour;
* ``brats2013`` (BRATS 2013-2015, SMIR ``*OT*`` / ``*truth*`` files): 1 necrosis, 2 edema, 3 non-enhancing
  tumour, 4 enhancing tumour -> internal 1, 2, 1, 4 (necrosis and non-enhancing are both the BraTS 2017+
  "necrotic / non-enhancing core", which is how BraTS 2017 merged them);
* ``brats2012`` (BRATS 2012 ``*truth*`` files): 1 edema, 2 active tumour core -> internal 2, 1. The 2012
  annotation does not split the core, and the internal convention has no "core, enhancement unknown"
  value: the core is held as 1, which makes TC and WT exact and the reference ET *empty* - not a
  measurement. :func:`detect_convention` says so in its note, and ET of such a reference means nothing.

Inside the app every label map is held in the ``brats`` convention (uint8, values 0/1/2/4); regions are
ET = {4}, TC = {1, 4}, WT = {1, 2, 4}. MONAI's ``ConvertToMultiChannelBasedOnBratsClasses`` is wrong for
MSD labels, hence this module.

Detection (:func:`detect_convention`), first match wins: a forced or layout-given convention; the file
name (a ``truth`` name with values within {1, 2} is BRATS 2012, any other ``truth`` or an ``OT`` token is
BRATS 2013-2015); values 3 and 4 together (BRATS 2013-2015, the only convention with both); 4 (BraTS);
1/2/3 (BraTS 2023 or MSD by the largest region).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

BRATS, BRATS2023, MSD, BRATS2013, BRATS2012 = "brats", "brats2023", "msd", "brats2013", "brats2012"
CONVENTIONS: dict[str, dict[int, str]] = {
    BRATS: {1: "core", 2: "edema", 4: "enhancing"},
    BRATS2023: {1: "core", 2: "edema", 3: "enhancing"},
    MSD: {1: "edema", 2: "core", 3: "enhancing"},
    BRATS2013: {1: "core", 2: "edema", 3: "core", 4: "enhancing"},
    BRATS2012: {1: "edema", 2: "core"},
}
CONVENTION_TITLES = {
    BRATS: "BraTS 2017-2022 (1/2/4)",
    BRATS2023: "BraTS 2023+ (1/2/3)",
    MSD: "MSD Task01 (1 edema, 2 non-enhancing, 3 enhancing)",
    BRATS2013: "BRATS 2013-2015 (1 necrosis, 2 edema, 3 non-enhancing, 4 enhancing)",
    BRATS2012: "BRATS 2012 (1 edema, 2 tumour core)",
}
BRATS2012_NOTE = ("read as BRATS 2012 (1 edema, 2 tumour core): the core is not split, so TC and WT are exact "
                  "but the reference has no enhancing tumour (its ET is empty, not measured)")

# The internal (BraTS) value of each tissue class.
CORE, EDEMA, ENHANCING = 1, 2, 4
_INTERNAL = {"core": CORE, "edema": EDEMA, "enhancing": ENHANCING}

LABEL_NAMES: dict[int, str] = {
    CORE: "necrotic / non-enhancing core",
    EDEMA: "edema",
    ENHANCING: "enhancing tumour",
}
# The paper's figure colours (RGB 0-255): edema red, non-enhancing green, enhancing blue.
LABEL_COLOURS: dict[int, tuple[int, int, int]] = {
    EDEMA: (230, 40, 40),
    CORE: (40, 200, 60),
    ENHANCING: (50, 90, 255),
}

REGIONS: tuple[str, ...] = ("ET", "TC", "WT")
REGION_TITLES = {"ET": "enhancing tumour", "TC": "tumour core", "WT": "whole tumour"}


def name_kind(name: str | None) -> str | None:
    """``"truth"`` for a ``*truth*`` file name, ``"ot"`` for one with an ``OT`` token, else ``None``.

    Args:
        name: a file name such as ``BRATS_HG0015_truth.mha`` or ``VSD.Brain_3more.XX.O.OT.54517.mha``.
    """
    if not name:
        return None
    tokens = [t for t in re.split(r"[_\-.\s()]+", Path(name).name.lower()) if t]
    if any("truth" in t for t in tokens):
        return "truth"
    return "ot" if "ot" in tokens else None


def detect_convention(values: set[int], hint: str | None = None, counts: dict[int, int] | None = None,
                      name: str | None = None) -> tuple[str, str | None]:
    """Decide which convention a label map uses (the order is in the module docstring).

    Args:
        values: the distinct non-zero values of the map.
        hint: the convention implied by where the map came from (MSD layout, BraTS 2023 names, or
            ``--labels``), if any.
        counts: voxels per value; with values {1, 2, 3} and no hint the largest region is taken as edema
            (2 in BraTS 2023, 1 in MSD).
        name: the label file's name (``*truth*`` and ``*OT*`` names are BRATS 2012-2015 ground truth).

    Returns:
        ``(convention, note)``; ``note`` explains a guess (or the limits of BRATS 2012 labels) or is ``None``.
    """
    if hint in CONVENTIONS:
        return hint, BRATS2012_NOTE if hint == BRATS2012 else None
    kind = name_kind(name)
    if kind == "truth" and values <= {1, 2}:
        return BRATS2012, BRATS2012_NOTE
    if kind is not None:
        return BRATS2013, None
    if {3, 4} <= values:
        return BRATS2013, "labels 1-4 with both 3 and 4: read as BRATS 2013-2015 (1 necrosis, 2 edema, " \
                          "3 non-enhancing, 4 enhancing)"
    if 4 in values:
        return BRATS, None
    if 3 in values:
        if counts and counts.get(1, 0) > counts.get(2, 0):
            return MSD, "labels 1/2/3 with 1 the largest region: read as MSD (1 edema, 2 non-enhancing, 3 enhancing)"
        return BRATS2023, "labels 1/2/3: read as BraTS 2023 (1 core, 2 edema, 3 enhancing)"
    return BRATS, None


FEW_VALUES = 16
"""Up to this many distinct values (or this value range) a label map is counted and mapped value by value."""


def value_counts(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of an integer label map and their voxel counts (``np.unique`` semantics)."""
    lo, hi = int(raw.min(initial=0)), int(raw.max(initial=0))
    if hi - lo < FEW_VALUES:  # a label map's few values: one comparison each is ~7x faster than bincount's
        candidates = np.arange(lo, hi + 1)  # cast of the whole map to intp (45 ms for 240x240x155 int16 here)
        counts = np.array([np.count_nonzero(raw == v) for v in candidates.tolist()], dtype=np.int64)
        found = counts > 0
        return candidates[found].astype(raw.dtype if raw.dtype.kind in "iu" else np.int64), counts[found]
    if lo >= 0 and hi < 1 << 16:
        counts = np.bincount(raw.ravel(), minlength=hi + 1)
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(raw, return_counts=True)


def to_internal(raw: np.ndarray, convention: str, values: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
    """Map a label map in ``convention`` to the internal BraTS values.

    Args:
        raw: integer label map, any shape.
        convention: one of ``CONVENTIONS``.
        values: its distinct values when the caller has them already (:func:`value_counts`).

    Returns:
        ``(labels, unknown)``: uint8 map with values 0/1/2/4 and the sorted values that the convention
        does not know (set to 0).
    """
    table = CONVENTIONS[convention]
    if values is None:
        values, _ = value_counts(raw)
    lut_max = int(max(values.max(initial=0), max(table)))
    lut = np.zeros(lut_max + 1, dtype=np.uint8)
    for value, name in table.items():
        lut[value] = _INTERNAL[name]
    unknown = [int(v) for v in values if v != 0 and (v < 0 or int(v) not in table)]
    if len(values) <= FEW_VALUES:  # one masked fill per known value (about 3x faster than indexing the table)
        out = np.zeros(raw.shape, dtype=np.uint8)
        for v in values.tolist():
            if v >= 0 and lut[v]:  # lut covers every value (lut_max >= max(values))
                np.copyto(out, lut[v], where=raw == v)
        return out, unknown
    if raw.dtype.kind == "u" and raw.dtype.itemsize <= 2:  # every value indexes the table: no range mask
        return lut[raw], unknown
    safe = np.where((raw >= 0) & (raw <= lut_max), raw, 0).astype(np.intp)
    return lut[safe], unknown


def regions(labels: np.ndarray) -> dict[str, np.ndarray]:
    """ET / TC / WT boolean masks of an internal (BraTS 1/2/4) label map."""
    et = labels == ENHANCING
    tc = et | (labels == CORE)
    wt = tc | (labels == EDEMA)
    return {"ET": et, "TC": tc, "WT": wt}


def region_volumes_ml(labels: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Volumes in millilitres of ET, TC and WT of an internal label map.

    Args:
        labels: internal (BraTS 1/2/4) label map.
        voxel_ml: volume of one voxel in mL (``Grid.voxel_ml``).
    """
    counts = np.bincount(labels.ravel(), minlength=5)
    et, core, edema = int(counts[ENHANCING]), int(counts[CORE]), int(counts[EDEMA])
    return {"ET": et * voxel_ml, "TC": (et + core) * voxel_ml, "WT": (et + core + edema) * voxel_ml}


def from_region_channels(channels: np.ndarray, order: tuple[str, ...] = ("TC", "WT", "ET")) -> np.ndarray:
    """Internal label map from binary region channels (nested: ET within TC within WT).

    Args:
        channels: bool or {0,1} array ``(3, X, Y, Z)`` holding the regions named in ``order``.
        order: the region each channel holds.

    Returns:
        uint8 label map: 4 where ET, else 1 where TC, else 2 where WT, else 0.
    """
    ch = {name: np.asarray(channels[i]).astype(bool) for i, name in enumerate(order)}
    out = np.zeros(channels.shape[1:], dtype=np.uint8)
    out[ch["WT"]] = EDEMA
    out[ch["TC"]] = CORE
    out[ch["ET"]] = ENHANCING
    return out
