"""Test-time augmentation (TTA) by mirror flips: the mean of the sigmoid outputs over flipped views.

Each *member* is one forward pass of the segmentation network on the input mirrored along a set of
spatial axes, its output mirrored back. The prediction is the mean of the members' sigmoid
probabilities (as nnU-Net's mirroring and Myronenko 2018, whose network was trained with random flips
on all three axes, as the shipped bundle was). The members' spread gives the uncertainty
(:mod:`braingui.uncertainty`): per voxel the standard deviation of the sigmoid across members, and per
region the range of the volume the members would each have reported.

Members are taken in the order of :data:`FLIPS` (identity first, then the left-right mirror, the other
single axes, the pairs and the triple), so ``n`` members are always the first ``n`` of that list; which
``n`` is the default was chosen by measurement (:data:`DEFAULT_TTA`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

FLIPS: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))
"""Spatial axes (0 = x left-right, 1 = y, 2 = z of the RAS+ network grid) mirrored by each member."""
CHOICES = (1, 2, 4, 8)
"""The member counts offered (``--tta N``)."""
DEFAULT_TTA = 4
"""Members used when nothing is asked for, chosen by accuracy per second (``training/tta_study.py`` on the 14
BraTS 2018 cases of ../shared, ``bench/bench_tta.py`` for the cost): mean Dice (ET, TC, WT averaged, all 14
cases, 12 of them seen in training) 0.8414 / 0.8427 / 0.8439 / 0.8442 with 1 / 2 / 4 / 8 views, i.e.
+0.0013 per extra pass up to 2, +0.0006 per pass from 2 to 4 and +0.0001 from 4 to 8; the Spearman
correlation of the WT uncertainty with 1 - Dice WT 0.80 / 0.84 / 0.90 with 2 / 4 / 8. The whole demo
analysis took 19.1 / 22.6 / 29.3 CPU s with 1 / 4 / 8 views (wall time on the shared 2-core machine
depends on its load; ``--tta 8`` gives the best uncertainty ranking for 6.7 CPU s more)."""


@dataclass(frozen=True)
class TTAOutput:
    """What the members of one TTA run produced, on the network grid.

    Attributes:
        mean: float32 ``(R, X, Y, Z)`` mean sigmoid probability over the members (R region channels).
        std: float32 ``(R, X, Y, Z)`` population standard deviation across the members (0 for 1 member).
        member_voxels: int64 ``(N, R)`` voxels above the threshold of each member and channel, counted
            after the nesting of :func:`braingui.labels.from_region_channels` (ET, TC = TC or ET,
            WT = WT or TC or ET), i.e. the region sizes each member alone would have reported.
        flips: the flipped axes of each member.
    """

    mean: np.ndarray
    std: np.ndarray
    member_voxels: np.ndarray
    flips: tuple[tuple[int, ...], ...]

    @property
    def members(self) -> int:
        return len(self.flips)


def flips_for(n: int) -> tuple[tuple[int, ...], ...]:
    """The first ``n`` flip sets of :data:`FLIPS`.

    Raises:
        ValueError: ``n`` is not in :data:`CHOICES`.
    """
    if isinstance(n, bool) or n not in CHOICES:
        raise ValueError(f"test-time augmentation takes 1, 2, 4 or 8 flipped views, got {n!r}")
    return FLIPS[:n]


def nested_counts(above: np.ndarray, regions: tuple[str, ...]) -> np.ndarray:
    """Voxel counts of the nested regions of thresholded channels.

    Args:
        above: bool ``(R, X, Y, Z)``, the channels named by ``regions`` above their threshold.
        regions: the region of each channel (a permutation of TC, WT, ET).

    Returns:
        int64 ``(R,)`` in ``regions`` order: ET alone, TC or ET, WT or TC or ET (the label map's regions).
    """
    ch = {name: above[i] for i, name in enumerate(regions)}
    tc = ch["TC"] | ch["ET"]
    nested = {"ET": ch["ET"], "TC": tc, "WT": ch["WT"] | tc}
    return np.array([int(np.count_nonzero(nested[name])) for name in regions], dtype=np.int64)


def iter_tta(model, array: np.ndarray, n: int) -> Generator[tuple[int, int], None, TTAOutput]:
    """Run ``n`` flipped members of a segmentation model, one window at a time.

    Args:
        model: a :class:`~braingui.inference.predictor.SegmentationModel` (anything with
            ``iter_probabilities(array)``, ``windows(shape)`` and ``spec.threshold`` / ``spec.regions``).
        array: float32 ``(C, X, Y, Z)`` prepared network input.
        n: members (1, 2, 4 or 8).

    Yields:
        ``(windows_done, windows_total)`` over all members.

    Returns:
        The :class:`TTAOutput`; with ``n == 1`` its ``mean`` is the single pass, bit for bit.

    Raises:
        ValueError: ``n`` is not in :data:`CHOICES` (at the call, not at the first ``next``).
    """
    return _members(model, array, flips_for(n))


def _members(model, array: np.ndarray,
             flips: tuple[tuple[int, ...], ...]) -> Generator[tuple[int, int], None, TTAOutput]:
    n = len(flips)
    per_member = len(model.windows(tuple(array.shape[1:])))
    total = per_member * len(flips)
    spec = model.spec
    acc = sq = None
    counts = []
    for m, axes in enumerate(flips):
        spatial = tuple(a + 1 for a in axes)
        view = np.flip(array, spatial) if axes else array
        gen = model.iter_probabilities(view)
        try:
            while True:
                try:
                    done, _ = next(gen)
                except StopIteration as stop:
                    probs = stop.value
                    break
                yield m * per_member + done, total
        finally:
            gen.close()
        if axes:
            probs = np.ascontiguousarray(np.flip(probs, spatial))
        counts.append(nested_counts(probs > spec.threshold, tuple(spec.regions)))
        p64 = probs.astype(np.float64)
        if acc is None:
            acc, sq = p64, p64 * p64
        else:
            acc += p64
            sq += p64 * p64
    if n == 1:
        return TTAOutput(probs, np.zeros_like(probs), np.array(counts), flips)
    mean = acc / n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 0.0))
    return TTAOutput(mean.astype(np.float32), std.astype(np.float32), np.array(counts), flips)


def run_tta(model, array: np.ndarray, n: int) -> TTAOutput:
    """:func:`iter_tta` run to the end."""
    gen = iter_tta(model, array, n)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
