"""Which heat map localises the tumour, and which layer? The CAM study of a classification bundle (analysis only).

Two modes.

``--table`` (the default when no ``--cpm`` is given): every CAM method (Grad-CAM, Grad-CAM++, HiResCAM,
LayerCAM) at every dense block and transition, on the 60 held-out synthetic phantoms of the bundle's model
card (``model_card.evaluation.generator``; regenerated into ``--heldout`` when missing) and on the real
BraTS cases of ``--brats`` (their own expert label maps; skipped when the folder is absent). Per set it
prints mean +- sd of the map's mass in the whole tumour (WT), the enrichment (mass in WT / WT's fraction
of the brain; 1 = a uniform map), the pointing game (hottest voxel in WT, % of cases), the deletion gain
and the model-randomisation Spearman (:mod:`training.cam_table`: the app's own metric modules on the
map of the predicted class; localisation on the case grid as the app's Explanation panel, deletion and
randomisation on the classifier's input grid as the app). Deletion and randomisation cost ~100 forwards
per case, so they run on a fixed subset (``--faith-per-class`` synthetic phantoms per class and
``--faith-real`` real cases, all 14 by default); the tables say on how many cases. The default method and
layer are then chosen by :data:`training.cam_table.RULE` and printed with their per-case numbers.
Outputs in ``--out``: ``cam_table_per_case.csv`` (one row per case x method x layer; the run resumes,
skipping the cases already there), ``cam_table_summary.csv``, ``cam_table.json`` (settings, timings,
summary, choice, per case), ``cam_table_settings.json`` and ``cam_table.log``. Torch runs on one thread
unless ``--threads`` says otherwise.

Layer study (with ``--cpm``): for each case of a labelled set it computes, on the classifier's input grid,
the fraction of the Grad-CAM mass (ReLU, min-max normalised, trilinear upsampling, as medcam) inside the
true whole tumour for several variants of the target score and layer:

* ``logit`` — the gradient of the predicted class's logit (Grad-CAM as in the paper / medcam);
* ``logprob`` — the gradient of its log-softmax, ``y_c - logsumexp(y)``: evidence *for c against the
  other classes*; features that raise every logit alike cancel out;
* ``hires`` — HiResCAM (Draelos & Carin 2020): the logit's gradient times the activation element-wise,
  summed over channels, instead of Grad-CAM's spatially averaged channel weights;
* each at the layers given (default the paper's ``features.denseblock1`` and ``features.denseblock2``);
* ``occluded`` — an occlusion test, no gradients: the class the network predicts when the whole tumour is
  replaced by the mean of the other brain voxels of each channel. A class it still predicts without the
  tumour is decided by evidence outside it, and no heat map can then be "inside the tumour".

The ``logit`` variant at the bundle's layer is checked against the app's (medcam) Grad-CAM there (the
correlation is printed). Nothing here changes the app.

    python -m training.cam_study --table --out runs/cam_table
    python -m training.cam_study --cls-bundle braingui/models/demo-densenet169 --cpm runs/data/synth_heldout_v2 \\
        --layers features.denseblock1 --out runs/cam_study
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from braingui import labels as lab
from training.data import cpm_radpath_cases, load_ref
from training.metrics import cam_mass_inside


def grad_cam(network: torch.nn.Module, x: torch.Tensor, layer: str, target: str, class_index: int | None = None
             ) -> tuple[np.ndarray, int]:
    """Grad-CAM ``(X, Y, Z)`` in [0, 1] on the input grid and the class explained."""
    module = dict(network.named_modules())[layer]
    store: dict[str, torch.Tensor] = {}

    def hook(_, __, out):
        out.register_hook(lambda g: store.__setitem__("grad", g))
        store["act"] = out

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = network(x)
            c = int(logits.argmax(1)) if class_index is None else class_index
            score = torch.log_softmax(logits, 1)[0, c] if target == "logprob" else logits[0, c]
            network.zero_grad(set_to_none=True)
            score.backward()
    finally:
        handle.remove()
        network.zero_grad(set_to_none=True)
    weights = store["grad"] if target == "hires" else store["grad"].mean(dim=(2, 3, 4), keepdim=True)
    cam = F.relu((weights * store["act"]).sum(1, keepdim=True)).detach()
    lo, hi = cam.min(), cam.max()
    cam = (cam - lo) / (hi - lo) if hi > lo else torch.zeros_like(cam)
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="trilinear", align_corners=False)[0, 0]
    return cam.clamp(0, 1).numpy(), c


def occluded_prediction(network: torch.nn.Module, x: torch.Tensor, wt: np.ndarray, classes) -> str:
    """The class predicted with the whole tumour (``wt`` on the input grid) replaced by normal-brain means."""
    occ = x.clone()
    mask = torch.from_numpy(np.asarray(wt, dtype=bool))
    brain = (x[0] != 0).any(0) & ~mask
    for ch in range(occ.shape[1]):
        occ[0, ch][mask] = x[0, ch][brain].mean() if bool(brain.any()) else 0.0
    with torch.no_grad():
        return classes[int(network(occ).argmax(1))]


REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "braingui" / "models" / "demo-densenet169"
DEFAULT_HELDOUT = REPO / "runs" / "data" / "synth_heldout_v2"
DEFAULT_BRATS = REPO.parent / "shared" / "data" / "brats2018"
LEGACY_LAYERS = ["features.denseblock1", "features.denseblock2"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.cam_study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cls-bundle", type=Path, default=DEFAULT_BUNDLE, help="classification bundle (default the demo)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--max-cases", type=int, default=None, help="at most N cases per set (quick checks)")
    p.add_argument("--layers", nargs="+", default=None,
                   help=f"layers (table default: every dense block and transition; layer study: {' '.join(LEGACY_LAYERS)})")
    p.add_argument("--cpm", type=Path, default=None, help="layer study: labelled set with label maps (synthetic_types layout)")
    t = p.add_argument_group("table (--table)")
    t.add_argument("--table", action="store_true", help="every method x layer on the held-out and real sets")
    t.add_argument("--methods", nargs="+", default=None, help="CAM methods (default all)")
    t.add_argument("--heldout", type=Path, default=DEFAULT_HELDOUT,
                   help="synthetic held-out set (regenerated from the model card's generator when missing)")
    t.add_argument("--brats", type=Path, default=DEFAULT_BRATS, help="folder of real labelled cases (skipped if absent)")
    t.add_argument("--real-cases", nargs="+", default=None,
                   help="only these real cases (names, or a real_types.json whose held_out_cases are taken: the "
                        "cases a classifier fine-tuned on training.real_types never saw)")
    t.add_argument("--no-synthetic", action="store_true", help="skip the synthetic held-out set")
    t.add_argument("--faith-per-class", type=int, default=4,
                   help="synthetic phantoms per class that also get deletion + randomisation (default 4)")
    t.add_argument("--faith-real", type=int, default=None, help="real cases that get them (default all)")
    t.add_argument("--draws", type=int, default=3, help="randomisation draws (default 3, as the app)")
    t.add_argument("--random-draws", type=int, default=2, help="random deletion draws (default 2, as the app)")
    p.add_argument("--per-class", action="store_true",
                   help="the map of every class, not only the predicted one, on the real cases (--brats, --real-cases): "
                        "does 'why A' point at the tumour as 'why G' does? (--methods / --layers: the first of each; "
                        "default the bundle's)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.per_class:
        return per_class_study(args)
    if args.table or args.cpm is None:
        return run_table(args)
    return layer_study(args)


def per_class_study(args: argparse.Namespace) -> int:
    """``--per-class``: localisation of each class's map on each real case, on the classifier's input grid (the
    app's :func:`braingui.explanation.localisation` against the case's own whole tumour resampled there).
    Prints one line per case and, per class, the mean enrichment and the pointing game over the cases;
    writes ``per_class.json`` into ``--out``."""
    from braingui.explanation import brain_mask, localisation
    from braingui.inference.manifest import read_bundle
    from braingui.inference.predictor import Predictor
    from braingui.preprocess import prepare_classification
    from training import common

    args.out.mkdir(parents=True, exist_ok=True)
    log = common.file_logger(f"training.cam_study.{args.out}", args.out / "per_class.log")
    bundle = read_bundle(args.cls_bundle)
    model = Predictor("cpu").load(bundle)
    method, layer = model.cam_choice((args.methods or [None])[0], (args.layers or [None])[0])
    classes = list(bundle.manifest.classification.classes)
    args.no_synthetic = True
    plan = [c for c in case_plan(args, dict(bundle.manifest.model_card), log) if c["set"] == "real"]
    if not plan:
        raise SystemExit(f"--per-class: no real cases in {args.brats}")
    rows = []
    for c in plan:
        case = load_ref(c["ref"])
        inp = prepare_classification(case.stack(model.prep.channels), model.prep)
        wt = inp.grid_map.forward(lab.regions(case.labels)["WT"].astype(np.float32)) > 0.5
        brain = brain_mask(inp.array)
        row = {"case": c["case"], "grade": c["grade"], "maps": {}}
        for k, code in enumerate(classes):
            probs, cam = model.explain(inp.array, class_index=k, method=method, layer=layer)
            loc = localisation(cam, wt, brain)
            row["maps"][code] = {"enrichment": loc.enrichment, "mass_in_wt": loc.mass_in_wt, "peak_in_wt": loc.peak_in_wt}
        row["probabilities"] = {code: float(p) for code, p in zip(classes, probs)}
        row["predicted"] = classes[int(np.argmax(probs))]
        rows.append(row)
        print(f"{c['case']:26s} {c['grade'] or '?':3s} predicted {row['predicted']} "
              + " | ".join(f"{code}: enrichment {m['enrichment']:5.2f}, peak {'in WT ' if m['peak_in_wt'] else 'outside'}"
                           for code, m in row["maps"].items()), flush=True)
    summary = {}
    for code in classes:
        e = [r["maps"][code]["enrichment"] for r in rows]
        hits = sum(bool(r["maps"][code]["peak_in_wt"]) for r in rows)
        summary[code] = {"mean_enrichment": float(np.nanmean(e)), "peak_in_wt": hits, "n": len(rows)}
        print(f"map of class {code} ({method} at {layer}): mean enrichment {summary[code]['mean_enrichment']:.2f}, "
              f"hottest voxel in WT {hits}/{len(rows)}")
    common.write_json(args.out / "per_class.json", {"bundle": bundle.name, "sha256": bundle.manifest.sha256,
                                                   "method": method, "layer": layer, "grid": "classifier input",
                                                   "summary": summary, "cases": rows})
    return 0


def layer_study(args: argparse.Namespace) -> int:
    """The layer-variant study and occlusion test (see the module docstring)."""
    layers = args.layers or LEGACY_LAYERS
    from braingui.inference.manifest import read_bundle
    from braingui.inference.predictor import Predictor
    from braingui.preprocess import prepare_classification

    bundle = read_bundle(args.cls_bundle)
    model = Predictor("cpu").load(bundle)
    network = model.network
    for prm in network.parameters():
        prm.requires_grad_(True)
    cases = cpm_radpath_cases(args.cpm)[: args.max_cases]
    rows = []
    for lc in cases:
        case = load_ref(lc.ref)
        inp = prepare_classification(case.stack(model.prep.channels), model.prep)
        wt = inp.grid_map.forward(lab.regions(case.labels)["WT"].astype(np.float32)) > 0.5
        x = model.tensor(inp.array)
        row = {"case": lc.ref.name, "true": lc.label}
        for layer in layers:
            for target in ("logit", "logprob", "hires"):
                cam, c = grad_cam(network, x, layer, target)
                row[f"{target}@{layer}"] = round(cam_mass_inside(cam, wt), 4)
                row["predicted"] = bundle.manifest.classification.classes[c]
                if layer == bundle.manifest.classification.cam_layer and target == "logit":
                    _, medcam_map = model.explain(inp.array, c, method="gradcam", layer=layer)
                    row["corr_with_app_map"] = round(float(np.corrcoef(cam.ravel(), medcam_map.ravel())[0, 1]), 4)
        row["occluded"] = occluded_prediction(network, x, wt, bundle.manifest.classification.classes)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if "@" in k]
    classes = bundle.manifest.classification.classes
    occlusion = {c: {k: sum(r["occluded"] == k for r in rows if r["true"] == c) for k in classes}
                 for c in sorted({r["true"] for r in rows})}
    summary = {"bundle": bundle.name, "occluded_prediction_by_true_class": occlusion, "n_cases": len(rows), "grid": "classifier input grid",
               "mean_cam_mass_in_wt": {k: float(np.mean([r[k] for r in rows])) for k in keys},
               "mean_by_class": {c: {k: float(np.mean([r[k] for r in rows if r["true"] == c])) for k in keys}
                                 for c in sorted({r["true"] for r in rows})},
               "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cam_study.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    return 0



SETS = {"synthetic": "held-out synthetic phantoms (the model card's generator)",
        "real": "real BraTS 2018 cases, their own expert label maps"}


def heldout_cases(folder: Path, card: dict, log) -> list:
    """The synthetic held-out set's labelled cases; regenerated from the card's generator settings when missing."""
    from training.synthetic_types import GENERATOR_VERSION, generate

    if not (folder / "training_data_classification_labels.csv").exists():
        gen = card.get("evaluation", {}).get("generator")
        if not gen:
            raise SystemExit(f"{folder}: no held-out set there and no generator recorded in the model card")
        if gen.get("version", GENERATOR_VERSION) != GENERATOR_VERSION:
            raise SystemExit(f"{folder}: missing, and the card's set was made by synthetic_types version "
                             f"{gen.get('version')}, this code is version {GENERATOR_VERSION}")
        log.info("regenerating the synthetic held-out set %s in %s", gen, folder)
        generate(folder, per_class=gen["per_class"], seed=gen["seed"], shape=tuple(gen["shape"]),
                 spacing=tuple(gen["spacing"]), prefix=gen["prefix"], progress=False)
    return cpm_radpath_cases(folder)


def real_case_names(items: list[str] | None) -> set[str] | None:
    """``--real-cases``: case names, with any ``*.json`` among them read as a real_types record."""
    if not items:
        return None
    names: set[str] = set()
    for item in items:
        if item.endswith(".json"):
            names |= set(json.loads(Path(item).read_text())["held_out_cases"])
        else:
            names.add(item)
    return names


def case_plan(args: argparse.Namespace, card: dict, log) -> list[dict]:
    """The cases to score, in order (real first): set, case, ref, true class, grade, faith (deletion + randomisation)."""
    from training.data import brats_cases

    plan = []
    if args.brats and args.brats.is_dir():
        grades_csv = args.brats / "grades.csv"
        grades = {}
        if grades_csv.is_file():
            import csv

            with open(grades_csv, newline="") as f:
                grades = {r["case_id"]: r["grade"] for r in csv.DictReader(f) if "case_id" in r and "grade" in r}
        refs = brats_cases(args.brats)
        wanted = real_case_names(args.real_cases)
        if wanted is not None:
            missing = sorted(set(wanted) - {r.name for r in refs})
            if missing:
                raise SystemExit(f"{args.brats}: no case(s) {', '.join(missing)}")
            refs = [r for r in refs if r.name in wanted]
        refs = refs[: args.max_cases]
        n_faith = len(refs) if args.faith_real is None else args.faith_real
        plan += [{"set": "real", "case": r.name, "ref": r, "true": "", "grade": grades.get(r.name, ""),
                  "faith": i < n_faith} for i, r in enumerate(refs)]
    else:
        log.info("real cases: %s absent; the real set is skipped", args.brats)
    synth = [] if args.no_synthetic else heldout_cases(args.heldout, card, log)[: args.max_cases]
    seen: dict[str, int] = {}
    for lc in synth:
        seen[lc.label] = seen.get(lc.label, 0) + 1
        plan.append({"set": "synthetic", "case": lc.ref.name, "ref": lc.ref, "true": lc.label, "grade": "",
                     "faith": seen[lc.label] <= args.faith_per_class})
    return sorted(plan, key=lambda c: (c["set"] != "real", not c["faith"]))


def _read_done(path: Path, n_pairs: int) -> list[dict]:
    """Rows of the cases already complete in the per-case CSV (a case with fewer than ``n_pairs`` rows is redone)."""
    import csv

    from training.cam_table import parse_row

    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [parse_row(r) for r in csv.DictReader(f)]
    count: dict[tuple[str, str], int] = {}
    for r in rows:
        count[(r["set"], r["case"])] = count.get((r["set"], r["case"]), 0) + 1
    return [r for r in rows if count[(r["set"], r["case"])] == n_pairs]


def _write_csv(path: Path, rows: list[dict], fields) -> None:
    import csv
    import io

    from braingui import atomic

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic.write_text(buf.getvalue(), path)


def run_table(args: argparse.Namespace) -> int:
    """``--table``: every method x layer on both sets, printed, written, the default chosen (module docstring)."""
    import time

    from braingui.explanation import brain_mask
    from braingui.inference.cam_methods import METHODS
    from braingui.inference.manifest import read_bundle
    from braingui.inference.predictor import Predictor
    from braingui.preprocess import prepare_classification
    from training import common
    from training.cam_table import FIELDS, RULE, case_rows, choose_default, format_table, pairs_of, summarise

    args.out.mkdir(parents=True, exist_ok=True)
    log = common.file_logger(f"training.cam_study.{args.out}", args.out / "cam_table.log")
    bundle = read_bundle(args.cls_bundle)
    model = Predictor("cpu").load(bundle)
    network = model.network.eval()
    for prm in network.parameters():  # no weight gradients: the maps are the same, the backward cheaper
        prm.requires_grad_(False)
    classes = list(bundle.manifest.classification.classes)
    pairs = pairs_of(network, args.methods or METHODS, args.layers)
    settings = {"bundle": bundle.name, "sha256": bundle.manifest.sha256, "localisation_grid": "case",
                "pairs": [list(p) for p in pairs],
                "randomisation_draws": args.draws, "random_deletion_draws": args.random_draws,
                "faith_per_class": args.faith_per_class, "faith_real": args.faith_real, "max_cases": args.max_cases}
    if args.real_cases:  # only when given, so that tables made before these options still resume
        settings["real_cases"] = sorted(real_case_names(args.real_cases))
    if args.no_synthetic:
        settings["no_synthetic"] = True
    settings_path = args.out / "cam_table_settings.json"
    if settings_path.is_file() and json.loads(settings_path.read_text()) != settings:
        raise SystemExit(f"{args.out} holds a table made with other settings ({settings_path}); "
                         "give another --out or delete it")
    common.write_json(settings_path, settings)
    plan = case_plan(args, dict(bundle.manifest.model_card), log)
    csv_path = args.out / "cam_table_per_case.csv"
    rows = _read_done(csv_path, len(pairs))
    done = {(r["set"], r["case"]) for r in rows}
    todo = [c for c in plan if (c["set"], c["case"]) not in done]
    log.info("%s: %d method x layer pairs; %d cases planned, %d already in %s, %d to do (torch threads %d)",
             bundle.name, len(pairs), len(plan), len(plan) - len(todo), csv_path, len(todo), torch.get_num_threads())
    t_start = time.time()
    for i, c in enumerate(todo):
        t0 = time.time()
        case = load_ref(c["ref"])
        stack = case.stack(model.prep.channels)
        inp = prepare_classification(stack, model.prep)
        wt_case = lab.regions(case.labels)["WT"]
        wt = inp.grid_map.forward(wt_case.astype(np.float32)) > 0.5
        meta = {k: c[k] for k in ("set", "case", "true", "grade")}
        new = case_rows(network, model.tensor(inp.array), wt, brain_mask(inp.array), classes, pairs, c["faith"],
                        args.draws, args.random_draws, meta, (inp.grid_map, wt_case, brain_mask(stack)))
        del stack
        rows += new
        _write_csv(csv_path, rows, FIELDS)
        elapsed = time.time() - t_start
        log.info("%d/%d %s %s%s: predicted %s, %.0f s; done in about %.0f min", i + 1, len(todo), c["set"], c["case"],
                 " (+ deletion, randomisation)" if c["faith"] else "", new[0]["predicted"], time.time() - t0,
                 elapsed / (i + 1) * (len(todo) - i - 1) / 60)
    planned = {(c["set"], c["case"]) for c in plan}
    rows = [r for r in rows if (r["set"], r["case"]) in planned]
    summary = summarise(rows, pairs)
    _write_csv(args.out / "cam_table_summary.csv", summary, list(summary[0]) if summary else ["set"])
    sets = [s for s in SETS if any(r["set"] == s for r in rows)]
    choice = choose_default(summary, "real" if "real" in sets else "synthetic") if summary else None
    seconds = {s: {"faith": float(np.mean([r["seconds"] for r in rows if r["set"] == s and r["faith"]] or [np.nan])),
                   "localisation_only": float(np.mean([r["seconds"] for r in rows if r["set"] == s and not r["faith"]]
                                                      or [np.nan]))} for s in sets}
    report = {"settings": settings, "sets": {s: SETS[s] for s in sets},
              "grid": "localisation on the case grid (as the app's Explanation panel: the layer map resampled "
                      "once, braingui.inference.pipeline.cam_to_case); deletion and randomisation on the "
                      "classifier input grid (as the app)",
              "map": "the predicted class's map; brain = voxels non-zero in any sequence; WT = the case's own "
                     "label map", "rule": RULE, "default": choice,
              "seconds_per_case": seconds, "summary": summary, "per_case": rows}
    common.write_json(args.out / "cam_table.json", report)
    for s in sets:
        n = len({r["case"] for r in rows if r["set"] == s})
        nf = len({r["case"] for r in rows if r["set"] == s and r["faith"]})
        cost = [f"{seconds[s][k]:.0f} s per case {w}" for k, w in (("faith", "with them"), ("localisation_only", "without"))
                if np.isfinite(seconds[s][k])]
        print(f"\n{s}: {n} {SETS[s]}; deletion and randomisation on {nf} of them ({', '.join(cost)})")
        print(format_table(summary, s))
    if choice:
        print(f"\ndefault by the rule ({RULE}):\n  {choice['method']} at {choice['layer']}"
              f" ({choice['passed']} pairs passed; median pointing game {100 * choice['median_pointing_game']:.0f} %"
              f"{'; relaxed: ' + choice['relaxed'] if choice['relaxed'] else ''})")
        print(f"  per case on the {choice['set']} set:")
        for r in rows:
            if r["set"] == choice["set"] and (r["method"], r["layer"]) == (choice["method"], choice["layer"]):
                print(f"    {r['case']:<24} {r['grade'] or r['true']:>3} predicted {r['predicted']} "
                      f"mass in WT {r['mass_in_wt']:.3f} WT/brain {r['wt_fraction_of_brain']:.3f} "
                      f"enrichment {r['enrichment']:.2f} hottest voxel in WT {r['peak_in_wt']}")
    log.info("wrote %s", args.out)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
