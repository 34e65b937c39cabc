"""Model bundle weights: checked loading and atomic writing.

Loading (:func:`load_network`) refuses, with a :class:`~braingui.inference.manifest.BundleError` that
names the bundle: a missing weights file, a sha256 that differs from the manifest's, a file that
``torch.load(..., weights_only=True)`` refuses (a pickle that would run code or build arbitrary
objects), a file that is not a state dict (a training checkpoint, a whole pickled model, a list ...),
missing keys, unexpected keys and tensors of the wrong shape. A ``SegResNetVAE`` bundle is loaded into a
plain ``SegResNet`` (the VAE branch is used only in training); only ``vae_*`` keys may be left over.
fp16-stored weights are converted to fp32.

:func:`write_bundle` is the export step of training: it writes the weights (optionally as fp16) and
the manifest with the weights' sha256, each file atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from braingui.inference.manifest import MANIFEST_NAME, Bundle, BundleError, parse_manifest, read_bundle
from braingui.inference.networks import MAX_PARAMETERS, build_network, is_vae_key
from braingui.atomic import write_bytes as write_bytes_atomic

_SHOW = 5  # keys listed in a message


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return f"{shown} (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else shown


def load_state_dict(bundle: Bundle) -> dict[str, torch.Tensor]:
    """Read a bundle's weights on the CPU after checking their sha256; floating tensors as fp32.

    Raises:
        BundleError: see the module docstring.
    """
    path = bundle.weights_path
    if not path.is_file():
        raise BundleError(f"weights file {bundle.manifest.weights_file} not found", bundle.folder)
    actual = sha256_file(path)
    if actual != bundle.manifest.sha256:
        raise BundleError(f"weights file {path.name} does not match the manifest's sha256 (expected "
                          f"{bundle.manifest.sha256[:12]}..., file has {actual[:12]}...); the file is "
                          "corrupt or was replaced", bundle.folder)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise BundleError(f"refused to load {path.name}: it holds Python objects other than tensors "
                              "(a pickle that could run code); only plain state dicts are loaded",
                              bundle.folder) from None
        raise BundleError(f"{path.name} is not a PyTorch weights file ({_first_line(exc)})", bundle.folder) from None
    except Exception as exc:  # noqa: BLE001 - zip/pickle readers raise many types for a broken file
        raise BundleError(f"{path.name} cannot be read as PyTorch weights ({type(exc).__name__}: "
                          f"{_first_line(exc)})", bundle.folder) from None
    return _as_state_dict(data, path.name, bundle.folder)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def _as_state_dict(data: Any, name: str, folder: Path) -> dict[str, torch.Tensor]:
    if not isinstance(data, Mapping):
        raise BundleError(f"{name} is not a state dict (it holds a {type(data).__name__})", folder)
    bad = [k for k, v in data.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        hint = ""
        if any(k in data for k in ("model", "state_dict", "optimizer")):
            hint = ("; it looks like a training checkpoint - export its 'model' entry with "
                    "braingui.inference.bundle.write_bundle")
        raise BundleError(f"{name} is not a state dict: entries {_listing([str(k) for k in bad])} are not "
                          f"tensors{hint}", folder)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in data.items()}


def check_state_dict(network: torch.nn.Module, state: Mapping[str, torch.Tensor], bundle: Bundle | None = None,
                     allow_vae: bool = False, where: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """Compare a state dict with a network; return the entries to load.

    Args:
        allow_vae: ``vae_*`` keys that the network lacks are dropped instead of refused.

    Raises:
        BundleError: missing keys, unexpected keys or wrong shapes (all listed in one message).
    """
    where = bundle.folder if bundle is not None else where
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not (allow_vae and is_vae_key(k))]
    wrong = [f"{k} {tuple(state[k].shape)} (network: {tuple(expected[k].shape)})"
             for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape: {_listing(wrong)}")
    if problems:
        raise BundleError("the weights do not fit the manifest's network - " + "; ".join(problems), where)
    return {k: state[k] for k in expected}


def _build(bundle: Bundle, device: str | None = None) -> torch.nn.Module:
    m = bundle.manifest
    try:
        return build_network(m.network, m.kwargs, for_inference=True, device=device)
    except Exception as exc:  # noqa: BLE001 - MONAI raises TypeError/ValueError/AssertionError for bad kwargs
        raise BundleError(f"cannot build {m.network} from network.kwargs ({type(exc).__name__}: "
                          f"{_first_line(exc)})", bundle.folder) from None


def load_network(bundle: Bundle) -> torch.nn.Module:
    """Build the bundle's network for inference and load its checked weights (CPU, eval mode).

    In this order, so that nothing is built from a manifest whose weights are not the ones it names,
    and nothing large is allocated for weights that do not fit: the sha256 and the weights file
    (:func:`load_state_dict`); the network's structure on torch's ``meta`` device (no memory), its size
    (at most :data:`~braingui.inference.networks.MAX_PARAMETERS` parameters) and the weights' keys and
    shapes against it; only then the real network. (``network.kwargs`` were checked against the
    network's allow-list when the manifest was read.)

    Raises:
        BundleError: bad constructor arguments or any weights problem (see the module docstring).
    """
    m = bundle.manifest
    state = load_state_dict(bundle)
    structure = _build(bundle, device="meta")
    size = sum(p.numel() for p in structure.parameters())
    if size > MAX_PARAMETERS:
        raise BundleError(f"network.kwargs make a {m.network} of {size / 1e6:.0f} M parameters "
                          f"(at most {MAX_PARAMETERS // 1_000_000} M)", bundle.folder)
    to_load = check_state_dict(structure, state, bundle, allow_vae=m.network == "SegResNetVAE")
    del structure
    network = _build(bundle)
    network.load_state_dict(to_load, strict=True)
    network.eval()
    return network


def write_bundle(folder: str | os.PathLike, manifest: dict[str, Any],
                 state_dict: Mapping[str, torch.Tensor] | torch.nn.Module, fp16: bool = False,
                 check: bool = True) -> Bundle:
    """Write a model bundle: the weights and ``manifest.json`` with their sha256.

    Args:
        folder: the bundle folder (created; existing files of the same names are replaced atomically).
        manifest: the manifest without a ``weights`` section, or with ``weights.file`` to choose the
            file name (default ``weights.pt``); ``sha256`` and ``dtype`` are filled in here.
        state_dict: the network's weights (a training checkpoint's ``"model"`` entry) or the network.
        fp16: store floating tensors as float16 (half the size; loaded back as float32).
        check: build the manifest's network and refuse weights that do not fit it.

    Returns:
        The written bundle, read back and validated.

    Raises:
        BundleError: an invalid manifest or (``check``) weights that do not fit the network.
    """
    folder = Path(folder)
    if isinstance(state_dict, torch.nn.Module):
        state_dict = state_dict.state_dict()
    manifest = json.loads(json.dumps(manifest))  # a deep, JSON-clean copy
    weights = dict(manifest.get("weights") or {})
    weights.setdefault("file", "weights.pt")
    weights["dtype"] = "float16" if fp16 else "float32"
    weights["sha256"] = "0" * 64  # placeholder so the manifest validates before anything is written
    manifest["weights"] = weights
    parsed = parse_manifest(manifest, folder)
    tensors = {}
    for key, value in state_dict.items():
        t = value.detach().to("cpu")
        if t.is_floating_point():
            t = t.to(torch.float16 if fp16 else torch.float32)
        tensors[key] = t.clone().contiguous()  # clone: never save a view's whole storage
    if check:
        network = build_network(parsed.network, parsed.kwargs, for_inference=True)
        check_state_dict(network, tensors, allow_vae=parsed.network == "SegResNetVAE", where=folder)
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    data = buffer.getvalue()
    weights["sha256"] = hashlib.sha256(data).hexdigest()
    write_bytes_atomic(data, folder / weights["file"])
    write_bytes_atomic((json.dumps(manifest, indent=2) + "\n").encode("utf-8"), folder / MANIFEST_NAME)
    return read_bundle(folder)
