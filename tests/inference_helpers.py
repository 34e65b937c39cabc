"""Tiny model bundles and cases for the inference, CLI and GUI tests (CPU, well under a second each).

* :func:`write_tiny_case` — a 32x36x28 synthetic phantom case at 6 mm, stored LPS like BraTS 2018.
* :func:`make_tiny_segmentation_bundle` — a real MONAI ``SegResNet`` in a real bundle. With
  ``rule="intensity"`` (default) its weights are **set by hand** so that it segments the phantom's
  tumour from intensity, deterministically (no training):

  every convolution is zero except the centre tap of ``convInit`` and the final 1x1 convolution; the
  residual blocks are then identities, the deeper levels carry zeros and the additive skip passes the
  ``convInit`` features to ``conv_final`` (BatchNorm with running mean 0 / variance 1, so an affine map,
  then ReLU, then a 1x1 convolution). The network is thus a per-voxel one-hidden-layer MLP on the
  z-scored modalities. Its six hidden units make three soft steps (ramp width 0.25 z):

  - ``WT``: ``flair + 0.5 * t2 > 1.0``  (edema, core and necrosis are bright in FLAIR and/or T2)
  - ``ET``: ``t1ce > 2.0``              (the enhancing rim)
  - ``TC``: ``ET`` or (``WT`` and ``t1 + t1ce < -0.75``)  (core is dark in T1 / T1ce, edema is not)

  Thresholds are in z-score units (per channel over the brain), read off the phantom's tissue table:
  on 24-96 voxel phantoms of several seeds, the classes sit >= 0.3 z from each threshold.
  ``rule="random"``: a seeded random GroupNorm SegResNet (init 8), for geometry and round-trip tests.
* :func:`make_tiny_classification_bundle` — a seeded random MONAI ``DenseNet`` (2 dense blocks,
  growth 4, 24x28x24 input, classes A/O/G, Grad-CAM at ``features.denseblock1``); ``favour="G"`` adds
  a bias so that class wins.

Each factory returns the bundle folder; put several in one parent folder to make a models location
(:func:`make_models_dir`). :func:`single_torch_thread` is an autouse fixture: import it into a test module
to run that module's tiny networks on one torch thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from braingui.inference.bundle import write_bundle
from braingui.inference.networks import build_network
from braingui.phantom import write_case

TINY_SHAPE = (32, 36, 28)
TINY_SPACING = (6.0, 6.0, 6.0)
CHANNELS = ["flair", "t1", "t1ce", "t2"]
REGIONS = ["TC", "WT", "ET"]
CLASSES = ["A", "O", "G"]
CLS_SHAPE = (24, 28, 24)

INTENSITY_KWARGS = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "init_filters": 8,
                    "blocks_down": [1, 1], "blocks_up": [1], "norm": "BATCH"}
RANDOM_KWARGS = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "init_filters": 8,
                 "blocks_down": [1, 1, 1], "blocks_up": [1, 1], "norm": ["GROUP", {"num_groups": 4}]}
DENSENET_KWARGS = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "init_features": 8,
                   "growth_rate": 4, "block_config": [2, 2], "bn_size": 2, "dropout_prob": 0.0}


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    """One torch thread while a test module runs (import it into the module to use it).

    The tiny networks gain nothing from threads, and on busy cores the thread pool's waits cost more
    than the work (the inference tests ran ~1.7x faster in wall time on 2 loaded cores).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_tiny_case(folder: str | Path, shape=TINY_SHAPE, spacing=TINY_SPACING, seed: int = 0,
                    case_id: str = "SYNTHETIC_tiny", **phantom_options: Any) -> Path:
    """Write a small phantom case (LPS, BraTS 2018 names, with its ``_seg`` labels); returns the folder."""
    write_case(folder, case_id=case_id, shape=shape, spacing=spacing, seed=seed, **phantom_options)
    return Path(folder)


