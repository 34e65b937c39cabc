"""Evaluate model bundles through the app's own inference path and write the numbers to a folder.

Segmentation (``--seg-bundle`` with ``--brats`` / ``--msd`` / ``--cpm`` data that has label maps): each
case is loaded with :func:`braingui.case.load_case` and analysed by the app's pipeline
(:func:`braingui.inference.pipeline.analyse`: z-score, crop, resample, network, back onto the case grid,
threshold), so the labels scored are what a user gets, on the ORIGINAL full-resolution grid (the
canonical grid is the files' grid reoriented; no resampling). Dice and HD95 (mm) per case and their
means for ET, TC and WT use MONAI's metrics (:mod:`training.metrics`).

Classification (``--cls-bundle`` with ``--cpm`` data): predicted class and probabilities per case,
balanced accuracy, F1 per class and macro, Cohen's kappa, accuracy and the confusion matrix (CSV + PNG).
For cases with a label map, the Grad-CAM of the predicted class at the bundle's layer (the pipeline's
map, mapped back onto the case grid) is scored by the fraction of its mass inside the whole tumour
(:func:`training.metrics.cam_mass_inside`, CAM >= 0 normalised to [0, 1] by medcam).

``--reproduce`` re-runs the evaluation recorded in each bundle's model card (``model_card.evaluation``)
and compares the numbers with ``model_card.metrics``: the real-data part is skipped when its data folder
is absent; a synthetic held-out set is regenerated from its recorded generator settings when missing.

Outputs in ``--out``: ``segmentation_per_case.csv``, ``classification_per_case.csv``,
``confusion_matrix.csv``, ``confusion_matrix.png``, ``metrics.json`` (summary) and ``evaluate.log``.

Examples::

    python -m training.evaluate --seg-bundle braingui/models/demo-segresnet --brats ../shared/data/brats2018 \\
        --cases Brats18_CBICA_AME_1 Brats18_TCIA02_135_1 --out runs/eval_seg
    python -m training.evaluate --cls-bundle braingui/models/demo-densenet169 --cpm runs/data/synth_heldout \\
        --out runs/eval_cls
    python -m training.evaluate --reproduce braingui/models --out runs/eval_cards
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from braingui import labels as lab
from training import common
from training.data import CaseRef, brats_cases, cpm_radpath_cases, load_ref, msd_cases
from training.metrics import cam_mass_inside, classification_metrics, mean_region_scores, region_scores

TOLERANCE = {"dice": 0.01, "hd95": 1.0, "balanced_accuracy": 0.02, "cam_mass_in_wt": 0.03}
"""Largest difference between a re-evaluation and the model card accepted by ``--reproduce``."""


def _logger(out: Path) -> logging.Logger:
    out.mkdir(parents=True, exist_ok=True)
    return common.file_logger(f"training.evaluate.{out}", out / "evaluate.log")


def _pick(refs: list, names: list[str] | None, max_cases: int | None, key=lambda r: r.name) -> list:
    if names:
        by_name = {key(r): r for r in refs}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise SystemExit(f"cases not found: {', '.join(missing)}")
        refs = [by_name[n] for n in names]
    return refs[:max_cases] if max_cases else refs


def evaluate_segmentation(bundle_dir: Path, refs: list[CaseRef], device: str = "auto",
                          log: logging.Logger | None = None, tta: int | None = None,
                          postprocess: bool | None = None) -> dict[str, Any]:
    """Dice / HD95 of a segmentation bundle on labelled cases, through the app's pipeline.

    Args:
        tta: flipped views (``None``: the app's default).
        postprocess: ``False`` for none, ``None``/``True`` for the app's default post-processing.
    """
    from braingui import postprocess as pp
    from braingui.inference.manifest import read_bundle
    from braingui.inference.pipeline import analyse, run_to_completion
    from braingui.inference.predictor import Predictor

    bundle = read_bundle(bundle_dir)
    predictor = Predictor(device)
    rows, per_case = [], []
    for i, ref in enumerate(refs):
        t0 = time.time()
        case = load_ref(ref)
        if case.labels is None:
            raise SystemExit(f"{ref.path}: no label map; segmentation evaluation needs one")
        result = run_to_completion(analyse(case, predictor, bundle, None, tta=tta,
                                           postprocess=pp.OFF if postprocess is False else None))
        scores = region_scores(result.labels, case.labels, case.grid.spacing)
        per_case.append(scores)
        row = {"case": ref.name, "grid": "x".join(map(str, case.grid.original_shape)),
               "spacing_mm": "x".join(f"{s:g}" for s in case.grid.spacing), "seconds": round(time.time() - t0, 1)}
        for r in lab.REGIONS:
            row[f"dice_{r}"] = round(scores[r]["dice"], 4)
            row[f"hd95_{r}"] = round(scores[r]["hd95"], 2) if math.isfinite(scores[r]["hd95"]) else "nan"
        rows.append(row)
        if log:
            log.info("segmentation %d/%d %s %s", i + 1, len(refs), ref.name,
                     {k: v for k, v in row.items() if k.startswith(("dice", "hd95"))})
    mean = mean_region_scores(per_case)
    return {"bundle": bundle.name, "sha256": bundle.manifest.sha256, "n_cases": len(refs),
            "cases": [r.name for r in refs], "grid": "original full-resolution case grid (app pipeline)",
            "mean": mean, "per_case": rows}


def evaluate_classification(bundle_dir: Path, cases: list, device: str = "auto",
                            log: logging.Logger | None = None, figures: Path | None = None,
                            n_figures: int = 0, network_grid_cam: bool = True, cam_method: str | None = None,
                            cam_layer: str | None = None) -> dict[str, Any]:
    """Classification metrics and Grad-CAM localisation of a classification bundle, through the pipeline.

    ``network_grid_cam`` also scores the CAM on the classifier's input grid (one more forward + backward).
    ``cam_method`` / ``cam_layer``: the map's method and layer (``None``: the manifest's defaults).
    """
    from braingui.inference.manifest import read_bundle
    from braingui.inference.pipeline import analyse, run_to_completion
    from braingui.inference.predictor import Predictor

    bundle = read_bundle(bundle_dir)
    classes = list(bundle.manifest.classification.classes)
    predictor = Predictor(device)
    cam_method, cam_layer = predictor.load(bundle).cam_choice(cam_method, cam_layer)
    rows, y_true, y_pred, cam_in = [], [], [], []
    for i, lc in enumerate(cases):
        t0 = time.time()
        case = load_ref(lc.ref)
        result = run_to_completion(analyse(case, predictor, None, bundle, cam_method=cam_method, cam_layer=cam_layer))
        pred = result.predicted_class
        row = {"case": lc.ref.name, "true": lc.label, "predicted": pred,
               **{f"p_{c}": round(result.probabilities[c], 4) for c in classes}}
        if case.labels is not None and pred in result.cams:
            wt = lab.regions(case.labels)["WT"]
            row["cam_mass_in_wt"] = round(_cam_mass_of_total(result, wt), 4)
            if network_grid_cam:
                row["cam_mass_in_wt_net"] = round(_cam_on_network_grid(predictor.load(bundle), case, wt,
                                                                       classes.index(pred), cam_method,
                                                                       cam_layer), 4)
            row["wt_fraction_of_brain"] = round(float(wt.sum() / max((case.stack()[0] > 0).sum(), 1)), 4)
            if math.isfinite(row["cam_mass_in_wt"]):  # nan: an all-zero map
                cam_in.append(row["cam_mass_in_wt"])
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        if figures is not None and i < n_figures and pred in result.cams:
            cam_figure(figures / f"gradcam_{lc.ref.name}.png", case, result.cams[pred],
                       f"{lc.ref.name}: true {lc.label}, predicted {pred} ({result.probabilities[pred]:.2f}), "
                       f"CAM in WT {row.get('cam_mass_in_wt', float('nan')):.2f}")
        y_true.append(classes.index(lc.label))
        y_pred.append(classes.index(pred))
        if log:
            log.info("classification %d/%d %s true %s predicted %s %s", i + 1, len(cases), lc.ref.name, lc.label,
                     pred, {k: v for k, v in row.items() if k.startswith(("p_", "cam"))})
    m = classification_metrics(y_true, y_pred, len(classes))
    summary = {"bundle": bundle.name, "sha256": bundle.manifest.sha256, "n_cases": len(cases), "classes": classes,
               "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"], "kappa": m["kappa"],
               "f1_macro": m["f1_macro"], "f1": dict(zip(classes, m["f1"])), "recall": dict(zip(classes, m["recall"])),
               "precision": dict(zip(classes, m["precision"])), "support": dict(zip(classes, m["support"])),
               "confusion_matrix": {"rows": "true class", "columns": "predicted class", "labels": classes,
                                    "counts": m["confusion"]},
               "per_case": rows}
    if cam_in:
        summary["gradcam"] = {"layer": cam_layer, "method": cam_method,
                              "cam_mass_in_wt_mean": float(np.mean(cam_in)),
                              "cam_mass_in_wt_median": float(np.median(cam_in)),
                              **({"cam_mass_in_wt_classifier_grid_mean": float(np.nanmean(
                                  [r["cam_mass_in_wt_net"] for r in rows]))} if network_grid_cam else {}),
                              "cases_with_mask": len(cam_in),
                              "cam_mass_in_wt_mean_by_true_class": {
                                  c: float(np.nanmean([r["cam_mass_in_wt"] for r in rows if r["true"] == c]))
                                  for c in classes if any(r["true"] == c and "cam_mass_in_wt" in r for r in rows)},
                              "wt_fraction_of_brain_mean_by_true_class": {
                                  c: float(np.mean([r["wt_fraction_of_brain"] for r in rows if r["true"] == c]))
                                  for c in classes if any(r["true"] == c and "wt_fraction_of_brain" in r for r in rows)},
                              "grid": "case grid (the pipeline's map, mapped back from the classifier grid)",
                              "definition": "sum of CAM (>= 0, medcam-normalised) inside the true whole-tumour "
                                            "mask / sum of CAM, predicted class"}
    return summary


def _cam_mass_of_total(result, wt: np.ndarray) -> float:
    """Fraction of the whole map's mass inside the reference WT, as the model cards record it.

    The app now shows (and stores in ``result.cams``) the map masked to the brain; the cards' numbers count
    the mass outside the brain too, so they are recovered from the explanation: the in-brain mass in the
    reference WT times the in-brain share of all mass. Without an explanation, the map as stored.
    """
    pred = result.predicted_class
    explanation = getattr(result, "explanation", None) or {}
    reference, outside = explanation.get("reference") or {}, explanation.get("mass_outside_brain")
    if reference.get("mass_in_wt") is not None and outside is not None:
        return float(reference["mass_in_wt"]) * (1.0 - float(outside))
    return cam_mass_inside(result.cams[pred], wt)


def _cam_on_network_grid(model, case, wt: np.ndarray, class_index: int, method: str | None = None,
                         layer: str | None = None) -> float:
    """CAM mass inside the whole tumour on the classifier's own input grid (the WT mask resampled there)."""
    from braingui.preprocess import prepare_classification

    inp = prepare_classification(case.stack(model.prep.channels), model.prep)
    _, cam = model.explain(inp.array, class_index, method=method, layer=layer)
    return cam_mass_inside(cam, inp.grid_map.forward(wt.astype(np.float32)) > 0.5)


