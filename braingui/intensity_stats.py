"""Robust per-sequence intensity statistics of the z-scored brain, and their distance from a reference.

The segmentation network sees each sequence z-scored over its non-zero (brain) voxels
(:func:`braingui.preprocess.zscore_nonzero`), so mean and spread are always 0 and 1; what can differ
from the training data is the *shape* of the distribution. It is summarised by quantiles
(:data:`QUANTILES`) of the z-scored brain voxels. The reference (:class:`InputStatistics`, stored in a
segmentation bundle's manifest as ``input_statistics``) is, per sequence and quantile, the median over
the training cases and a robust scale (1.4826 x the median absolute deviation, at least
:data:`MIN_SCALE`). A case's distance from it is the largest ``|q - median| / scale`` over the quantiles.

Typical causes of a large distance: swapped sequences, a background that is not 0 (not skull-stripped,
or an offset), a strong non-linear rescaling or bias field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
MIN_SCALE = 0.1
"""Smallest reference scale (z units), so that a quantile on which the training cases agree closely
does not turn tiny differences into large distances."""
MAX_SAMPLES = 400_000
"""Brain voxels used per sequence (an even stride through them); quantiles change by < 0.01 z."""


def zscore_quantiles(volume: np.ndarray, quantiles: tuple[float, ...] = QUANTILES) -> list[float]:
    """Quantiles of a sequence's non-zero voxels after z-scoring them (as the network input is).

    Args:
        volume: float ``(X, Y, Z)`` raw intensities; 0 is background.
        quantiles: the probabilities, increasing in (0, 1).

    Returns:
        One value per quantile (z units); all 0 for an empty or constant volume.
    """
    values = np.asarray(volume)[np.asarray(volume) != 0]
    if values.size == 0:
        return [0.0] * len(quantiles)
    values = values[:: max(1, values.size // MAX_SAMPLES)].astype(np.float64)
    std = values.std()
    z = (values - values.mean()) / (std if std > 0 else 1.0)
    return [round(float(v), 4) for v in np.quantile(z, quantiles)]


def intensity_statistics(images: dict[str, np.ndarray], channels: tuple[str, ...],
                         quantiles: tuple[float, ...] = QUANTILES) -> dict[str, list[float]]:
    """:func:`zscore_quantiles` of each sequence in ``channels``.

    Args:
        images: sequence name -> float ``(X, Y, Z)`` raw intensities (``Case.images``).
        channels: the sequences to summarise.
    """
    return {seq: zscore_quantiles(images[seq], quantiles) for seq in channels}


@dataclass(frozen=True)
class InputStatistics:
    """Reference intensity statistics of a model's training data (see the module docstring).

    Attributes:
        quantiles: the probabilities.
        median: sequence -> per-quantile median over the training cases.
        scale: sequence -> per-quantile robust scale (>= :data:`MIN_SCALE`).
        cases: how many training cases.
    """

    quantiles: tuple[float, ...]
    median: dict[str, tuple[float, ...]]
    scale: dict[str, tuple[float, ...]]
    cases: int

    def to_dict(self) -> dict:
        """The manifest's ``input_statistics`` object."""
        return {"normalisation": "zscore_nonzero", "quantiles": list(self.quantiles), "cases": self.cases,
                "sequences": {seq: {"median": list(self.median[seq]), "scale": list(self.scale[seq])}
                              for seq in self.median}}

    @classmethod
    def from_dict(cls, data) -> "InputStatistics":
        """Validate a manifest's ``input_statistics`` object.

        Raises:
            ValueError: with a message naming the key that is wrong.
        """
        if not isinstance(data, dict):
            raise ValueError("'input_statistics' must be an object")
        extra = sorted(set(data) - {"normalisation", "quantiles", "cases", "sequences"})
        if extra:
            raise ValueError(f"unknown key(s) {extra} in 'input_statistics'")
        if data.get("normalisation", "zscore_nonzero") != "zscore_nonzero":
            raise ValueError("'input_statistics.normalisation' must be zscore_nonzero")
        q = data.get("quantiles")
        if (not isinstance(q, list) or not q or not all(_number(v) and 0 < v < 1 for v in q)
                or any(b <= a for a, b in zip(q, q[1:]))):
            raise ValueError("'input_statistics.quantiles' must be increasing numbers in (0, 1)")
        cases = data.get("cases")
        if isinstance(cases, bool) or not isinstance(cases, int) or cases < 1:
            raise ValueError("'input_statistics.cases' must be an integer >= 1")
        seqs = data.get("sequences")
        if not isinstance(seqs, dict) or not seqs:
            raise ValueError("'input_statistics.sequences' must map sequence names to {median, scale}")
        median, scale = {}, {}
        for seq, entry in seqs.items():
            where = f"input_statistics.sequences.{seq}"
            if not isinstance(entry, dict) or set(entry) != {"median", "scale"}:
                raise ValueError(f"'{where}' must hold exactly 'median' and 'scale'")
            for key, lo in (("median", -math.inf), ("scale", 0.0)):
                values = entry[key]
                if (not isinstance(values, list) or len(values) != len(q)
                        or not all(_number(v) and v > lo for v in values)):
                    bound = "positive numbers" if key == "scale" else "numbers"
                    raise ValueError(f"'{where}.{key}' must be {len(q)} {bound} (one per quantile)")
            median[seq] = tuple(float(v) for v in entry["median"])
            scale[seq] = tuple(float(v) for v in entry["scale"])
        return cls(tuple(float(v) for v in q), median, scale, cases)


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def reference_statistics(per_case: list[dict[str, list[float]]],
                         quantiles: tuple[float, ...] = QUANTILES) -> InputStatistics:
    """The reference from the training cases' :func:`intensity_statistics`.

    Args:
        per_case: one ``{sequence: quantile values}`` per training case (the same sequences in each).
        quantiles: the probabilities the values are for.
    """
    if not per_case:
        raise ValueError("no training cases to compute input statistics from")
    median, scale = {}, {}
    for seq in per_case[0]:
        values = np.array([case[seq] for case in per_case], dtype=np.float64)  # (cases, quantiles)
        med = np.median(values, axis=0)
        mad = np.median(np.abs(values - med), axis=0) * 1.4826
        median[seq] = tuple(round(float(v), 4) for v in med)
        scale[seq] = tuple(round(float(v), 4) for v in np.maximum(mad, MIN_SCALE))
    return InputStatistics(tuple(quantiles), median, scale, len(per_case))


def intensity_distance(stats: dict[str, list[float]], reference: InputStatistics) -> dict[str, float]:
    """Per sequence the largest ``|q - median| / scale`` over the quantiles (sequences in both only).

    Args:
        stats: the case's :func:`intensity_statistics` (for ``reference.quantiles``).
        reference: the training data's statistics.
    """
    out = {}
    for seq, values in stats.items():
        if seq not in reference.median or len(values) != len(reference.quantiles):
            continue
        d = np.abs(np.asarray(values) - np.asarray(reference.median[seq])) / np.asarray(reference.scale[seq])
        out[seq] = round(float(d.max()), 3)
    return out