def segmentation_manifest(name: str, network: str, kwargs: dict, crop: Any = "bbox", roi_size=None,
                          zoom: float = 1.0, sw_overlap: float = 0.25, channels=CHANNELS, regions=REGIONS,
                          demo: bool = True) -> dict:
    """A segmentation manifest (without the ``weights`` section, which ``write_bundle`` fills in)."""
    return {
        "format_version": 1, "name": name, "task": "segmentation",
        "network": {"name": network, "kwargs": kwargs},
        "input": {"channels": list(channels), "normalisation": "zscore_nonzero", "crop": crop, "multiple": 8,
                  "zoom": zoom, "roi_size": roi_size, "sw_overlap": sw_overlap},
        "output": {"activation": "sigmoid", "threshold": 0.5, "channels": list(regions)},
        "model_card": {"summary": "tiny test network", "training_data": "none (weights set by hand or random)",
                       "intended_use": "tests only - not for clinical use", "demo": demo},
    }


def _step_units(weight: torch.Tensor, gamma_beta: list, unit: int, coef: dict[int, float], offset: float,
                k: float = 4.0) -> None:
    """Hidden units ``unit``, ``unit+1`` so that ``h[unit] - h[unit+1]`` is a 0->1 step of
    ``sum(coef[c] * x_c) - offset`` (width 1/k)."""
    for u, extra in ((unit, 0.0), (unit + 1, -1.0)):
        for c, w in coef.items():
            weight[u, c, 1, 1, 1] = k * w
        gamma_beta.append((u, 1.0, -k * offset + extra))


def intensity_rule_state_dict() -> dict[str, torch.Tensor]:
    """The hand-set weights of the ``rule="intensity"`` SegResNet (see the module docstring)."""
    net = build_network("SegResNet", INTENSITY_KWARGS)
    state = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    for k, v in state.items():
        if k.endswith("running_var") or (k.endswith(".weight") and v.ndim == 1):
            v.fill_(1.0)  # BatchNorm: variance 1, scale 1
    w = state["convInit.conv.weight"]
    flair, t1, t1ce, t2 = range(4)
    units: list = []
    _step_units(w, units, 0, {flair: 1.0, t2: 0.5}, 1.0)      # WT step
    _step_units(w, units, 2, {t1: -1.0, t1ce: -1.0}, 0.75)    # "dark in T1 and T1ce" step
    _step_units(w, units, 4, {t1ce: 1.0}, 2.0)                # ET step
    for u, gamma, beta in units:
        state["conv_final.0.weight"][u] = gamma
        state["conv_final.0.bias"][u] = beta
    out_w, out_b = state["conv_final.2.conv.weight"], state["conv_final.2.conv.bias"]
    steps = {"WT": (0, 1), "DARK": (2, 3), "ET": (4, 5)}

    def add(row: int, step: str, scale: float) -> None:
        pos, neg = steps[step]
        out_w[row, pos, 0, 0, 0] += scale
        out_w[row, neg, 0, 0, 0] -= scale

    tc, wt, et = (REGIONS.index(r) for r in ("TC", "WT", "ET"))
    add(wt, "WT", 8.0)
    out_b[wt] = -4.0
    add(et, "ET", 8.0)
    out_b[et] = -4.0
    for step, scale in (("WT", 8.0), ("DARK", 8.0), ("ET", 16.0)):  # TC: WT + DARK + 2 ET > 1.5
        add(tc, step, scale)
    out_b[tc] = -12.0
    return state


