"""Export a trained checkpoint as a model bundle (manifest with model card + sha256-checked weights).

Reads ``final.pt`` / ``best.pt`` of :mod:`training.train_segmentation` or
:mod:`training.train_classification` (``torch.load(..., weights_only=True)``), builds the manifest the
app reads (:mod:`braingui.inference.manifest`) with a model card (training data, citations, configuration,
held-out cases, metrics from :mod:`training.evaluate` when ``--metrics`` is given, intended use) and writes
it with :func:`braingui.inference.bundle.write_bundle`, optionally storing the weights as fp16.

A segmentation checkpoint of a ``SegResNetVAE`` is exported without its VAE branch (used only in
training) as a plain ``SegResNet`` unless ``--keep-vae``; the model card records that it was trained with
the VAE regulariser.

Example::

    python -m training.export_bundle --checkpoint runs/seg16_z05/final.pt --name demo-segresnet \\
        --out braingui/models/demo-segresnet --fp16 --metrics runs/eval_seg/metrics.json \\
        --data ../shared/data/brats2018    # input_statistics of the real training cases (quality check)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from braingui import __version__
from braingui.inference.manifest import CAM_METHODS, DEFAULT_CAM_LAYER

DEFAULT_CAM_METHOD = "hirescam-contrastive"
"""The heat-map method new classification bundles default to: the best of ``python -m training.cam_study --table``
on the real held-out cases (training/README.md)."""

INTENDED_USE = "research demonstration - not for clinical use"
BRATS_SOURCE = ("the BraTS 2018 challenge training set (Multimodal Brain Tumor Segmentation Challenge 2018; "
                "Menze et al. 2015, Bakas et al. 2017, 2018; https://www.med.upenn.edu/sbia/brats2018.html)")
"""The public source of the real training cases, named in the model card (never a local path)."""
SYNTHETIC_TYPES_SOURCE = "synthetic tumour-type phantoms made by training/synthetic_types.py (no patient data)"
"""The classifier's stand-in data, named in the model card."""
BRATS_CITATIONS = [
    "B. H. Menze et al., \"The Multimodal Brain Tumor Image Segmentation Benchmark (BRATS),\" "
    "IEEE Transactions on Medical Imaging 34(10), 2015.",
    "S. Bakas et al., \"Advancing The Cancer Genome Atlas glioma MRI collections with expert segmentation "
    "labels and radiomic features,\" Scientific Data 4, 170117, 2017.",
    "S. Bakas et al., \"Identifying the Best Machine Learning Algorithms for Brain Tumor Segmentation, "
    "Progression Assessment, and Overall Survival Prediction in the BRATS Challenge,\" arXiv:1811.02629, 2018.",
]
PAPER_CITATION = ("S. Dasanayaka et al., \"Interpretable Machine Learning for Brain Tumor Analysis Using MRI\" "
                  "(the paper this app follows).")
MYRONENKO_CITATION = ("A. Myronenko, \"3D MRI brain tumor segmentation using autoencoder regularization,\" "
                      "BrainLes 2018, LNCS 11384, 2019.")
DENSENET_CITATION = ("G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger, \"Densely Connected Convolutional "
                     "Networks,\" CVPR 2017.")
GRADCAM_CITATIONS = [
    "R. R. Selvaraju et al., \"Grad-CAM: Visual Explanations from Deep Networks via Gradient-Based "
    "Localization,\" ICCV 2017.",
    "K. Gotkowski et al., \"M3d-CAM: A PyTorch library to generate 3D data attention maps for medical deep "
    "learning,\" arXiv:2007.00453, 2020.",
]
CPM_CITATION = ("T. Kurc et al., \"Segmentation and Classification in Digital Pathology for Glioma Research: "
                "Challenges and Deep Learning Approaches,\" Frontiers in Neuroscience 14, 2020 (CPM-RadPath; "
                "the data set the synthetic stand-in replaces).")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, read with ``weights_only=True``.

    ``final.pt`` / ``best.pt`` carry their metadata; for the ``checkpoint.pt`` of a run still in progress
    the metadata is rebuilt from the run's ``config.json`` (a snapshot export).
    """
    path = Path(path)
    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict) and "model" in data and "network" not in data and "step" in data:
        data = _snapshot(path, data)
    if not isinstance(data, dict) or "model" not in data or "network" not in data:
        raise SystemExit(f"{path}: not a final.pt / best.pt / checkpoint.pt of braingui's training scripts")
    return data


def _snapshot(path: Path, state: dict) -> dict[str, Any]:
    """Metadata of an in-progress run's ``checkpoint.pt`` from its ``config.json``."""
    cfg_path = path.parent / "config.json"
    if not cfg_path.exists():
        raise SystemExit(f"{path}: a checkpoint.pt needs the run's config.json beside it")
    cfg = json.loads(cfg_path.read_text())
    step = int(state["step"])
    if "init_filters" in cfg:  # segmentation run
        from training.train_segmentation import REGION_ORDER, SegConfig

        seg = SegConfig(cfg["init_filters"], not cfg["no_vae"], cfg["vae_nz"], cfg["dropout"], tuple(cfg["crop"]))
        name, kwargs = seg.network()
        log = (path.parent / "train.log").read_text() if (path.parent / "train.log").exists() else ""
        cases = {}
        for line in log.splitlines():
            for key, tag in (("train_cases", "train cases ("), ("val_cases", "validation cases (")):
                if tag in line:
                    cases[key] = [c.strip() for c in line.split("): ", 1)[1].split(",") if c.strip()]
        return {"model": state["model"], "network": name, "kwargs": kwargs, "regions": list(REGION_ORDER),
                "prep": {"channels": ["flair", "t1", "t1ce", "t2"], "crop": "bbox", "multiple": 8,
                         "zoom": cfg["zoom"]}, "steps": step, "config": cfg, "snapshot": True, **cases}
    raise SystemExit(f"{path}: export a classification run's best.pt or final.pt (saved after each validation)")


