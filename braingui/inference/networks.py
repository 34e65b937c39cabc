"""The networks a model bundle can name, built from MONAI with the manifest's keyword arguments.

The registry (:data:`NETWORKS`) is a plain table, so the torch-free manifest checks read it too;
MONAI is imported only when a network is built.

* ``SegResNetVAE`` — Myronenko 2018 (the paper's segmentation network); the VAE branch regularises the
  encoder during training only, so inference loads its weights into a plain ``SegResNet``.
* ``SegResNet`` — also the network of MONAI's ``brats_mri_segmentation`` model-zoo bundle.
* ``DenseNet121`` / ``DenseNet169`` — 3D DenseNet-BC (the paper's classifier: DenseNet169, growth 32,
  dropout 0.2, 4 input channels, 3 classes).
* ``DenseNet`` — MONAI's generic DenseNet (``block_config`` etc. given in full), for small test and
  reduced-size classifiers.

A manifest's ``network.kwargs`` never reach MONAI unchecked: :func:`check_kwargs` holds an explicit
allow-list per network (:data:`ALLOWED_KWARGS`), with a type and a range for each key. ``pretrained``
(a download), ``progress`` and anything not listed are refused, as are booleans where a number is
expected, NaN and infinities, and sizes beyond the small limits below (a manifest cannot ask for a
network of gigabytes). :func:`build_network` can build on torch's ``meta`` device (no memory), which
:mod:`braingui.inference.bundle` does to compare the weights' shapes before it builds the real network.

MONAI's package import loads every subpackage, and with them optional packages that no network needs
(matplotlib, pandas, scikit-image, ``scipy.signal``: about 1.8 s of the 3.5-4 s measured here, issue 15).
The first import here (:func:`monai_nets`) is made with those left out, as in an environment without them
(MONAI's ``optional_import`` records them missing); they stay importable for everything else, other
threads at once (medcam, training) and this one afterwards. ``BRAINGUI_FULL_MONAI_IMPORT=1`` imports
MONAI as it is.
"""

from __future__ import annotations

import importlib.abc
import math
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

NETWORKS: dict[str, str] = {
    "SegResNet": "segmentation",
    "SegResNetVAE": "segmentation",
    "DenseNet121": "classification",
    "DenseNet169": "classification",
    "DenseNet": "classification",
}
"""The registry: each network a manifest may name, and its task. The name is the class's name in
``monai.networks.nets``; this table is read without importing torch (the manifest checks use it)."""

NETWORK_NAMES = tuple(NETWORKS)
VAE_ONLY_KWARGS = ("input_image_size", "vae_estimate_std", "vae_default_std", "vae_nz")


