"""Measure test-time augmentation, post-processing, uncertainty and quality flags on real labelled cases.

Two phases, so the slow one runs once:

* ``--compute``: for every case, the eight flipped members of the segmentation bundle
  (:data:`braingui.inference.tta.FLIPS`, in that order) on the network grid, stored as float16 in
  ``CACHE/<case>.npz`` with each member's forward seconds (the app's own preprocessing and network).
* ``--analyse``: from the cache, per case: Dice of ET / TC / WT on the case's full-resolution grid with
  1, 2, 4 and 8 members (the mean of the first ``n`` sigmoid outputs, mapped back as the pipeline does);
  a sweep of the post-processing thresholds (:mod:`braingui.postprocess`); the uncertainty summary
  (:mod:`braingui.uncertainty`) and its Spearman correlation with 1 - Dice WT; the quality flags on the
  prediction and on the expert labels (which must stay quiet); and the intensity statistics of each
  case (:mod:`braingui.intensity_stats`). Writes ``OUT/tta_study.json`` and prints a report.

Choosing and judging are kept apart: thresholds are chosen on the cases the bundle was trained on
(``model_card.train_cases``) and judged on its held-out cases (``model_card.held_out_cases``); every
number on the training cases is marked as such (the network has seen them).

Example::

    python -m training.tta_study --bundle braingui/models/demo-segresnet --data ../shared/data/brats2018 \\
        --cache runs/tta_cache --compute --analyse --out runs/tta_study
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from braingui import labels as lab
from braingui import postprocess as pp
from braingui import quality, uncertainty
from braingui.intensity_stats import intensity_statistics, reference_statistics
from braingui.inference.tta import DEFAULT_TTA
from braingui.preprocess import foreground_mask, segmentation_map
from training.data import brats_cases, load_ref

COMPONENT_ML = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
ET_MIN_ML = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


def compute(bundle_dir: Path, refs, cache: Path, device: str = "cpu") -> None:
    """Phase 1: the eight members of every case into ``cache`` (skips cases already there)."""
    from braingui.inference.manifest import read_bundle
    from braingui.inference.predictor import Predictor
    from braingui.inference.tta import FLIPS
    from braingui.preprocess import prepare_segmentation

    model = Predictor(device).load(read_bundle(bundle_dir))
    cache.mkdir(parents=True, exist_ok=True)
    for ref in refs:
        path = cache / f"{ref.name}.npz"
        if path.exists():
            continue
        case = load_ref(ref)
        inp = prepare_segmentation(case.stack(model.prep.channels), model.prep)
        members, seconds = [], []
        for axes in FLIPS:
            spatial = tuple(a + 1 for a in axes)
            t0 = time.perf_counter()
            probs = model.probabilities(np.flip(inp.array, spatial) if axes else inp.array)
            seconds.append(time.perf_counter() - t0)
            members.append((np.flip(probs, spatial) if axes else probs).astype(np.float16))
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, members=np.stack(members), seconds=np.array(seconds))
        tmp.replace(path)
        print(f"{ref.name}: {len(FLIPS)} members, {np.median(seconds):.1f} s each (median)", flush=True)


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Dice of two bool masks; both empty -> 1 (the BraTS convention)."""
    a, b = int(np.count_nonzero(pred)), int(np.count_nonzero(true))
    if a + b == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & true)) / (a + b)


def region_dice(pred_labels: np.ndarray, true_labels: np.ndarray) -> dict[str, float]:
    p, t = lab.regions(pred_labels), lab.regions(true_labels)
    return {r: round(dice(p[r], t[r]), 4) for r in lab.REGIONS}


def _mean(rows: list[dict], key: str) -> dict[str, float]:
    return {r: round(float(np.mean([row[key][r] for row in rows])), 4) for r in lab.REGIONS} if rows else {}


