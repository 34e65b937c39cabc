"""Class activation maps of a 3D classifier: several methods, any dense block or transition, one entry point.

::

    from braingui.inference.cam_methods import compute_cam, upsample, cam_layers

    logits, cam = compute_cam(network, x, method="gradcam", layer="features.denseblock1")
    # logits: torch (1, n_classes), detached; cam: float32 numpy on the LAYER's grid, in [0, 1]
    cam_input = upsample(cam, x.shape[2:])       # trilinear, to the classifier input grid
    cam_case = grid_map.inverse(cam_input)       # (or resample once from the layer grid: the caller's choice)

Methods (:data:`METHODS`); ``A_k`` are the layer's feature maps, ``g_k = dy_c / dA_k`` the gradient of
the explained class's logit ``y_c``:

* ``"gradcam"`` — Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_k mean(g_k) A_k)``, through medcam's
  ``gcam`` backend, as in the paper;
* ``"gradcam++"`` — Grad-CAM++ (Chattopadhyay et al. 2018), through medcam's ``gcampp`` backend (the
  same formula as ``monai.visualize.GradCAMpp``: second-order channel weights from ``exp(y_c) g_k``);
* ``"hirescam"`` — HiResCAM (Draelos & Carin 2020): ``ReLU(sum_k g_k * A_k)`` element-wise, no spatial
  averaging of the gradient; equal to Grad-CAM when the gradient is spatially constant (a layer followed
  directly by global average pooling and a linear layer). Own code (neither medcam nor MONAI has it);
* ``"hirescam-contrastive"`` — HiResCAM of the class's log-softmax ``log p_c = y_c - logsumexp(y)``
  instead of its logit: the gradient is ``g_c - sum_j p_j g_j``, so the map is the evidence for the class
  *against* the other classes (a contrastive explanation, cf. Prabhushankar et al. 2020): features that
  raise every logit alike (the brain, the scanner's contrast) cancel; what remains is what separates the
  call. Computed as the gradient of ``sum_{j != c} q_j (y_c - y_j)``, ``q`` the softmax of the other
  classes' logits held constant: exactly ``1 / (1 - p_c)`` times that of ``log p_c`` (the scale is
  normalised away), and not rounded to zero when a confident call has ``p_c = 1`` in floating point.
  Own code;
* ``"layercam"`` — LayerCAM (Jiang et al. 2021): ``ReLU(sum_k ReLU(g_k) * A_k)``. Own code.

The own-code methods take ``torch.autograd.grad`` of the logit with respect to the layer's output only
(no weight gradients; about half the time of medcam's full backward, DESIGN.md).

Several maps of one input (the other classes; a randomised copy's maps in the sanity check) need not
repeat the whole pass: :func:`split_index` finds where a MONAI DenseNet (``features`` + ``class_layers``)
can be cut before the layer (and before any re-initialised module), :func:`prefix` runs the unchanged
front once, without gradients, and :func:`tail_cams` runs only the rest, with one backward per class to
the layer's output. Grad-CAM is then computed by its formula (the same map as medcam's within float
error, tested), HiResCAM and LayerCAM as above; Grad-CAM++ has no tail form (:data:`TAIL_METHODS`). Every map is ReLU'd,
then min-max normalised to [0, 1] as medcam does (all zero when constant), and returned on the layer's
own grid: callers resample it once, to where they need it (:func:`upsample` for the input grid).

Layers (:func:`cam_layers`): every dense block and transition of MONAI's DenseNet, by module name, in
network order (``features.denseblock1``, ``features.transition1``, ..., ``features.denseblock4``); for
another network, its top-level children. On DenseNet169 at a 60x74x60 input the grids are 15x19x15
(block 1), 7x9x7 (transition 1 / block 2), 3x4x3, 1x2x1 (transition 3 / block 4).

Facts heeded (medcam 0.1.22, DESIGN.md): gradients are needed, so :func:`compute_cam` refuses to run
inside ``torch.inference_mode()`` but works under ``no_grad``; a network with every parameter frozen
still works (the input is made to require grad instead); medcam is injected per call into a shallow copy
with its "test run" skipped, label always given. The network runs in eval mode during the call and its
mode is restored after; parameter gradients filled by medcam's backward are cleared.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from braingui.cam_names import CONTRASTIVE as _CONTRASTIVE
from braingui.cam_names import CONTRASTIVE_METHODS, METHOD_TITLES  # noqa: F401 - re-exported
from braingui.errors import BrainguiError
from braingui.inference.manifest import CAM_METHODS, DEFAULT_CAM_LAYER, DEFAULT_CAM_METHOD

METHODS = CAM_METHODS  # one list, torch-free, for the manifest check and the command line
DEFAULT_METHOD = DEFAULT_CAM_METHOD
DEFAULT_LAYER = DEFAULT_CAM_LAYER
_MEDCAM_BACKENDS = {"gradcam": "gcam", "gradcam++": "gcampp"}
TAIL_METHODS = ("gradcam", "hirescam", "hirescam-contrastive", "layercam")
"""Methods :func:`tail_cams` computes (Grad-CAM++ needs medcam's backend: the whole pass)."""
_DENSENET_LAYER = re.compile(r"^features\.(denseblock|transition)\d+$")


class CamError(BrainguiError):
    """A class activation map cannot be computed (unknown method or layer, no gradients, bad input)."""


def cam_layers(network: torch.nn.Module) -> tuple[str, ...]:
    """The layer names a map can be computed at, in network order.

    Args:
        network: a MONAI ``DenseNet`` (then its ``features.denseblockN`` and ``features.transitionN``) or
            any other module (then the names of its direct children).
    """
    names = [n for n, _ in network.named_modules() if _DENSENET_LAYER.match(n)]
    return tuple(names) if names else tuple(n for n, _ in network.named_children())


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`.

    Raises:
        CamError: unknown method, naming the valid ones.
    """
    if method not in METHODS:
        raise CamError(f"unknown CAM method {method!r} (choose one of: {', '.join(METHODS)})")
    return method


def check_layer(network: torch.nn.Module, layer: str) -> torch.nn.Module:
    """The module named ``layer`` if it is one of :func:`cam_layers`.

    Raises:
        CamError: not a valid layer, naming the valid ones.
    """
    valid = cam_layers(network)
    if layer not in valid:
        raise CamError(f"unknown CAM layer {layer!r} (choose one of: {', '.join(valid)})")
    return network.get_submodule(layer)


def normalise(cam: torch.Tensor) -> np.ndarray:
    """ReLU then min-max to [0, 1] (as medcam); all zero when constant.

    Args:
        cam: any-shape float tensor (a raw map).

    Returns:
        float32 numpy array of the same shape, values in [0, 1].

    Raises:
        CamError: non-finite values (e.g. Grad-CAM++'s ``exp(logit)`` overflowed).
    """
    a = F.relu(cam.detach().float()).cpu().numpy().astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise CamError("the class activation map has non-finite values")
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.float32)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def upsample(cam: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trilinear resampling of a map to ``shape`` (``align_corners=False``, as medcam and MONAI).

    Args:
        cam: float ``(x, y, z)`` map (e.g. on a layer's grid), values in [0, 1].
        shape: the target ``(X, Y, Z)``, e.g. the classifier input's spatial shape.

    Returns:
        float32 ``(X, Y, Z)`` in [0, 1] (the same array values when the shape is already ``shape``).
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 3 or len(shape) != 3:
        raise ValueError(f"upsample takes a 3D map and a 3D shape, got {cam.shape} -> {tuple(shape)}")
    shape = tuple(int(s) for s in shape)
    if cam.shape == shape:
        return cam.copy()
    t = torch.from_numpy(np.ascontiguousarray(cam))[None, None]
    out = F.interpolate(t, size=shape, mode="trilinear", align_corners=False)[0, 0]
    return np.ascontiguousarray(out.clamp_(0.0, 1.0).numpy(), dtype=np.float32)


def compute_cam(network: torch.nn.Module, x: torch.Tensor, method: str = DEFAULT_METHOD,
                layer: str = DEFAULT_LAYER, class_index: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Logits and the class activation map of one input (one forward + one backward).

    Args:
        network: the classifier (its mode is set to eval for the call and restored after).
        x: float ``(1, C, X, Y, Z)`` on the network's device (the preprocessed classifier input).
        method: one of :data:`METHODS`.
        layer: one of :func:`cam_layers` of ``network``.
        class_index: the class to explain; ``None`` = this input's arg-max.

    Returns:
        ``(logits, cam)``: logits ``(1, n_classes)`` float tensor (detached, on the device); cam float32
        numpy ``(x, y, z)`` on the layer's own grid, in [0, 1] (all zero when there is no positive
        evidence).

    Raises:
        CamError: unknown method / layer, input not ``(1, C, X, Y, Z)``, inside ``inference_mode``, the
            layer's output not a 3D feature map, class index out of range.
    """
    check_method(method)
    module = check_layer(network, layer)
    if x.ndim != 5 or x.shape[0] != 1:
        raise CamError(f"a CAM takes one input of shape (1, C, X, Y, Z), got {tuple(x.shape)}")
    if torch.is_inference_mode_enabled():
        raise CamError("a CAM needs gradients; it cannot run inside torch.inference_mode()")
    frozen = not any(p.requires_grad for p in network.parameters())
    x = x.detach().requires_grad_(True) if frozen else x.detach()
    was_training = network.training
    network.eval()
    try:
        with torch.enable_grad():
            if method in _MEDCAM_BACKENDS:
                logits, raw = _medcam(network, x, _MEDCAM_BACKENDS[method], layer, class_index)
            else:
                logits, raw = _autograd_cam(network, module, x, method, layer, class_index)
    finally:
        network.zero_grad(set_to_none=True)
        network.train(was_training)
    return logits.detach(), normalise(raw)


def _check_class(logits: torch.Tensor, class_index: int | None) -> int:
    n = int(logits.shape[1])
    c = int(logits[0].argmax()) if class_index is None else int(class_index)
    if not 0 <= c < n:
        raise CamError(f"class index {class_index} out of range (the network has {n} classes)")
    return c


def _medcam(network: torch.nn.Module, x: torch.Tensor, backend: str, layer: str,
            class_index: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """medcam's map at ``layer`` (already ReLU'd and min-max'd by medcam) on the layer grid."""
    from medcam import medcam

    if class_index is not None and class_index < 0:
        raise CamError(f"class index {class_index} out of range")
    model = medcam.inject(network, backend=backend, layer=layer, label=None, save_maps=False, save_pickle=False,
                          save_scores=False, evaluate=False, replace=False, return_attention=False)
    model.medcam_dict["tested"] = True  # skip medcam's extra forward + backward "test run"
    label = "best" if class_index is None else int(class_index)
    try:
        logits = model(x, label=label)
    except IndexError as exc:
        raise CamError(f"class index {class_index} out of range") from exc
    except (RuntimeError, ValueError) as exc:
        raise CamError(f"medcam could not compute a map at layer {layer!r}: {exc}") from exc
    finally:  # its hooks sit on the network's own (shared) submodules: never leave one behind
        model.medcam_dict["model_backend"].remove_hook(forward=True, backward=True)
    _check_class(logits, class_index)
    cam = model.get_attention_map()
    if cam is None:
        raise CamError(f"medcam produced no map at layer {layer!r}")
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 5:
        raise CamError(f"layer {layer!r} gives no 3D feature map (medcam map of shape {cam.shape})")
    return logits, torch.from_numpy(cam[0, 0])


def _autograd_cam(network: torch.nn.Module, module: torch.nn.Module, x: torch.Tensor, method: str, layer: str,
                  class_index: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """An own-code map from the layer's activation and ``autograd.grad`` of :func:`explained_score` to it."""
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        store["act"] = output

    handle = module.register_forward_hook(hook)
    try:
        logits = network(x)
    finally:
        handle.remove()
    act = store.get("act")
    if not isinstance(act, torch.Tensor) or act.ndim != 5:
        raise CamError(f"layer {layer!r} gives no 3D feature map (output {type(act).__name__}"
                       f"{'' if not isinstance(act, torch.Tensor) else ' of shape ' + str(tuple(act.shape))})")
    c = _check_class(logits, class_index)
    (grad,) = torch.autograd.grad(explained_score(logits, c, method), act)
    return logits, combine(method, grad, act)


def explained_score(logits: torch.Tensor, c: int, method: str) -> torch.Tensor:
    """The scalar whose gradient ``method``'s map of class ``c`` uses: the class's logit, or for a
    contrastive method one whose gradient is that of its log-softmax divided by ``1 - p_c`` (module
    docstring): ``sum_{j != c} q_j (y_c - y_j)``, ``q`` = softmax of the other logits, held constant."""
    if method not in _CONTRASTIVE:
        return logits[0, c]
    others = [j for j in range(int(logits.shape[1])) if j != c]
    if not others:
        raise CamError("a contrastive map needs a network with at least two classes")
    rest = logits[0, others]
    q = torch.softmax(rest.detach().double(), dim=0).to(logits.dtype)
    return (q * (logits[0, c] - rest)).sum()


def combine(method: str, grad: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """The raw map ``(x, y, z)`` of an own-code method (:data:`TAIL_METHODS`) from a layer's ``(1, K, x, y, z)``
    activation and the gradient of :func:`explained_score` there."""
    method = _CONTRASTIVE.get(method, method)
    if method == "gradcam":
        grad = grad.mean(dim=(2, 3, 4), keepdim=True)
    elif method == "layercam":
        grad = F.relu(grad)
    elif method != "hirescam":
        raise CamError(f"{method!r} has no tail form (choose one of: {', '.join(TAIL_METHODS)})")
    return (grad * act).sum(dim=1)[0]


def split_index(network: torch.nn.Module, layer: str, changed: Sequence[str] = ()) -> int | None:
    """Where :func:`prefix` / :func:`tail_cams` may cut ``network``: the index in ``network.features`` of
    the first module that is ``layer`` or holds a ``changed`` module; ``None`` when the network is not a
    MONAI DenseNet (``features`` ``Sequential`` then ``class_layers``), ``layer`` is not one of its
    ``features`` children, or a changed module lies outside ``features`` and ``class_layers``.

    Args:
        network: the classifier.
        layer: the map's layer, e.g. ``features.denseblock1``.
        changed: module names that differ between the networks that will share the prefix (e.g. the
            re-initialised ``features.denseblock4`` and ``class_layers.out`` of the sanity check).
    """
    features = getattr(network, "features", None)
    if not isinstance(features, torch.nn.Sequential) or not isinstance(getattr(network, "class_layers", None),
                                                                       torch.nn.Module):
        return None
    names = list(features._modules)
    if not layer.startswith("features.") or layer.split(".", 1)[1] not in names:
        return None
    index = names.index(layer.split(".", 1)[1])
    for name in changed:
        parts = name.split(".")
        if parts[0] == "features" and len(parts) > 1 and parts[1] in names:
            index = min(index, names.index(parts[1]))
        elif parts[0] != "class_layers":
            return None
    return index


def prefix(network: torch.nn.Module, x: torch.Tensor, start: int) -> torch.Tensor:
    """``network.features[:start](x)`` without gradients: the front that several maps share.

    Args:
        network: a DenseNet (see :func:`split_index`), in eval mode.
        x: float ``(1, C, X, Y, Z)``.
        start: from :func:`split_index`.

    Returns:
        The activation entering ``network.features[start]`` (detached).
    """
    with torch.no_grad():
        return network.features[:start](x).detach()


def tail_cams(network: torch.nn.Module, front: torch.Tensor, start: int, layer: str, method: str,
              class_indices: Sequence[int]) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Maps of several classes from the rest of the network: one forward from ``front``, one backward
    per class down to ``layer``'s output only.

    Args:
        network: the network whose tail runs (the original, or a copy that shares the front).
        front: :func:`prefix`'s output for this ``start``.
        start: from :func:`split_index` (at or before the layer).
        layer: the map's layer (a ``features`` child of ``network``).
        method: one of :data:`TAIL_METHODS`.
        class_indices: the classes to map.

    Returns:
        ``(logits (1, n_classes) detached, maps)``: one float32 ``(x, y, z)`` map in [0, 1] on the
        layer's grid per class, as :func:`compute_cam` gives (via :func:`normalise`).

    Raises:
        CamError: a method without a tail form, a layer that is not after ``start``, a class out of range.
    """
    if method not in TAIL_METHODS:
        raise CamError(f"{method!r} has no tail form (choose one of: {', '.join(TAIL_METHODS)})")
    if torch.is_inference_mode_enabled():
        raise CamError("a CAM needs gradients; it cannot run inside torch.inference_mode()")
    names = list(network.features._modules)
    child = layer.split(".", 1)[1] if layer.startswith("features.") else ""
    at = names.index(child) if child in names else -1
    if at < start:
        raise CamError(f"layer {layer!r} is not in the tail that starts at features[{start}]")
    was_training = network.training
    network.eval()
    try:
        with torch.enable_grad():
            out, act = front.detach(), None
            for i in range(start, len(names)):
                out = network.features[i](out)
                if i == at:  # the map's layer: the graph starts here, so a backward stops here
                    act = out = out.detach().requires_grad_(True)
            logits = network.class_layers(out)
            maps = []
            for j, c in enumerate(class_indices):
                c = _check_class(logits, int(c))
                (grad,) = torch.autograd.grad(explained_score(logits, c, method), act,
                                              retain_graph=j < len(class_indices) - 1)
                maps.append(normalise(combine(method, grad, act.detach())))
    finally:
        network.train(was_training)
    return logits.detach(), maps