class KwargsError(ValueError):
    """A ``network.kwargs`` entry that is not allowed; ``field`` is its dotted name (``kwargs.init_filters``)."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"'network.{field}' {problem}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _integer(lo: int, hi: int) -> Callable[[str, Any], Any]:
    def check(field: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise KwargsError(field, f"must be an integer, got {_show(value)}")
        if not lo <= value <= hi:
            raise KwargsError(field, f"= {_show(value)} is out of range [{lo}, {hi}]")
        return value
    return check


def _fraction(none_ok: bool = False, hi: float = 1.0, hi_open: bool = True) -> Callable[[str, Any], Any]:
    def check(field: str, value: Any) -> Any:
        if value is None and none_ok:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise KwargsError(field, f"must be a finite number, got {_show(value)}")
        if value < 0 or value > hi or (hi_open and value == hi):
            raise KwargsError(field, f"= {_show(value)} is out of range [0, {hi}{')' if hi_open else ']'}")
        return value
    return check


def _boolean(field: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise KwargsError(field, f"must be true or false, got {_show(value)}")
    return value


def _int_list(min_len: int, max_len: int, lo: int, hi: int) -> Callable[[str, Any], Any]:
    item = _integer(lo, hi)

    def check(field: str, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or not min_len <= len(value) <= max_len:
            raise KwargsError(field, f"must be a list of {min_len} to {max_len} integers, got {_show(value)}")
        for i, v in enumerate(value):
            item(f"{field}[{i}]", v)
        return value
    return check


def _named(names: tuple[str, ...], params: dict[str, Callable[[str, Any], Any]]) -> Callable[[str, Any], Any]:
    """A MONAI layer spec: ``"NAME"`` or ``["NAME", {param: value}]`` with only the listed names and params."""

    def check(field: str, value: Any) -> Any:
        name, args = (value, {}) if isinstance(value, str) else (None, None)
        if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str):
            name, args = value
        if name is None or not isinstance(args, dict):
            raise KwargsError(field, f'must be a name or ["NAME", {{...}}], got {_show(value)}')
        if name.upper() not in names:
            raise KwargsError(field, f"names {_show(name)}; allowed: {', '.join(names)}")
        for key, v in args.items():
            if key not in params:
                raise KwargsError(f"{field}.{key}", f"is not allowed (allowed: {', '.join(params) or 'none'})")
            params[key](f"{field}.{key}", v)
        return value
    return check


def _choice(values: tuple[str, ...]) -> Callable[[str, Any], Any]:
    def check(field: str, value: Any) -> Any:
        if not isinstance(value, str) or value.lower() not in values:
            raise KwargsError(field, f"must be one of {', '.join(values)}, got {_show(value)}")
        return value
    return check


def _three_d(field: str, value: Any) -> Any:
    if isinstance(value, bool) or value != 3:
        raise KwargsError(field, f"must be 3 (the app analyses 3D volumes), got {_show(value)}")
    return value


_NORM = _named(("BATCH", "INSTANCE", "GROUP"), {"num_groups": _integer(1, 64), "affine": _boolean,
                                                "eps": _fraction(hi=0.1, hi_open=False),
                                                "momentum": _fraction(hi=1.0, hi_open=False)})
_ACT = _named(("RELU", "LEAKYRELU", "PRELU", "ELU", "SELU", "GELU", "SWISH", "MISH"),
              {"inplace": _boolean, "negative_slope": _fraction(hi=1.0, hi_open=False)})
_SEGRESNET = {
    "spatial_dims": _three_d, "init_filters": _integer(4, 64), "in_channels": _integer(1, 8),
    "out_channels": _integer(1, 8), "dropout_prob": _fraction(none_ok=True), "act": _ACT, "norm": _NORM,
    "num_groups": _integer(1, 64), "use_conv_final": _boolean,
    "blocks_down": _int_list(1, 5, 1, 8), "blocks_up": _int_list(0, 4, 1, 8),
    "upsample_mode": _choice(("deconv", "nontrainable", "pixelshuffle")),
}
_DENSENET = {
    "spatial_dims": _three_d, "in_channels": _integer(1, 8), "out_channels": _integer(2, 64),
    "init_features": _integer(4, 128), "growth_rate": _integer(2, 64), "block_config": _int_list(1, 4, 1, 64),
    "bn_size": _integer(1, 8), "dropout_prob": _fraction(), "act": _ACT, "norm": _NORM,
}
ALLOWED_KWARGS: dict[str, dict[str, Callable[[str, Any], Any]]] = {
    "SegResNet": _SEGRESNET,
    "SegResNetVAE": dict(_SEGRESNET, input_image_size=_int_list(3, 3, 8, 512), vae_estimate_std=_boolean,
                         vae_default_std=_fraction(hi=10.0, hi_open=False), vae_nz=_integer(1, 1024)),
    "DenseNet121": _DENSENET,
    "DenseNet169": _DENSENET,
    "DenseNet": _DENSENET,
}
"""Per network: each keyword argument a manifest may give and its check (type and range). MONAI's own
defaults apply to keys left out. Not listed, so refused: ``pretrained`` and ``progress`` (a download at
run time), ``norm_name`` and anything else."""
MAX_PARAMETERS = 200_000_000
"""The most parameters a bundle's network may have (800 MB in fp32; the paper's SegResNetVAE has 24.8 M)."""


def check_kwargs(name: str, kwargs: Any) -> dict[str, Any]:
    """Check a manifest's ``network.kwargs`` against :data:`ALLOWED_KWARGS` (torch-free, builds nothing).

    Args:
        name: the network (a key of :data:`NETWORKS`).
        kwargs: the parsed JSON value of ``network.kwargs``.

    Returns:
        ``kwargs`` as a plain dict (unchanged).

    Raises:
        KwargsError: an unknown key, a wrong type, a value out of range or an inconsistent combination
            (the message names the key).
    """
    if not isinstance(kwargs, dict):
        raise KwargsError("kwargs", f"must be an object, got {_show(kwargs)}")
    allowed = ALLOWED_KWARGS[name]
    for key, value in kwargs.items():
        if key not in allowed:
            why = " (a download at run time: bundles carry their weights)" if key in ("pretrained", "progress") else ""
            raise KwargsError(f"kwargs.{key}", f"is not allowed for {name}{why}; allowed: {', '.join(allowed)}")
        allowed[key](f"kwargs.{key}", value)
    if name.startswith("SegResNet"):
        _check_segresnet(kwargs)
    return dict(kwargs)


def _norm_groups(norm: Any) -> int | None:
    if isinstance(norm, (list, tuple)) and str(norm[0]).upper() == "GROUP":
        return norm[1].get("num_groups", 8)
    return None


def _check_segresnet(kwargs: dict[str, Any]) -> None:
    down = kwargs.get("blocks_down", (1, 2, 2, 4))
    up = kwargs.get("blocks_up", (1, 1, 1))
    if len(up) != len(down) - 1:
        raise KwargsError("kwargs.blocks_up", f"has {len(up)} levels but blocks_down has {len(down)}: "
                          "blocks_up needs one level fewer")
    groups = _norm_groups(kwargs.get("norm", ("GROUP", {"num_groups": 8})))
    filters = kwargs.get("init_filters", 8)
    if groups is not None and filters % groups:
        raise KwargsError("kwargs.norm", f"num_groups = {groups} does not divide init_filters = {filters}")


def segresnet_levels(kwargs: dict[str, Any]) -> int:
    """How many times a SegResNet halves its input (``len(blocks_down) - 1``): input sizes must be
    divisible by ``2 ** levels``."""
    return len(kwargs.get("blocks_down", (1, 2, 2, 4))) - 1


def networks_for(task: str) -> tuple[str, ...]:
    """The registry's networks for ``task`` (``segmentation`` or ``classification``), in registry order."""
    return tuple(name for name, t in NETWORKS.items() if t == task)