def analyse_case(ref, cache: Path, spec, prep) -> dict:
    """Everything the report needs about one case (see the module docstring)."""
    from braingui.inference.tta import nested_counts

    case = load_ref(ref)
    data = np.load(cache / f"{ref.name}.npz")
    members = data["members"].astype(np.float32)
    stack = case.stack(prep.channels)
    grid_map = segmentation_map(stack, prep)
    brain = foreground_mask(stack)
    voxel_ml, spacing = case.grid.voxel_ml, case.grid.spacing
    net_ml = voxel_ml * float(np.prod(grid_map.scale))
    regions = tuple(spec.regions)
    row = {"case": ref.name, "seconds_per_member": round(float(np.median(data["seconds"])), 2), "tta": {}}
    labels_n = {}
    for n in (1, 2, 4, 8):
        mean = members[:n].mean(axis=0)
        probs = grid_map.inverse(mean, fill=0.0, order=1)
        above = probs > spec.threshold
        labels = lab.from_region_channels(above, regions)
        if n in (1, DEFAULT_TTA):
            labels_n[n] = (labels,)
        entry = {"dice": region_dice(labels, case.labels)}
        if n > 1:
            std = members[:n].std(axis=0)
            counts = np.stack([nested_counts(m > spec.threshold, regions) for m in members[:n]])
            case_ml = dict(zip(regions, (nested_counts(above, regions) * voxel_ml).tolist()))
            summary = uncertainty.region_summary(mean, std, counts, regions, spec.threshold, net_ml, case_ml)
            vols = lab.region_volumes_ml(labels, voxel_ml)
            entry["uncertainty"] = summary
            entry["wt_rel_range"] = round((summary["WT"]["volume_ml_range"][1] - summary["WT"]["volume_ml_range"][0])
                                          / max(vols["WT"], 1e-6), 4)
            entry["volumes_ml"] = {k: round(v, 3) for k, v in vols.items()}
            entry["flags"] = [f.as_dict() for f in quality.assess(labels, brain, spacing, voxel_ml, channels=above,
                                                                  regions=regions, volumes_ml=vols, summary=summary,
                                                                  members=n)]
        row["tta"][n] = entry
    row["labels_for_sweep"] = labels_n
    row["expert_flags"] = [f.as_dict() for f in quality.assess(case.labels, brain, spacing, voxel_ml)]
    row["edge_fraction_expert"] = round(quality.edge_fraction(case.labels > 0, brain, spacing, 3.0), 4)
    row["mirror_expert"] = round(quality.mirror_overlap(case.labels > 0, brain, spacing, 10.0)[0], 4)
    row["intensity"] = intensity_statistics(case.images, tuple(prep.channels))
    row["expert_volumes_ml"] = {k: round(v, 3) for k, v in lab.region_volumes_ml(case.labels, voxel_ml).items()}
    row["_true"] = case.labels
    row["_voxel_ml"] = voxel_ml
    return row