def cam_figure(path: Path, case, cam: np.ndarray, title: str) -> None:
    """FLAIR and T1ce at the tumour's (or the brain's) centre slice, the Grad-CAM over them, WT outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    wt = lab.regions(case.labels)["WT"] if case.labels is not None else None
    where = np.argwhere(wt) if wt is not None and wt.any() else np.argwhere(case.images["flair"] > 0)
    z = int(np.median(where[:, 2]))
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), dpi=90)
    panels = [("FLAIR", case.images["flair"], None), ("T1ce", case.images["t1ce"], None),
              ("Grad-CAM", None, cam), ("FLAIR + Grad-CAM", case.images["flair"], cam)]
    for ax, (name, img, heat) in zip(axes, panels):
        if img is not None:
            ax.imshow(img[:, :, z].T, cmap="gray", origin="lower")
        if heat is not None:
            ax.imshow(heat[:, :, z].T, cmap="jet", origin="lower", vmin=0, vmax=1, alpha=0.45 if img is not None else 1)
        if wt is not None:
            ax.contour(wt[:, :, z].T, levels=[0.5], colors="white", linewidths=0.8, origin="lower")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def write_confusion(out: Path, summary: dict) -> None:
    """``confusion_matrix.csv`` and ``confusion_matrix.png`` (rows true, columns predicted)."""
    labels, cm = summary["confusion_matrix"]["labels"], np.array(summary["confusion_matrix"]["counts"])
    with open(out / "confusion_matrix.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted"] + labels)
        for name, row in zip(labels, cm):
            w.writerow([name] + [int(v) for v in row])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=120)
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(int(v)), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{summary['bundle']} (n={summary['n_cases']}, bal. acc. {summary['balanced_accuracy']:.3f})",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png")
    plt.close(fig)


def card_metrics(seg: dict | None = None, cls: dict | None = None) -> dict:
    """The part of an evaluation summary that goes into a model card's ``metrics``."""
    out: dict[str, Any] = {}
    if seg:
        out.update({"n_cases": seg["n_cases"], "cases": seg["cases"], "grid": seg["grid"],
                    "dice": {r: round(seg["mean"][r]["dice"], 4) for r in lab.REGIONS},
                    "hd95_mm": {r: round(seg["mean"][r]["hd95"], 2) for r in lab.REGIONS},
                    "per_case": seg["per_case"]})
    if cls:
        out.update({k: cls[k] for k in ("n_cases", "balanced_accuracy", "accuracy", "kappa", "f1_macro", "f1",
                                        "confusion_matrix")})
        if "gradcam" in cls:
            out["gradcam"] = cls["gradcam"]
        out["per_case"] = cls["per_case"]
    return _no_nan(common.jsonable(out))