def task_of(ckpt: dict) -> str:
    return "segmentation" if ckpt["network"].startswith("SegResNet") else "classification"


def segmentation_manifest(ckpt: dict, name: str, keep_vae: bool, roi_size, sw_overlap: float) -> tuple[dict, dict]:
    """Manifest (without weights) and the state dict to write, for a segmentation checkpoint."""
    from braingui.inference.networks import VAE_ONLY_KWARGS, is_vae_key

    network, kwargs, state = ckpt["network"], dict(ckpt["kwargs"]), ckpt["model"]
    if network == "SegResNetVAE" and not keep_vae:
        network = "SegResNet"
        kwargs = {k: v for k, v in kwargs.items() if k not in VAE_ONLY_KWARGS}
        state = {k: v for k, v in state.items() if not is_vae_key(k)}
    prep = ckpt["prep"]
    manifest = {
        "format_version": 1, "name": name, "task": "segmentation",
        "network": {"name": network, "kwargs": kwargs},
        "input": {"channels": list(prep["channels"]), "normalisation": "zscore_nonzero", "crop": prep["crop"],
                  "multiple": int(prep.get("multiple", 8)), "zoom": float(prep.get("zoom", 1.0)),
                  "roi_size": list(roi_size) if roi_size else None, "sw_overlap": sw_overlap},
        "output": {"activation": "sigmoid", "threshold": 0.5, "channels": list(ckpt["regions"])},
    }
    return manifest, state


def classification_manifest(ckpt: dict, name: str, cam_layer: str, cam_method: str = "gradcam") -> tuple[dict, dict]:
    """Manifest (without weights) and the state dict to write, for a classification checkpoint."""
    prep = ckpt["prep"]
    manifest = {
        "format_version": 1, "name": name, "task": "classification",
        "network": {"name": ckpt["network"], "kwargs": dict(ckpt["kwargs"])},
        "input": {"channels": list(prep["channels"]), "normalisation": "zscore_nonzero",
                  "shape": list(prep["shape"]), "tolerance": float(prep["tolerance"])},
        "output": {"activation": "softmax", "classes": list(ckpt["classes"]),
                   "class_titles": dict(ckpt["class_titles"])},
        "gradcam": {"layer": cam_layer, "method": cam_method},
    }
    return manifest, ckpt["model"]


def _seg_data_short(train_cases: list[str]) -> str:
    """``BraTS 2018 (12 cases) + synthetic phantoms``: the training data in a few words, for the results panel."""
    real = [c for c in train_cases if not str(c).startswith("SYNTHETIC")]
    synthetic = len(train_cases) - len(real)
    return f"BraTS 2018 ({len(real)} case{'s' if len(real) != 1 else ''})" + (" + synthetic phantoms" if synthetic else "")


