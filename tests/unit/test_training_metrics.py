"""training.metrics against values computed by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import cam_mass_inside, classification_metrics, confusion_matrix, mean_region_scores, region_scores


def _labels(shape=(12, 12, 12)):
    return np.zeros(shape, dtype=np.uint8)


def test_dice_of_nested_regions():
    # truth: WT = 4x4x4 cube (64), TC = 2x2x4 inside (16, label 1 + 4), ET = 2x1x4 (8, label 4)
    truth = _labels()
    truth[2:6, 2:6, 2:6] = 2
    truth[2:4, 2:4, 2:6] = 1
    truth[2:4, 2:3, 2:6] = 4
    pred = _labels()
    pred[2:6, 2:6, 3:7] = 2  # edema: the cube shifted by one slice
    pred[2:4, 2:4, 2:6] = 1  # TC exact (16); its z=2 slice (4 voxels) adds to WT
    # predicted WT = 64 + 4 = 68 voxels, overlap with the true WT = 4x4x3 + 4 = 52
    # ET predicted nowhere -> Dice 0, HD95 undefined
    s = region_scores(pred, truth)
    assert s["WT"]["dice"] == pytest.approx(2 * 52 / (68 + 64))
    assert s["TC"]["dice"] == pytest.approx(1.0)
    assert s["ET"]["dice"] == pytest.approx(0.0)
    assert math.isnan(s["ET"]["hd95"])
    assert s["TC"]["hd95"] == pytest.approx(0.0)


def test_hd95_of_a_shifted_cube_in_mm():
    # Two 4x4x4 cubes shifted by 2 voxels along x; every surface voxel of one is within 2 voxels of the
    # other and the faces that moved are exactly 2 away: HD95 = 2 voxels = 2 * spacing_x mm.
    truth = _labels((16, 16, 16))
    truth[4:8, 4:8, 4:8] = 2
    pred = _labels((16, 16, 16))
    pred[6:10, 4:8, 4:8] = 2
    s = region_scores(pred, truth, spacing=(1.5, 1.0, 1.0))
    assert s["WT"]["dice"] == pytest.approx(2 * 32 / 128)
    assert s["WT"]["hd95"] == pytest.approx(3.0)  # 2 voxels x 1.5 mm
    both_empty = region_scores(_labels(), _labels())
    assert both_empty["ET"] == {"dice": 1.0, "hd95": 0.0}


def test_one_empty_region_counts_as_dice_zero():
    # an astrocytoma-like truth without enhancement against a prediction with some, and the reverse
    truth = _labels()
    truth[2:6, 2:6, 2:6] = 2
    pred = truth.copy()
    pred[3:4, 3:4, 3:5] = 4
    for a, b in ((pred, truth), (truth, pred)):
        s = region_scores(a, b)
        assert s["ET"]["dice"] == 0.0 and math.isnan(s["ET"]["hd95"])
        assert s["WT"]["dice"] == pytest.approx(1.0)


def test_mean_region_scores_skips_undefined_hd95():
    per_case = [{r: {"dice": 0.5, "hd95": 2.0} for r in ("ET", "TC", "WT")},
                {r: {"dice": 1.0, "hd95": float("nan")} for r in ("ET", "TC", "WT")}]
    m = mean_region_scores(per_case)
    assert m["WT"] == {"dice": 0.75, "hd95": 2.0, "n_empty": 1}


def test_classification_metrics_by_hand():
    # classes 0 A, 1 O, 2 G
    y_true = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 0, 1, 2, 1, 0, 2, 2, 2, 1]
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 1], [1, 1, 0], [0, 1, 3]]
    m = classification_metrics(y_true, y_pred, 3)
    # recalls 2/4, 1/2, 3/4 -> balanced accuracy 0.5833
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 0.75) / 3)
    # F1 = 2 TP / (support + predicted): A 4/(4+3), O 2/(2+3), G 6/(4+4)
    assert m["f1"] == pytest.approx([4 / 7, 2 / 5, 6 / 8])
    assert m["f1_macro"] == pytest.approx((4 / 7 + 2 / 5 + 6 / 8) / 3)
    # kappa: po = 6/10, pe = (4*3 + 2*3 + 4*4) / 100 = 0.34
    assert m["kappa"] == pytest.approx((0.6 - 0.34) / (1 - 0.34))
    assert m["accuracy"] == pytest.approx(0.6)


def test_perfect_and_constant_classifiers():
    perfect = classification_metrics([0, 1, 2, 2], [0, 1, 2, 2], 3)
    assert perfect["balanced_accuracy"] == 1.0 and perfect["kappa"] == 1.0 and perfect["f1_macro"] == 1.0
    constant = classification_metrics([0, 1, 2], [2, 2, 2], 3)
    assert constant["balanced_accuracy"] == pytest.approx(1 / 3)
    assert constant["kappa"] == pytest.approx(0.0)


def test_cam_mass_inside():
    cam = np.zeros((4, 4, 4), dtype=np.float32)
    cam[0, 0, 0], cam[1, 1, 1], cam[3, 3, 3] = 1.0, 3.0, -5.0  # negative values do not count
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[1, 1, 1] = True
    assert cam_mass_inside(cam, mask) == pytest.approx(0.75)
    assert math.isnan(cam_mass_inside(np.zeros((2, 2, 2)), np.ones((2, 2, 2), bool)))