def sweep(rows: list[dict], n: int) -> dict[str, dict]:
    """Mean Dice per post-processing setting over ``rows`` (members ``n``)."""
    out = {}
    for comp in COMPONENT_ML:
        for et in ET_MIN_ML:
            opts = pp.PostProcessing(comp, et)
            per = [region_dice(pp.postprocess(r["labels_for_sweep"][n][0], r["_voxel_ml"], opts)[0], r["_true"])
                   for r in rows]
            out[f"{comp}/{et}"] = {"min_component_ml": comp, "et_min_ml": et,
                                   "dice": {k: round(float(np.mean([p[k] for p in per])), 4) for k in lab.REGIONS},
                                   "per_case": per}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.tta_study", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=Path("braingui/models/demo-segresnet"))
    p.add_argument("--data", type=Path, required=True, help="BraTS folder (one sub-folder per labelled case)")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--compute", action="store_true")
    p.add_argument("--analyse", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", nargs="*", default=None)
    args = p.parse_args(argv)
    refs = brats_cases(args.data)
    if args.cases:
        refs = [r for r in refs if r.name in set(args.cases)]
    if args.compute:
        compute(args.bundle, refs, args.cache, args.device)
    if args.analyse:
        report = analyse(args.bundle, refs, args.cache)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "tta_study.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


def analyse(bundle_dir: Path, refs, cache: Path) -> dict:
    """Phase 2 (see the module docstring); prints the report and returns it as a dict."""
    from scipy.stats import spearmanr

    from braingui.inference.manifest import read_bundle

    bundle = read_bundle(bundle_dir)
    spec, card = bundle.manifest.segmentation, bundle.manifest.model_card
    train, held = set(card.get("train_cases", [])), set(card.get("held_out_cases", []))
    rows = [analyse_case(r, cache, spec, spec) for r in refs]
    groups = {"held_out": [r for r in rows if r["case"] in held], "trained_on": [r for r in rows if r["case"] in train]}
    report = {"cases": {g: [r["case"] for r in rs] for g, rs in groups.items()}, "tta": {}, "per_case": []}
    print(f"held-out: {report['cases']['held_out']}\ntrained on (not held-out): {len(groups['trained_on'])} cases")
    for n in (1, 2, 4, 8):
        report["tta"][n] = {g: _mean([{"dice": r["tta"][n]["dice"]} for r in rs], "dice") for g, rs in groups.items()}
        print(f"TTA {n}: " + "; ".join(f"{g} {report['tta'][n][g]}" for g in groups))
    sec = [r["seconds_per_member"] for r in rows]
    report["seconds_per_member_median"] = round(float(np.median(sec)), 2)
    # post-processing: choose on the trained-on cases, judge on the held-out ones
    pp_report = {}
    for g, rs in groups.items():
        pp_report[g] = sweep(rs, DEFAULT_TTA) if rs else {}
    report["postprocess_sweep"] = {g: {k: {kk: vv for kk, vv in v.items() if kk != "per_case"} for k, v in s.items()}
                                   for g, s in pp_report.items()}
    for g, s in pp_report.items():
        if s:
            best = max(s.values(), key=lambda v: (round(np.mean(list(v["dice"].values())), 4),
                                                  -v["min_component_ml"], -v["et_min_ml"]))
            base = s["0.0/0.0"]
            print(f"post-processing on {g}: none {base['dice']}; best (mean of 3) {best['min_component_ml']} mL / "
                  f"ET {best['et_min_ml']} mL -> {best['dice']}")
    # uncertainty vs error (every case with TTA 8; few cases)
    for n in (2, 4, 8):
        u = [r["tta"][n]["uncertainty"]["WT"]["mean"] for r in rows]
        rel = [r["tta"][n]["wt_rel_range"] for r in rows]
        err = [1 - r["tta"][n]["dice"]["WT"] for r in rows]
        rho, pval = spearmanr(u, err)
        rho2, _ = spearmanr(rel, err)
        report.setdefault("spearman", {})[n] = {"wt_mean_uncertainty": [round(float(rho), 3), round(float(pval), 3)],
                                                "wt_relative_volume_range": round(float(rho2), 3), "cases": len(rows)}
        print(f"Spearman (TTA {n}, {len(rows)} cases, {len(held)} held-out): WT mean uncertainty vs 1 - Dice WT "
              f"rho {rho:.3f} (p {pval:.3f}); WT relative volume range rho {rho2:.3f}")
    for r in rows:  # the shipped defaults: DEFAULT_TTA views and pp.DEFAULT
        r["final_dice"] = region_dice(pp.postprocess(r["labels_for_sweep"][DEFAULT_TTA][0], r["_voxel_ml"],
                                                     pp.DEFAULT)[0], r["_true"])
    report["final"] = {"tta_views": DEFAULT_TTA, "postprocessing": {"min_component_ml": pp.DEFAULT.min_component_ml,
                                          "et_min_ml": pp.DEFAULT.et_min_ml},
                       **{g: _mean([{"dice": r["final_dice"]} for r in rs], "dice")
                          for g, rs in groups.items()}}
    print(f"shipped defaults (TTA {DEFAULT_TTA}, post-processing {report['final']['postprocessing']}): "
          + "; ".join(f"{g} {report['final'][g]}" for g in groups))
    for r in rows:
        tag = "held-out" if r["case"] in held else "trained-on"
        d = DEFAULT_TTA
        print(f"{r['case']:24s} {tag:10s} " + " ".join(f"n{n} {r['tta'][n]['dice']}" for n in (1, d))
              + f" final {r['final_dice']}"
              + f" u {r['tta'][d]['uncertainty']['WT']['mean']:.4f} flags {[f['code'] for f in r['tta'][d]['flags']]}"
              + f" expert-flags {[f['code'] for f in r['expert_flags']]} edge {r['edge_fraction_expert']}"
              + f" mirror {r['mirror_expert']}")
        report["per_case"].append({k: v for k, v in r.items() if not k.startswith("_") and k != "labels_for_sweep"})
    train_stats = [r["intensity"] for r in groups["trained_on"]]
    if train_stats:
        report["input_statistics"] = reference_statistics(train_stats).to_dict()
    return report


if __name__ == "__main__":
    raise SystemExit(main())