def make_tiny_segmentation_bundle(folder: str | Path, name: str = "tiny-segresnet", rule: str = "intensity",
                                  seed: int = 0, fp16: bool = False, crop: Any = "bbox", roi_size=None,
                                  zoom: float = 1.0, sw_overlap: float = 0.25, network: str = "SegResNet",
                                  demo: bool = True) -> Path:
    """Write a tiny segmentation bundle into ``folder`` (see the module docstring); returns ``folder``.

    Args:
        rule: ``"intensity"`` (hand-set, segments the phantom) or ``"random"`` (seeded random weights).
        network: ``"SegResNet"``, or ``"SegResNetVAE"`` (random rule only: the weights then include
            ``vae_*`` keys, as a training checkpoint's would).
        crop, roi_size, zoom, sw_overlap: the manifest's input policy.
    """
    if rule == "intensity":
        kwargs, state = dict(INTENSITY_KWARGS), intensity_rule_state_dict()
    elif rule == "random":
        kwargs = dict(RANDOM_KWARGS)
        if network == "SegResNetVAE":
            kwargs.update(input_image_size=[16, 16, 16], vae_nz=8)
        torch.manual_seed(seed)
        state = build_network(network, kwargs).state_dict()
    else:
        raise ValueError(f"rule must be 'intensity' or 'random', got {rule!r}")
    if rule == "intensity" and network != "SegResNet":
        raise ValueError("the intensity rule is a plain SegResNet")
    manifest = segmentation_manifest(name, network, kwargs, crop, roi_size, zoom, sw_overlap, demo=demo)
    write_bundle(folder, manifest, state, fp16=fp16)
    return Path(folder)


def classification_manifest(name: str, kwargs: dict = DENSENET_KWARGS, shape=CLS_SHAPE,
                            layer: str = "features.denseblock1", demo: bool = True) -> dict:
    """A classification manifest for a MONAI ``DenseNet`` (without the ``weights`` section)."""
    return {
        "format_version": 1, "name": name, "task": "classification",
        "network": {"name": "DenseNet", "kwargs": dict(kwargs)},
        "input": {"channels": list(CHANNELS), "normalisation": "zscore_nonzero", "shape": list(shape),
                  "tolerance": 1e-8},
        "output": {"activation": "softmax", "classes": list(CLASSES),
                   "class_titles": {"A": "astrocytoma", "O": "oligodendroglioma", "G": "glioblastoma"}},
        "gradcam": {"layer": layer},
        "model_card": {"summary": "tiny random test network", "training_data": "none",
                       "intended_use": "tests only - not for clinical use", "demo": demo},
    }


def tiny_densenet(seed: int = 0, favour: str | None = None) -> torch.nn.Module:
    """The seeded random tiny DenseNet of :func:`make_tiny_classification_bundle` (eval mode)."""
    torch.manual_seed(seed)
    net = build_network("DenseNet", DENSENET_KWARGS)
    if favour is not None:
        with torch.no_grad():
            net.class_layers.out.bias[CLASSES.index(favour)] += 10.0
    return net.eval()


def make_tiny_classification_bundle(folder: str | Path, name: str = "tiny-densenet", seed: int = 0,
                                    favour: str | None = None, fp16: bool = False, shape=CLS_SHAPE,
                                    layer: str = "features.denseblock1", demo: bool = True) -> Path:
    """Write a tiny classification bundle into ``folder``; returns ``folder``.

    Args:
        seed: weights seed.
        favour: a class code (``"A"``, ``"O"``, ``"G"``) that the bias makes the prediction.
        shape: classifier input size (must stay >= 16 per axis for the two pooling stages).
        layer: the Grad-CAM layer written into the manifest.
    """
    write_bundle(folder, classification_manifest(name, shape=shape, layer=layer, demo=demo),
                 tiny_densenet(seed, favour).state_dict(), fp16=fp16)
    return Path(folder)


def make_models_dir(parent: str | Path, seg: bool = True, cls: bool = True, **seg_options: Any) -> Path:
    """A models location holding a tiny segmentation and/or classification bundle; returns ``parent``."""
    parent = Path(parent)
    if seg:
        make_tiny_segmentation_bundle(parent / "tiny-segresnet", **seg_options)
    if cls:
        make_tiny_classification_bundle(parent / "tiny-densenet")
    return parent
