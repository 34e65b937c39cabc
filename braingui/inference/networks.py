"""The networks a model bundle can name, built from MONAI with the manifest's keyword arguments.

* ``SegResNetVAE`` — Myronenko 2018 (the paper's segmentation network); the VAE branch regularises the
  encoder during training only, so inference loads its weights into a plain ``SegResNet``.
* ``SegResNet`` — also the network of MONAI's ``brats_mri_segmentation`` model-zoo bundle.
* ``DenseNet121`` / ``DenseNet169`` — 3D DenseNet-BC (the paper's classifier: DenseNet169, growth 32,
  dropout 0.2, 4 input channels, 3 classes).
* ``DenseNet`` — MONAI's generic DenseNet (``block_config`` etc. given in full), for small test and
  reduced-size classifiers.
"""

from __future__ import annotations

from typing import Any

import torch

VAE_ONLY_KWARGS = ("input_image_size", "vae_estimate_std", "vae_default_std", "vae_nz")


def _registry() -> dict[str, Any]:
    from monai.networks import nets

    return {
        "SegResNet": nets.SegResNet,
        "SegResNetVAE": nets.SegResNetVAE,
        "DenseNet121": nets.DenseNet121,
        "DenseNet169": nets.DenseNet169,
        "DenseNet": nets.DenseNet,
    }


NETWORK_NAMES = ("SegResNet", "SegResNetVAE", "DenseNet121", "DenseNet169", "DenseNet")


def _fix_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """JSON lists -> tuples where MONAI expects tuples (``norm``, ``blocks_down``...)."""
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        out[k] = v
    return out


def build_network(name: str, kwargs: dict[str, Any], for_inference: bool = False) -> torch.nn.Module:
    """Build a network by name.

    Args:
        name: one of :data:`NETWORK_NAMES`.
        kwargs: constructor keyword arguments (from a manifest; JSON lists are accepted).
        for_inference: build a plain ``SegResNet`` for a ``SegResNetVAE`` (same weights, no VAE branch).

    Raises:
        KeyError: unknown network name.
    """
    registry = _registry()
    if name not in registry:
        raise KeyError(f"unknown network {name!r} (known: {', '.join(NETWORK_NAMES)})")
    kwargs = _fix_kwargs(kwargs)
    if for_inference and name == "SegResNetVAE":
        name = "SegResNet"
        kwargs = {k: v for k, v in kwargs.items() if k not in VAE_ONLY_KWARGS}
    return registry[name](**kwargs)


def is_vae_key(key: str) -> bool:
    """State-dict keys of the VAE branch (absent from the inference network)."""
    return key.startswith("vae_")
