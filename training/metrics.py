"""Evaluation metrics: Dice and HD95 per region (MONAI), classification metrics, Grad-CAM localisation.

* :func:`region_scores` — Dice and 95th-percentile Hausdorff distance (mm, with the grid's spacing) for
  ET / TC / WT via ``monai.metrics.DiceMetric`` / ``HausdorffDistanceMetric``. Conventions of the BraTS
  challenge for empty masks: both empty -> Dice 1, HD95 0; one empty -> Dice 0, HD95 ``nan`` (reported as
  missing and counted in ``n_empty``; the BraTS challenge used 373.13 mm).
* :func:`classification_metrics` — confusion matrix (rows true, columns predicted), balanced accuracy
  (mean recall), F1 per class and macro, Cohen's kappa, accuracy.
* :func:`cam_mass_inside` — fraction of a (non-negative) Grad-CAM's mass inside a mask.
"""

from __future__ import annotations

import numpy as np

from braingui import labels as lab


def region_scores(pred_labels: np.ndarray, true_labels: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> dict[str, dict[str, float]]:
    """Dice and HD95 (mm) of ET, TC and WT between two internal (BraTS 1/2/4) label maps ``(X, Y, Z)``."""
    import torch
    from monai.metrics import DiceMetric, HausdorffDistanceMetric

    p, t = lab.regions(pred_labels), lab.regions(true_labels)
    out = {}
    for region in lab.REGIONS:
        pr = torch.from_numpy(p[region][None, None].astype(np.float32))
        tr = torch.from_numpy(t[region][None, None].astype(np.float32))
        n_p, n_t = int(p[region].sum()), int(t[region].sum())
        if n_p == 0 and n_t == 0:
            out[region] = {"dice": 1.0, "hd95": 0.0}
            continue
        if n_p == 0 or n_t == 0:  # MONAI would give nan for an empty truth (ignore_empty); BraTS counts 0
            out[region] = {"dice": 0.0, "hd95": float("nan")}
            continue
        dice = float(DiceMetric(include_background=True, reduction="none")(pr, tr).item())
        hd = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")
        hd95 = float(hd(pr, tr, spacing=[float(s) for s in spacing]).item())
        out[region] = {"dice": dice, "hd95": hd95}
    return out


def mean_region_scores(per_case: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean Dice and HD95 per region over cases (HD95 over the cases where it is defined)."""
    out = {}
    for region in lab.REGIONS:
        dice = [c[region]["dice"] for c in per_case]
        hd = [c[region]["hd95"] for c in per_case if np.isfinite(c[region]["hd95"])]
        out[region] = {"dice": float(np.mean(dice)) if dice else float("nan"),
                       "hd95": float(np.mean(hd)) if hd else float("nan"), "n_empty": len(per_case) - len(hd)}
    return out


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``(n, n)`` int counts, rows the true class, columns the predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)):
        cm[t, p] += 1
    return cm


def classification_metrics(y_true, y_pred, n_classes: int) -> dict:
    """Balanced accuracy, F1 per class and macro, Cohen's kappa, accuracy and the confusion matrix.

    Classes absent from both truth and prediction get recall / F1 ``nan`` and are left out of the means.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(np.float64)
    n = cm.sum()
    support, predicted, tp = cm.sum(1), cm.sum(0), np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
    po = tp.sum() / n if n else float("nan")
    pe = float((support * predicted).sum() / n**2) if n else float("nan")
    kappa = (po - pe) / (1 - pe) if n and pe < 1 else (1.0 if n else float("nan"))
    return {"confusion": cm.astype(int).tolist(), "accuracy": float(po),
            "balanced_accuracy": float(np.nanmean(recall)) if np.any(support > 0) else float("nan"),
            "recall": recall.tolist(), "precision": precision.tolist(), "f1": f1.tolist(),
            "f1_macro": float(np.nanmean(f1)) if np.any(np.isfinite(f1)) else float("nan"), "kappa": float(kappa),
            "support": support.astype(int).tolist()}


def cam_mass_inside(cam: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the mass of ``max(cam, 0)`` inside ``mask`` (same shape); ``nan`` for an all-zero map."""
    cam = np.maximum(np.asarray(cam, dtype=np.float64), 0.0)
    total = cam.sum()
    return float(cam[np.asarray(mask, dtype=bool)].sum() / total) if total > 0 else float("nan")