def model_card(ckpt: dict, task: str, metrics: dict | None, summary: str | None, training_data: str | None,
               extra: dict | None) -> dict:
    """The model card: what it is, what it was trained on, how well it does, what it is for."""
    config = dict(ckpt.get("config") or {})
    if task == "segmentation":
        kw = ckpt["kwargs"]
        card = {
            "summary": summary or (f"{ckpt['network']} (Myronenko 2018, as in the paper) with init_filters "
                                   f"{kw.get('init_filters')}, trained at zoom {ckpt['prep'].get('zoom')} on CPU; "
                                   "outputs TC / WT / ET"),
            "training_data": training_data or (f"BraTS 2018 training cases with expert labels from {BRATS_SOURCE} "
                                               "(listed in train_cases, not shipped) plus synthetic phantoms"),
            "training_data_short": _seg_data_short(ckpt.get("train_cases", [])),
            "citations": BRATS_CITATIONS + [MYRONENKO_CITATION, PAPER_CITATION],
            "train_cases": list(ckpt.get("train_cases", [])),
            "held_out_cases": list(ckpt.get("val_cases", [])),
            "configuration": {"network": ckpt["network"], "kwargs": kw, "prep": ckpt["prep"],
                              "steps": ckpt.get("steps"), **({"training": config} if config else {})},
        }
    else:
        data = ckpt.get("data", {})
        card = {
            "summary": summary or ("3D DenseNet-BC-169 (as in the paper: growth rate 32, dropout 0.2) at a reduced "
                                   f"input size {list(ckpt['prep']['shape'])} (paper: 120x148x120); classes A / O / G; Grad-CAM at the "
                                   "first dense block"),
            "training_data": training_data or (data.get("note") or "CPM-RadPath style data"),
            "training_data_short": (f"synthetic tumour-type phantoms ({len(ckpt.get('train_cases', []))} training, "
                                    "no patients)" if data.get("synthetic") else "CPM-RadPath style data"),
            "synthetic_training_data": bool(data.get("synthetic")),
            "citations": [PAPER_CITATION, DENSENET_CITATION] + GRADCAM_CITATIONS + [CPM_CITATION] + BRATS_CITATIONS,
            "split": {"train": len(ckpt.get("train_cases", [])), "validation": len(ckpt.get("val_cases", [])),
                      "test": len(ckpt.get("test_cases", []))},
            "test_cases": list(ckpt.get("test_cases", [])),
            "configuration": {"network": ckpt["network"], "kwargs": ckpt["kwargs"], "prep": ckpt["prep"],
                              "steps": ckpt.get("steps"), "best": ckpt.get("best"),
                              **({"training": config} if config else {})},
        }
    card.update({"metrics": metrics or {}, "intended_use": INTENDED_USE, "demo": True,
                 "software": f"braingui {__version__}"})
    if extra:
        card.update(extra)
    return card


def export(checkpoint: str | Path, out: str | Path, name: str, fp16: bool = False, metrics: dict | None = None,
           summary: str | None = None, training_data: str | None = None, keep_vae: bool = False,
           roi_size=None, sw_overlap: float = 0.25, cam_layer: str = DEFAULT_CAM_LAYER,
           extra_card: dict | None = None, data: str | Path | None = None, cam_method: str = DEFAULT_CAM_METHOD):
    """Write the bundle of ``checkpoint`` into ``out``; returns the written :class:`Bundle`.

    ``data``: the BraTS folder the real training cases are in; for a segmentation bundle the manifest then
    gets ``input_statistics`` from them (:func:`training_input_statistics`), which the app's
    ``input_intensity`` quality check compares each case with.
    """
    from braingui.inference.bundle import write_bundle

    ckpt = load_checkpoint(checkpoint)
    task = task_of(ckpt)
    if metrics and "card_metrics" in metrics:  # a metrics.json of training.evaluate
        metrics = metrics["card_metrics"].get(task) or {}
    if task == "segmentation":
        manifest, state = segmentation_manifest(ckpt, name, keep_vae, roi_size, sw_overlap)
    else:
        manifest, state = classification_manifest(ckpt, name, cam_layer, cam_method)
    manifest["model_card"] = model_card(ckpt, task, metrics, summary, training_data, extra_card)
    if data is not None and task == "segmentation":
        manifest["input_statistics"] = training_input_statistics(ckpt.get("train_cases", []), data,
                                                                 tuple(ckpt["prep"]["channels"]))
    return write_bundle(out, manifest, state, fp16=fp16)


def update_card(folder: str | Path, extra_card: dict, cam: dict | None = None) -> dict:
    """Merge ``extra_card`` into the model card of the bundle in ``folder`` without its checkpoint (training runs
    under runs/ do not outlive a session), and ``cam`` (``{"method": ..., "layer": ...}``, either may be left
    out) into a classification bundle's ``gradcam`` section (the app's default map): the weights are not
    touched and must still match the manifest's sha256; the manifest is re-validated and replaced atomically.
    Returns the new model card.

    Raises:
        SystemExit: weights that do not match, or a manifest that no longer validates.
    """
    from braingui.atomic import write_bytes
    from braingui.inference.bundle import sha256_file
    from braingui.inference.manifest import MANIFEST_NAME, parse_manifest, read_bundle

    folder = Path(folder)
    bundle = read_bundle(folder)
    if sha256_file(bundle.weights_path) != bundle.manifest.sha256:
        raise SystemExit(f"{bundle.weights_path}: the weights do not match the manifest's sha256; not updated")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["model_card"] = {**manifest.get("model_card", {}), **extra_card}
    if cam:
        if bundle.task != "classification":
            raise SystemExit(f"{folder}: a {bundle.task} bundle has no heat-map method to set")
        manifest["gradcam"] = {**manifest.get("gradcam", {}), **cam}
    parse_manifest(json.loads(json.dumps(manifest)), folder)
    write_bytes((json.dumps(manifest, indent=2) + "\n").encode("utf-8"), folder / MANIFEST_NAME)  # as write_bundle
    return manifest["model_card"]


