"""How far a heat map deserves trust: localisation, rank correlation, deletion areas and the verdict in words.

Pure numpy / scipy (the core); the network-side checks (occlusion, ablation, the deletion forwards, the
randomised model) live in :mod:`braingui.inference.faithfulness` and hand their numbers here.

Every function takes arrays on ONE grid (the classifier input grid or the case grid; the caller picks and
resamples the map once); volumes are ``(X, Y, Z)`` in the project's axis order, masks boolean.

* :func:`brain_mask` — voxels non-zero in any sequence of a ``(C, X, Y, Z)`` stack (raw or z-scored:
  z-scoring keeps the background at 0).
* :func:`localisation` -> :class:`Localisation`: the map's mass inside / outside the brain (fractions of
  its total), its in-brain mass inside the whole tumour (WT), WT's fraction of the brain, their ratio
  ``enrichment = mass_in_wt / wt_fraction_of_brain`` (1.0 = no better than a uniform map over the brain),
  and the pointing game (does the hottest voxel lie in WT / in the brain). ``NaN`` where a number is
  undefined (an empty map, no WT); :meth:`Localisation.as_dict` turns ``NaN`` into ``None`` for JSON.
* :func:`rank_correlation` — Spearman's rho of two maps inside a mask (``scipy.stats.spearmanr``, on a
  seeded subsample above ``max_voxels``); ``NaN`` when either map is constant there.
* :func:`deletion_areas` -> :class:`DeletionAreas`: the areas under the predicted class's probability
  against the deleted fraction (trapezoid, divided by the fraction range, so an area is the curve's mean
  probability in [0, 1]) for the map's order and for random voxels; ``gain = random_auc - map_auc``
  (> 0: deleting the map's hottest voxels lowers the call faster than deleting random ones, i.e. the map
  found what the network uses).
* :func:`map_problems` and :func:`verdict` — the Explanation panel's text, e.g. "38 % of the heat lies in
  the tumour, which is 6 % of the brain: 6x better than chance. ..." and, for a poor map, a first
  sentence that says so plainly.

Thresholds (module constants): enrichment below :data:`POOR_ENRICHMENT` (1.5), more than
:data:`POOR_OUTSIDE` (50 %) of the heat outside the brain, a peak outside WT, a randomisation Spearman above
:data:`RANDOMISATION_LIMIT` (0.5, Adebayo et al. 2018) or a deletion gain at or below 0 make a map poor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

POOR_ENRICHMENT = 1.5
POOR_OUTSIDE = 0.5
NOTE_OUTSIDE = 0.1
RANDOMISATION_LIMIT = 0.5
SEQUENCE_TITLES = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce", "t2": "T2"}


def brain_mask(stack: np.ndarray) -> np.ndarray:
    """Voxels non-zero in any sequence.

    Args:
        stack: ``(C, X, Y, Z)`` intensities (any dtype; raw or z-scored).

    Returns:
        bool ``(X, Y, Z)``.
    """
    stack = np.asarray(stack)
    if stack.ndim != 4:
        raise ValueError(f"brain_mask takes a (C, X, Y, Z) stack, got shape {stack.shape}")
    return np.any(stack != 0, axis=0)


@dataclass(frozen=True)
class Localisation:
    """Where a map's heat lies (fractions in [0, 1]; ``NaN`` where undefined).

    Attributes:
        mass_in_brain: the map's mass inside the brain / its total mass.
        mass_outside_brain: ``1 - mass_in_brain`` (reported, never silently dropped).
        mass_in_wt: the map's mass inside WT / its mass inside the brain.
        wt_fraction_of_brain: WT voxels (inside the brain) / brain voxels.
        enrichment: ``mass_in_wt / wt_fraction_of_brain``; 1.0 = a uniform map.
        peak_in_wt: the hottest voxel lies in WT (with tied maxima: at least half of them do).
        peak_in_brain: the hottest voxel lies in the brain (same rule).
    """

    mass_in_brain: float
    mass_outside_brain: float
    mass_in_wt: float
    wt_fraction_of_brain: float
    enrichment: float
    peak_in_wt: bool
    peak_in_brain: bool

    @property
    def empty(self) -> bool:
        """The map has no mass at all."""
        return math.isnan(self.mass_in_brain)

    def as_dict(self) -> dict[str, float | bool | None]:
        """The fields for results.json, ``NaN`` -> ``None``, floats rounded to 6 digits."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else round(v, 6) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


