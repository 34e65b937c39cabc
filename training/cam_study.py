"""How well does Grad-CAM localise the tumour? A small study on a classification bundle (analysis only).

For each case of a labelled set (e.g. the synthetic held-out set) it computes, on the classifier's input
grid, the fraction of the Grad-CAM mass (ReLU, min-max normalised, trilinear upsampling, as medcam)
inside the true whole tumour for several variants of the target score and layer:

* ``logit`` — the gradient of the predicted class's logit (Grad-CAM as in the paper / medcam);
* ``logprob`` — the gradient of its log-softmax, ``y_c - logsumexp(y)``: evidence *for c against the
  other classes*; features that raise every logit alike cancel out;
* ``hires`` — HiResCAM (Draelos & Carin 2020): the logit's gradient times the activation element-wise,
  summed over channels, instead of Grad-CAM's spatially averaged channel weights;
* each at the layers given (default the paper's ``features.denseblock1`` and ``features.denseblock2``);
* ``occluded`` — an occlusion test, no gradients: the class the network predicts when the whole tumour is
  replaced by the mean of the other brain voxels of each channel. A class it still predicts without the
  tumour is decided by evidence outside it, and no heat map can then be "inside the tumour".

The ``logit`` variant at ``features.denseblock1`` is what the app shows (checked against the medcam
adapter's map: the correlation is printed). Nothing here changes the app.

    python -m training.cam_study --cls-bundle braingui/models/demo-densenet169 --cpm runs/data/synth_heldout_v2 \\
        --out runs/cam_study
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.cam_study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cls-bundle", type=Path, required=True)
    p.add_argument("--cpm", type=Path, required=True, help="labelled set with label maps (synthetic_types layout)")
    p.add_argument("--layers", nargs="+", default=["features.denseblock1", "features.denseblock2"])
    p.add_argument("--max-cases", type=int, default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
        for layer in args.layers:
            for target in ("logit", "logprob", "hires"):
                cam, c = grad_cam(network, x, layer, target)
                row[f"{target}@{layer}"] = round(cam_mass_inside(cam, wt), 4)
                if layer == "features.denseblock1" and target == "logit":
                    _, medcam_map = model.explain(inp.array, c)
                    row["corr_with_app_map"] = round(float(np.corrcoef(cam.ravel(), medcam_map.ravel())[0, 1]), 4)
                    row["predicted"] = bundle.manifest.classification.classes[c]
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


if __name__ == "__main__":
    raise SystemExit(main())