def training_input_statistics(train_cases: list[str], data: str | Path, channels: tuple[str, ...]) -> dict:
    """The manifest's ``input_statistics``: z-scored intensity quantiles of the real training cases.

    Args:
        train_cases: the checkpoint's training case ids (``SYNTHETIC`` ones are skipped: the check is
            about real scans).
        data: the folder holding those cases (one sub-folder each, as :func:`training.data.brats_cases`).
        channels: the input sequences.

    Raises:
        SystemExit: none of the real training cases is in ``data``.
    """
    from braingui.intensity_stats import intensity_statistics, reference_statistics
    from training.data import brats_cases, load_ref

    wanted = {c for c in train_cases if "synthetic" not in str(c).lower()}
    refs = [r for r in brats_cases(data) if r.name in wanted]
    if not refs:
        raise SystemExit(f"--data {data}: none of the {len(wanted)} real training cases is there")
    per_case = [intensity_statistics(load_ref(r).images, channels) for r in refs]
    return reference_statistics(per_case).to_dict()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export_bundle", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--checkpoint", type=Path, help="final.pt or best.pt of a training run")
    p.add_argument("--out", type=Path, help="bundle folder to write")
    p.add_argument("--name", help="bundle name (e.g. demo-segresnet)")
    p.add_argument("--update-card", type=Path, default=None, metavar="BUNDLE",
                   help="merge --card into this existing bundle's model card (no checkpoint needed; weights kept)")
    p.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")
    p.add_argument("--metrics", type=Path, default=None,
                   help="metrics.json of training.evaluate, copied into the model card")
    p.add_argument("--card", type=Path, default=None, help="JSON object merged into the model card")
    p.add_argument("--summary", default=None)
    p.add_argument("--training-data", default=None)
    p.add_argument("--keep-vae", action="store_true", help="keep the VAE branch (SegResNetVAE) in the bundle")
    p.add_argument("--roi-size", type=int, nargs=3, default=None,
                   help="sliding-window size for segmentation (default: whole volume)")
    p.add_argument("--sw-overlap", type=float, default=0.25)
    p.add_argument("--cam-layer", default=None, help=f"the heat-map layer the app uses by default (new bundles: "
                                                     f"{DEFAULT_CAM_LAYER})")
    p.add_argument("--cam-method", default=None, choices=CAM_METHODS,
                   help=f"the heat-map method the app uses by default (new bundles: {DEFAULT_CAM_METHOD}, the best of "
                        "python -m training.cam_study --table on the real cases)")
    p.add_argument("--data", type=Path, default=None,
                   help="folder of the real training cases (segmentation): stores their intensity statistics in "
                        "the manifest (input_statistics) for the app's input quality check")
    args = p.parse_args(argv)
    if args.update_card is not None:
        cam = {k: v for k, v in (("method", args.cam_method), ("layer", args.cam_layer)) if v}
        if args.card is None and not cam:
            p.error("--update-card needs --card, --cam-method or --cam-layer")
        card = update_card(args.update_card, json.loads(args.card.read_text()) if args.card else {}, cam)
        print(f"updated the model card of {args.update_card} ({len(card)} fields)"
              + (f" and its heat-map default ({', '.join(f'{k} {v}' for k, v in cam.items())})" if cam else "")
              + "; weights unchanged")
        return 0
    if not (args.checkpoint and args.out and args.name):
        p.error("--checkpoint, --out and --name are required (or --update-card BUNDLE --card CARD)")
    metrics = json.loads(args.metrics.read_text()) if args.metrics else None
    extra = json.loads(args.card.read_text()) if args.card else None
    bundle = export(args.checkpoint, args.out, args.name, args.fp16, metrics, args.summary, args.training_data,
                    args.keep_vae, args.roi_size, args.sw_overlap, args.cam_layer or DEFAULT_CAM_LAYER, extra, args.data,
                    args.cam_method or DEFAULT_CAM_METHOD)
    size = bundle.weights_path.stat().st_size / 1e6
    print(f"wrote {bundle.task} bundle {bundle.name} to {bundle.folder} ({size:.1f} MB weights, "
          f"sha256 {bundle.manifest.sha256[:12]}...)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