def _check_masks(heat: np.ndarray, *masks: np.ndarray) -> None:
    if heat.ndim != 3:
        raise ValueError(f"a map must be 3D (X, Y, Z), got shape {heat.shape}")
    for m in masks:
        if m.shape != heat.shape:
            raise ValueError(f"mask shape {m.shape} differs from the map's {heat.shape}")


def _peak_in(heat: np.ndarray, mask: np.ndarray) -> bool:
    peak = heat == heat.max()
    return bool(np.count_nonzero(peak & mask) * 2 >= np.count_nonzero(peak))


def localisation(heat: np.ndarray, wt: np.ndarray, brain: np.ndarray) -> Localisation:
    """Localisation numbers of one map against one whole-tumour mask.

    Args:
        heat: float ``(X, Y, Z)`` map, values >= 0 (a CAM in [0, 1]).
        wt: bool ``(X, Y, Z)`` whole tumour (predicted, or the case's own labels); voxels outside the brain
            are ignored.
        brain: bool ``(X, Y, Z)`` brain mask (:func:`brain_mask`).

    Returns:
        The :class:`Localisation`; for an all-zero map every mass is ``NaN`` and both peaks are False;
        with no WT voxel, ``wt_fraction_of_brain`` is 0 and ``enrichment`` ``NaN``.

    Raises:
        ValueError: shapes differ, not 3D, or negative / non-finite map values.
    """
    heat = np.asarray(heat, dtype=np.float64)
    wt, brain = np.asarray(wt, dtype=bool), np.asarray(brain, dtype=bool)
    _check_masks(heat, wt, brain)
    if not np.all(np.isfinite(heat)) or heat.min(initial=0.0) < 0:
        raise ValueError("a map must be finite and non-negative")
    wt = wt & brain
    n_brain = int(np.count_nonzero(brain))
    wt_fraction = np.count_nonzero(wt) / n_brain if n_brain else math.nan
    total = float(heat.sum())
    if total <= 0:
        return Localisation(math.nan, math.nan, math.nan, float(wt_fraction), math.nan, False, False)
    in_brain = float(heat[brain].sum())
    mass_in_brain = in_brain / total
    mass_in_wt = float(heat[wt].sum()) / in_brain if in_brain > 0 else math.nan
    enrichment = mass_in_wt / wt_fraction if wt_fraction and wt_fraction > 0 else math.nan
    return Localisation(float(mass_in_brain), float(1.0 - mass_in_brain), float(mass_in_wt), float(wt_fraction),
                        float(enrichment), _peak_in(heat, wt), _peak_in(heat, brain))


def rank_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray, max_voxels: int = 200_000,
                     seed: int = 0) -> float:
    """Spearman's rank correlation of two maps inside a mask.

    Args:
        a, b: float ``(X, Y, Z)`` maps on the same grid.
        mask: bool ``(X, Y, Z)``, e.g. the brain.
        max_voxels: above this many mask voxels, a seeded random subsample of this size is used.
        seed: the subsample's seed.

    Returns:
        rho in [-1, 1]; ``NaN`` when either map is constant inside the mask or the mask has < 3 voxels.
    """
    from scipy.stats import spearmanr

    a, b, mask = np.asarray(a), np.asarray(b), np.asarray(mask, dtype=bool)
    _check_masks(a, b, mask)
    idx = np.flatnonzero(mask)
    if idx.size > max_voxels:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_voxels, replace=False))
    va, vb = a.ravel()[idx], b.ravel()[idx]
    if idx.size < 3 or np.ptp(va) == 0 or np.ptp(vb) == 0:
        return math.nan
    return float(spearmanr(va, vb).statistic)