def _no_nan(obj: Any) -> Any:
    """NaN / inf -> None (strict JSON for the manifest), recursively; numeric strings "nan" too."""
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj == "nan":
        return None
    return obj


def _seg_refs(args) -> list[CaseRef]:
    refs: list[CaseRef] = []
    for root in args.brats:
        refs += brats_cases(root)
    for root in args.msd:
        refs += msd_cases(root)
    for root in args.cpm:
        refs += [c.ref for c in cpm_radpath_cases(root)]
    return _pick(refs, args.cases, args.max_cases)


def _close(a, b, tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(abs(float(a) - float(b)) <= tol)


def reproduce(models: Path, out: Path, device: str, data_root: Path | None, log: logging.Logger,
              max_cases: int | None = None, heldout: Path | None = None) -> dict[str, Any]:
    """Re-run each bundle's recorded evaluation and compare with its model card (see the module docstring).

    Per-case numbers are compared for every case evaluated; the means only when every recorded case was
    evaluated (not with ``max_cases``).
    """
    from braingui.inference.locate import bundles_in

    report: dict[str, Any] = {}
    partial = bool(max_cases)
    for bundle in bundles_in(models):
        card = bundle.manifest.model_card
        spec, recorded = card.get("evaluation"), card.get("metrics", {})
        if not spec:
            log.info("%s: no model_card.evaluation; skipped", bundle.name)
            continue
        card_rows = {r["case"]: r for r in recorded.get("per_case", [])}
        checks: list[tuple[str, Any, Any, float]] = []
        if bundle.task == "segmentation":
            root = Path(data_root or spec.get("data_root", ""))
            if not root.is_absolute() and not root.is_dir():
                root = Path(__file__).resolve().parents[1] / root  # recorded relative to the repository
            if not root.is_dir():
                log.info("%s: data folder %s absent; real-data evaluation skipped", bundle.name, root)
                report[bundle.name] = {"skipped": f"data folder {root} absent"}
                continue
            refs = _pick(brats_cases(root), spec["cases"], max_cases)
            # as the card was measured: its recorded settings (cards before test-time augmentation: 1 view, no
            # post-processing)
            got = card_metrics(seg=evaluate_segmentation(bundle.folder, refs, device, log, tta=int(spec.get("tta", 1)),
                                                         postprocess=bool(spec.get("postprocess", False))))
            for row in got["per_case"]:
                ref_row = card_rows.get(row["case"], {})
                checks += [(f"{row['case']}.dice_{r}", row[f"dice_{r}"], ref_row.get(f"dice_{r}"), TOLERANCE["dice"])
                           for r in lab.REGIONS]
            if not partial:
                checks += [(f"mean dice {r}", got["dice"][r], recorded["dice"][r], TOLERANCE["dice"]) for r in lab.REGIONS]
                checks += [(f"mean hd95_mm {r}", got["hd95_mm"][r], recorded["hd95_mm"][r], TOLERANCE["hd95"])
                           for r in lab.REGIONS]
        else:
            gen = spec["generator"]
            folder = heldout or out / "heldout"
            if not (folder / "training_data_classification_labels.csv").exists():
                from training.synthetic_types import GENERATOR_VERSION, generate

                if gen.get("version", GENERATOR_VERSION) != GENERATOR_VERSION:
                    log.info("%s: the card's held-out set was made by synthetic_types version %s, this code is "
                             "version %s; cannot regenerate it (give --heldout)", bundle.name, gen.get("version"),
                             GENERATOR_VERSION)
                    report[bundle.name] = {"skipped": "synthetic generator version differs"}
                    continue

                log.info("%s: regenerating the synthetic held-out set %s in %s", bundle.name, gen, folder)
                generate(folder, per_class=gen["per_class"], seed=gen["seed"], shape=tuple(gen["shape"]),
                         spacing=tuple(gen["spacing"]), prefix=gen["prefix"], first=max_cases, progress=False)
            cases = _pick(cpm_radpath_cases(folder), None, max_cases, key=lambda c: c.ref.name)
            recorded_cam = recorded.get("gradcam", {})  # the map the card's numbers were measured with
            got = card_metrics(cls=evaluate_classification(bundle.folder, cases, device, log, network_grid_cam=False,
                                                           cam_method=recorded_cam.get("method", "gradcam"),
                                                           cam_layer=recorded_cam.get("layer")))
            for row in got["per_case"]:
                ref_row = card_rows.get(row["case"], {})
                checks.append((f"{row['case']}.predicted", float(row["predicted"] == ref_row.get("predicted")), 1.0, 0.0))
                checks += [(f"{row['case']}.{k}", row.get(k), ref_row.get(k), tol) for k, tol in
                           (("p_A", 0.01), ("p_O", 0.01), ("p_G", 0.01), ("cam_mass_in_wt", TOLERANCE["cam_mass_in_wt"]))]
            if not partial:
                checks.append(("balanced_accuracy", got["balanced_accuracy"], recorded["balanced_accuracy"],
                               TOLERANCE["balanced_accuracy"]))
                if "gradcam" in recorded and "gradcam" in got:
                    checks.append(("gradcam.cam_mass_in_wt_mean", got["gradcam"]["cam_mass_in_wt_mean"],
                                   recorded["gradcam"]["cam_mass_in_wt_mean"], TOLERANCE["cam_mass_in_wt"]))
        results = [{"metric": k, "evaluated": a, "model_card": b, "agree": _close(a, b, tol)} for k, a, b, tol in checks]
        report[bundle.name] = {"partial": partial, "checks": results, "metrics": got}
        for c in results:
            log.info("%s %s: evaluated %s, model card %s -> %s", bundle.name, c["metric"], c["evaluated"],
                     c["model_card"], "agrees" if c["agree"] else "DIFFERS")
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", required=True, type=Path, help="folder for the results")
    p.add_argument("--seg-bundle", type=Path, help="segmentation bundle folder")
    p.add_argument("--cls-bundle", type=Path, help="classification bundle folder")
    p.add_argument("--reproduce", type=Path, metavar="MODELS",
                   help="re-run the evaluation recorded in the model cards of the bundles in MODELS")
    p.add_argument("--data-root", type=Path, default=None,
                   help="with --reproduce: the BraTS data folder (default: the one recorded in the model card)")
    p.add_argument("--heldout", type=Path, default=None,
                   help="with --reproduce: the synthetic held-out set folder (default OUT/heldout, regenerated)")
    p.add_argument("--brats", action="append", default=[], type=Path, help="folder of BraTS case folders")
    p.add_argument("--msd", action="append", default=[], type=Path, help="MSD Task01 folder")
    p.add_argument("--cpm", action="append", default=[], type=Path, help="CPM-RadPath style folder (case folders + CSV)")
    p.add_argument("--cases", nargs="*", default=None, help="only these case ids")
    p.add_argument("--max-cases", type=int, default=None, help="at most N cases (quick checks)")
    p.add_argument("--figures", type=int, default=0, help="write Grad-CAM figures of the first N cases")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.seg_bundle or args.cls_bundle or args.reproduce):
        raise SystemExit("give --seg-bundle, --cls-bundle or --reproduce")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    log = _logger(args.out)
    summary: dict[str, Any] = {}
    if args.reproduce:
        summary["reproduce"] = reproduce(args.reproduce, args.out, args.device, args.data_root, log, args.max_cases,
                                         args.heldout)
        common.write_json(args.out / "reproduce.json", summary["reproduce"])
        differs = [f"{n}: {c['metric']}" for n, r in summary["reproduce"].items() for c in r.get("checks", [])
                   if not c["agree"]]
        log.info("reproduce: %s", f"{len(differs)} number(s) differ from the model cards: {differs}" if differs
                 else "every re-evaluated number agrees with the model cards")
        return 1 if differs else 0
    if args.seg_bundle:
        refs = _seg_refs(args)
        if not refs:
            raise SystemExit("no labelled cases: give --brats / --msd / --cpm")
        seg = evaluate_segmentation(args.seg_bundle, refs, args.device, log)
        write_csv(args.out / "segmentation_per_case.csv", seg["per_case"])
        summary["segmentation"] = seg
        log.info("segmentation mean over %d cases: %s", seg["n_cases"], seg["mean"])
    if args.cls_bundle:
        cases = []
        for root in args.cpm:
            cases += cpm_radpath_cases(root)
        cases = _pick(cases, args.cases, args.max_cases, key=lambda c: c.ref.name)
        if not cases:
            raise SystemExit("no labelled classification cases: give --cpm")
        cls = evaluate_classification(args.cls_bundle, cases, args.device, log, args.out / "figures", args.figures)
        write_csv(args.out / "classification_per_case.csv", cls["per_case"])
        write_confusion(args.out, cls)
        summary["classification"] = cls
        log.info("classification over %d cases: balanced accuracy %.3f, F1 macro %.3f, kappa %.3f, F1 %s%s",
                 cls["n_cases"], cls["balanced_accuracy"], cls["f1_macro"], cls["kappa"], cls["f1"],
                 f", Grad-CAM mass in WT {cls['gradcam']['cam_mass_in_wt_mean']:.3f}" if "gradcam" in cls else "")
    summary["card_metrics"] = {"segmentation": card_metrics(seg=summary.get("segmentation")),
                               "classification": card_metrics(cls=summary.get("classification"))}
    common.write_json(args.out / "metrics.json", summary)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