def _fix_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """JSON lists -> tuples where MONAI expects tuples (``norm``, ``blocks_down``...)."""
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        out[k] = v
    return out


def build_network(name: str, kwargs: dict[str, Any], for_inference: bool = False,
                  device: str | None = None) -> torch.nn.Module:
    """Build a network by name.

    Args:
        name: one of :data:`NETWORK_NAMES`.
        kwargs: constructor keyword arguments (from a manifest; JSON lists are accepted).
        for_inference: build a plain ``SegResNet`` for a ``SegResNetVAE`` (same weights, no VAE branch).
        device: ``"meta"`` builds the structure only (shapes, no memory, no initialisation); default CPU.

    Raises:
        KeyError: unknown network name.
    """
    if name not in NETWORKS:
        raise KeyError(f"unknown network {name!r} (known: {', '.join(NETWORK_NAMES)})")
    import torch

    nets = monai_nets()
    kwargs = _fix_kwargs(kwargs)
    if for_inference and name == "SegResNetVAE":
        name = "SegResNet"
        kwargs = {k: v for k, v in kwargs.items() if k not in VAE_ONLY_KWARGS}
    if device is None:
        return getattr(nets, name)(**kwargs)
    if device != "meta":
        with torch.device(device):
            return getattr(nets, name)(**kwargs)
    with torch.device("meta"), _skip_inplace_on_meta():
        return getattr(nets, name)(**kwargs)


def import_network_modules() -> None:
    """Import what :func:`build_network` needs (torch, ``monai.networks.nets``; seconds: MONAI's package
    import loads all of its subpackages), e.g. in a background thread before the first network is built."""
    import torch  # noqa: F401

    monai_nets()


LEAN_IMPORT_SKIPS = ("matplotlib", "pandas", "skimage", "scipy.signal")
"""Packages left out of MONAI's package import (:func:`monai_nets`): optional for MONAI, unused by its
networks, and together about half of its import time here."""


class _SkipInThread(importlib.abc.MetaPathFinder):
    """An import finder that refuses :data:`LEAN_IMPORT_SKIPS` (and their submodules) to one thread only:
    another thread importing them meanwhile (the window colouring with matplotlib's tables) is not
    affected."""

    def __init__(self, names: tuple[str, ...], thread: int):
        self.names, self.thread = names, thread

    def find_spec(self, fullname, path=None, target=None):
        if threading.get_ident() == self.thread and any(fullname == n or fullname.startswith(n + ".")
                                                        for n in self.names):
            raise ModuleNotFoundError(f"{fullname} is left out of braingui's MONAI import", name=fullname)
        return None


def monai_nets():
    """``monai.networks.nets``; the first import of MONAI leaves out :data:`LEAN_IMPORT_SKIPS` (see the module
    docstring) unless ``$BRAINGUI_FULL_MONAI_IMPORT`` is ``1``."""
    if "monai" not in sys.modules and os.environ.get("BRAINGUI_FULL_MONAI_IMPORT") != "1":
        finder = _SkipInThread(LEAN_IMPORT_SKIPS, threading.get_ident())
        sys.meta_path.insert(0, finder)
        try:
            import monai.networks.nets  # noqa: F401
        except ImportError:  # a MONAI that needs one of them after all: forget the half import, import it whole
            for name in [m for m in sys.modules if m == "monai" or m.startswith("monai.")]:
                del sys.modules[name]
        finally:
            sys.meta_path.remove(finder)
    from monai.networks import nets

    return nets


def _skip_inplace_on_meta():
    """A torch function mode in which in-place ops on meta tensors (the weight initialisers' ``normal_``,
    ``fill_``...) do nothing: they change no shape, and on the meta device they would go through torch's
    Python reference kernels, whose first use imports ``torch._dynamo`` (6 s measured here)."""
    from torch.overrides import TorchFunctionMode

    class SkipInplace(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            first = args[0] if args else None
            name = getattr(func, "__name__", "")
            if name.endswith("_") and not name.startswith("__") and getattr(first, "is_meta", False):
                return first
            return func(*args, **(kwargs or {}))

    return SkipInplace()


def is_vae_key(key: str) -> bool:
    """State-dict keys of the VAE branch (absent from the inference network)."""
    return key.startswith("vae_")