@dataclass(frozen=True)
class DeletionAreas:
    """Normalised areas under deletion curves (mean probability over the fraction range).

    Attributes:
        map_auc: deleting voxels in the map's order (hottest first).
        random_auc: deleting random brain voxels (mean over the draws).
    """

    map_auc: float
    random_auc: float

    @property
    def gain(self) -> float:
        """``random_auc - map_auc``; > 0: the map found what the network uses."""
        return self.random_auc - self.map_auc


def _area(fractions: np.ndarray, values: np.ndarray) -> float:
    widths = np.diff(fractions)
    return float(np.sum(widths * (values[1:] + values[:-1]) / 2.0) / (fractions[-1] - fractions[0]))


def deletion_areas(fractions: Sequence[float], map_probs: Sequence[float],
                   random_probs: Sequence[float] | Sequence[Sequence[float]]) -> DeletionAreas:
    """Areas under the deletion curves of a map and of random voxels.

    Args:
        fractions: increasing deleted fractions of the brain, e.g. ``(0, 0.05, 0.1, 0.2, 0.4)``.
        map_probs: the predicted class's probability at each fraction, hottest voxels deleted first.
        random_probs: the same with random voxels: one curve ``(F,)`` or several draws ``(D, F)``
            (their areas are averaged).

    Returns:
        :class:`DeletionAreas` (trapezoid areas divided by ``fractions[-1] - fractions[0]``).

    Raises:
        ValueError: fewer than two fractions, not increasing, or lengths that differ.
    """
    f = np.asarray(fractions, dtype=np.float64)
    m = np.asarray(map_probs, dtype=np.float64)
    r = np.atleast_2d(np.asarray(random_probs, dtype=np.float64))
    if f.ndim != 1 or f.size < 2 or np.any(np.diff(f) <= 0):
        raise ValueError(f"deletion fractions must increase, got {f.tolist()}")
    if m.shape != f.shape or r.shape[1] != f.size:
        raise ValueError(f"deletion curves must have {f.size} points, got {m.shape} and {r.shape}")
    return DeletionAreas(_area(f, m), float(np.mean([_area(f, row) for row in r])))


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _times(e: float) -> str:
    return f"{e:.0f}x" if e >= 3 else f"{e:.1f}x"


def map_problems(loc: Localisation, randomisation_flag: bool | None = None,
                 deletion_gain: float | None = None) -> list[str]:
    """Why a map is poor, as short phrases (empty list: nothing wrong found).

    Args:
        loc: the map's localisation against the predicted WT.
        randomisation_flag: True when the map survived the model's randomisation (None: not run).
        deletion_gain: :attr:`DeletionAreas.gain` (None: not run).
    """
    if loc.empty:
        return ["it is empty"]
    problems = []
    if loc.mass_outside_brain > POOR_OUTSIDE:
        problems.append("most of its heat lies outside the brain")
    if not math.isnan(loc.enrichment) and loc.enrichment < POOR_ENRICHMENT:
        problems.append("it is hardly better than chance at the tumour"
                        if loc.enrichment >= 1 else "it is worse than a uniform map at the tumour")
    if loc.wt_fraction_of_brain > 0 and not loc.peak_in_wt:
        problems.append("its hottest point lies outside the " + ("tumour" if loc.peak_in_brain else "brain"))
    if randomisation_flag:
        problems.append("it fails the sanity check")
    if deletion_gain is not None and deletion_gain <= 0:
        problems.append("deleting its hottest voxels matters no more than deleting random ones")
    return problems


