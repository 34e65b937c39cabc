"""The heat-map metrics and the verdict (braingui.explanation), against numbers worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from braingui.explanation import (DeletionAreas, Localisation, brain_mask, deletion_areas, localisation,
                                  map_problems, rank_correlation, verdict)


def _masks(shape=(4, 4, 4)):
    brain = np.zeros(shape, bool)
    brain[:, :, :2] = True  # 32 voxels
    wt = np.zeros(shape, bool)
    wt[:2, :2, :2] = True  # 8 voxels: a quarter of the brain
    return wt, brain


def test_brain_mask_is_nonzero_in_any_sequence():
    stack = np.zeros((4, 2, 2, 1), np.float32)
    stack[0, 0, 0, 0] = 3.0
    stack[3, 1, 1, 0] = -0.5  # z-scored values can be negative
    mask = brain_mask(stack)
    assert mask.dtype == bool and mask.shape == (2, 2, 1)
    assert mask.tolist() == [[[True], [False]], [[False], [True]]]
    with pytest.raises(ValueError, match="C, X, Y, Z"):
        brain_mask(np.zeros((2, 2, 2)))


def test_a_map_wholly_inside_the_tumour_has_mass_one():
    wt, brain = _masks()
    heat = np.where(wt, 0.7, 0.0)
    heat[0, 0, 0] = 1.0
    loc = localisation(heat, wt, brain)
    assert loc.mass_in_brain == 1.0 and loc.mass_outside_brain == 0.0
    assert loc.mass_in_wt == 1.0
    assert loc.wt_fraction_of_brain == pytest.approx(8 / 32)
    assert loc.enrichment == pytest.approx(4.0)
    assert loc.peak_in_wt and loc.peak_in_brain


def test_a_uniform_map_has_enrichment_one_and_reports_its_mass_outside_the_brain():
    wt, brain = _masks()
    loc = localisation(np.full(wt.shape, 0.5), wt, brain)
    assert loc.mass_in_brain == pytest.approx(32 / 64) and loc.mass_outside_brain == pytest.approx(0.5)
    assert loc.mass_in_wt == pytest.approx(0.25) and loc.enrichment == pytest.approx(1.0)
    # every voxel ties at the maximum: 8 of 64 in WT (a minority), 32 of 64 in the brain (half)
    assert not loc.peak_in_wt and loc.peak_in_brain


def test_hand_computed_masses_and_the_pointing_game():
    wt, brain = _masks()
    heat = np.zeros(wt.shape)
    heat[0, 0, 0] = 2.0     # in WT
    heat[3, 3, 0] = 3.0     # in the brain, outside WT: the peak
    heat[0, 0, 3] = 5.0     # outside the brain
    loc = localisation(heat, wt, brain)
    assert loc.mass_in_brain == pytest.approx(5 / 10) and loc.mass_outside_brain == pytest.approx(0.5)
    assert loc.mass_in_wt == pytest.approx(2 / 5)
    assert loc.enrichment == pytest.approx((2 / 5) / (8 / 32))
    assert not loc.peak_in_wt and not loc.peak_in_brain  # the 5.0 outside the brain is the hottest
    heat[0, 0, 3] = 0.0
    loc = localisation(heat, wt, brain)
    assert not loc.peak_in_wt and loc.peak_in_brain
    heat[1, 1, 1] = 4.0
    assert localisation(heat, wt, brain).peak_in_wt


def test_wt_outside_the_brain_is_ignored_and_undefined_numbers_are_nan():
    wt, brain = _masks()
    wt_out = wt.copy()
    wt_out[:, :, 3] = True  # outside the brain: not part of the score
    heat = np.where(wt, 1.0, 0.1)
    assert localisation(heat, wt_out, brain) == localisation(heat, wt, brain)
    empty = localisation(np.zeros(wt.shape), wt, brain)
    assert empty.empty and math.isnan(empty.enrichment) and not empty.peak_in_wt
    assert empty.as_dict()["mass_in_wt"] is None and empty.as_dict()["wt_fraction_of_brain"] == 0.25
    # plain Python values, ready for results.json (no NaN, no numpy scalars)
    values = localisation(heat, wt, brain).as_dict()
    assert json.loads(json.dumps(values, allow_nan=False)) == values
    assert all(type(v) in (float, bool) for v in values.values())
    no_wt = localisation(heat, np.zeros(wt.shape, bool), brain)
    assert no_wt.wt_fraction_of_brain == 0.0 and math.isnan(no_wt.enrichment)
    with pytest.raises(ValueError, match="non-negative"):
        localisation(-heat, wt, brain)
    with pytest.raises(ValueError, match="shape"):
        localisation(heat[:3], wt, brain)


def test_rank_correlation_inside_the_mask_only():
    rng = np.random.default_rng(0)
    a = rng.random((6, 6, 6))
    mask = np.zeros(a.shape, bool)
    mask[:3] = True
    b = np.where(mask, a ** 3, rng.random(a.shape))  # monotone inside, noise outside
    assert rank_correlation(a, b, mask) == pytest.approx(1.0)
    assert rank_correlation(a, -b, mask) == pytest.approx(-1.0)
    assert rank_correlation(a, b, np.ones(a.shape, bool)) < 0.9
    assert math.isnan(rank_correlation(a, np.zeros(a.shape), mask))
    # the subsample gives nearly the full answer
    c = a + 0.3 * rng.random(a.shape)
    full = rank_correlation(a, c, np.ones(a.shape, bool))
    assert abs(rank_correlation(a, c, np.ones(a.shape, bool), max_voxels=150) - full) < 0.1


def test_deletion_areas_by_hand():
    f = (0, 0.05, 0.1, 0.2, 0.4)
    flat = deletion_areas(f, [0.9] * 5, [0.9] * 5)
    assert flat.map_auc == pytest.approx(0.9) and flat.gain == pytest.approx(0.0)
    # map curve 1, 0.6, 0.4, 0.2, 0.0; trapezoids: .05*.8 + .05*.5 + .1*.3 + .2*.1 = 0.115; / 0.4
    areas = deletion_areas(f, [1, 0.6, 0.4, 0.2, 0.0], [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0.6]])
    assert areas.map_auc == pytest.approx(0.115 / 0.4)
    # random draws: 1.0 and (0.05 + 0.05 + 0.1 + 0.2 * 0.8) / 0.4 = 0.9, averaged
    assert areas.random_auc == pytest.approx((1.0 + 0.9) / 2)
    assert areas.gain == pytest.approx(areas.random_auc - 0.115 / 0.4) and areas.gain > 0
    with pytest.raises(ValueError, match="increase"):
        deletion_areas((0, 0.2, 0.1), [1, 1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="points"):
        deletion_areas(f, [1, 1], [1] * 5)


GOOD = Localisation(1.0, 0.0, 0.38, 0.06, 0.38 / 0.06, True, True)
POOR = Localisation(0.12, 0.88, 0.06, 0.17, 0.06 / 0.17, False, False)


def test_verdict_for_a_good_map_reads_like_the_issue():
    text = verdict(GOOD, predicted_title="glioblastoma", occluded_title="astrocytoma", occluded_probability=0.81,
                   ablation={"flair": -0.38, "t1": 0.02, "t1ce": -0.10, "t2": -0.05},
                   deletion=DeletionAreas(0.30, 0.55), randomisation_spearman=0.1, randomisation_flag=False)
    assert text.startswith("38 % of the heat lies in the tumour, which is 6 % of the brain: 6x better than chance.")
    assert "Without the tumour the model says astrocytoma (81 %)." in text
    assert "FLAIR moved the call most (-38 %)." in text
    assert "faster than deleting random ones (area gain 0.25)" in text
    assert text.endswith("Sanity check passed.")
    assert "poor" not in text and map_problems(GOOD, False, 0.25) == []


def test_verdict_for_a_poor_map_says_so_plainly():
    text = verdict(POOR, predicted_title="astrocytoma", occluded_title="astrocytoma", occluded_probability=0.9,
                   ablation={"flair": 0.01, "t1": -0.02, "t1ce": 0.0, "t2": 0.03},
                   deletion=DeletionAreas(0.8, 0.7), randomisation_spearman=0.83, randomisation_flag=True)
    first = text.split(". ")[0]
    assert first.startswith("This map is poor: most of its heat lies outside the brain")
    for phrase in ("worse than a uniform map", "hottest point lies outside the brain", "fails the sanity check",
                   "no more than deleting random ones"):
        assert phrase in first
    assert "88 % of the heat lies outside the brain." in text
    assert ("Only 6 % of the heat lies in the tumour, which is 17 % of the brain: 0.4x, worse than a uniform map."
            in text)
    assert "still says astrocytoma (90 %)" in text
    assert "No single sequence moved the call by 5 % or more." in text
    assert "Sanity check failed" in text and "Spearman 0.83" in text


def test_verdict_edge_cases_empty_map_no_tumour_weak_enrichment_and_partial_results():
    empty = localisation(np.zeros((2, 2, 2)), np.zeros((2, 2, 2), bool), np.ones((2, 2, 2), bool))
    assert verdict(empty).startswith("This map is poor: it is empty.")
    no_wt = Localisation(1.0, 0.0, 0.0, 0.0, math.nan, False, True)
    assert "No tumour was segmented" in verdict(no_wt) and "poor" not in verdict(no_wt)
    weak = Localisation(1.0, 0.0, 0.12, 0.1, 1.2, True, True)
    assert "1.2x, hardly better than a uniform map" in verdict(weak)
    assert verdict(weak).startswith("This map is poor: it is hardly better than chance at the tumour.")
    # the quick part only: no deletion or sanity sentences yet
    quick = verdict(GOOD, predicted_title="glioblastoma", occluded_title="glioblastoma", occluded_probability=0.7)
    assert "Sanity" not in quick and "Deleting" not in quick and "still says glioblastoma (70 %)" in quick
    ref = verdict(GOOD, reference=Localisation(1.0, 0.0, 0.4, 0.057, 7.0, True, True))
    assert "Against the case's own label map: 40 % of the heat in the tumour, 7x chance." in ref
    assert "inconclusive" in verdict(GOOD, randomisation_spearman=math.nan, randomisation_flag=False)