def verdict(loc: Localisation, *, predicted_title: str | None = None, occluded_title: str | None = None,
            occluded_probability: float | None = None, ablation: Mapping[str, float] | None = None,
            deletion: DeletionAreas | None = None, randomisation_spearman: float | None = None,
            randomisation_flag: bool | None = None, reference: Localisation | None = None) -> str:
    """The Explanation panel's text; parts not yet computed (None) are left out.

    Args:
        loc: localisation against the predicted WT.
        predicted_title: the predicted class in words (e.g. "glioblastoma").
        occluded_title, occluded_probability: the class (in words) and its probability with the tumour
            occluded.
        ablation: sequence name (``flair`` ...) -> change of the predicted class's probability when that
            sequence is removed (e.g. -0.38).
        deletion: the deletion areas.
        randomisation_spearman, randomisation_flag: the model-randomisation check (flag: Spearman > 0.5).
        reference: localisation against the case's own label map, when it has one.

    Returns:
        A few plain sentences; the first says "This map is poor: ..." when :func:`map_problems` finds any.
    """
    gain = deletion.gain if deletion is not None else None
    problems = map_problems(loc, randomisation_flag, gain)
    out = [f"This map is poor: {'; '.join(problems)}."] if problems else []
    if loc.empty:
        out.append("The network shows no positive evidence for this class at this layer.")
    else:
        if math.isnan(loc.mass_in_wt):
            out.append("None of the heat lies in the brain.")
        elif loc.wt_fraction_of_brain > 0:
            out.append(_tumour_sentence(loc))
            if not loc.peak_in_wt:
                out.append("The hottest point lies outside the " + ("tumour." if loc.peak_in_brain else "brain."))
        else:
            out.append("No tumour was segmented, so the map cannot be checked against it.")
        if loc.mass_outside_brain > NOTE_OUTSIDE and not math.isnan(loc.mass_in_wt):
            out.append(f"{_pct(loc.mass_outside_brain)} of the heat lies outside the brain.")
    if reference is not None and not reference.empty and reference.wt_fraction_of_brain > 0:
        out.append(f"Against the case's own label map: {_pct(reference.mass_in_wt)} of the heat in the tumour, "
                   f"{_times(reference.enrichment)} chance.")
    if occluded_title is not None:
        prob = f" ({_pct(occluded_probability)})" if occluded_probability is not None else ""
        if predicted_title is not None and occluded_title == predicted_title:
            out.append(f"Without the tumour the model still says {occluded_title}{prob}: "
                       "the call does not rest on the tumour alone.")
        else:
            out.append(f"Without the tumour the model says {occluded_title}{prob}.")
    if ablation:
        name, delta = max(ablation.items(), key=lambda kv: abs(kv[1]))
        if abs(delta) < 0.05:
            out.append("No single sequence moved the call by 5 % or more.")
        else:
            out.append(f"{SEQUENCE_TITLES.get(name, name)} moved the call most ({100 * delta:+.0f} %).")
    if deletion is not None:
        if gain > 0:
            out.append("Deleting the hottest voxels lowers the call faster than deleting random ones "
                       f"(area gain {gain:.2f}).")
        else:
            out.append("Deleting the hottest voxels lowers the call no faster than deleting random ones: "
                       "the map did not find what the model uses.")
    if randomisation_flag is not None or randomisation_spearman is not None:
        rho = randomisation_spearman
        if rho is None or math.isnan(rho):
            out.append("Sanity check inconclusive (a constant map).")
        elif randomisation_flag:
            out.append(f"Sanity check failed: the map hardly changes when the model's last layers are "
                       f"randomised (Spearman {rho:.2f}), so it does not show what the model learned.")
        else:
            out.append("Sanity check passed.")
    return " ".join(out)


def _tumour_sentence(loc: Localisation) -> str:
    head = (f"{_pct(loc.mass_in_wt)} of the heat lies in the tumour, which is {_pct(loc.wt_fraction_of_brain)}"
            " of the brain")
    e = loc.enrichment
    if math.isnan(e):
        return head + "."
    if e >= POOR_ENRICHMENT:
        return f"{head}: {_times(e)} better than chance."
    if e >= 1:
        return f"Only {head}: {_times(e)}, hardly better than a uniform map."
    return f"Only {head}: {_times(e)}, worse than a uniform map."
