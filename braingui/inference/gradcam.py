"""Grad-CAM through M3D-CAM (the ``medcam`` package), as in the paper (IV-B-2): a standing adapter at one
layer. The app's maps now come from :mod:`braingui.inference.cam_methods` (Grad-CAM and Grad-CAM++
through medcam injected per call, HiResCAM and LayerCAM by autograd, any dense block or transition),
which imports medcam too; this adapter is kept as the reference the tests and the studies compare with.

Grad-CAM (Selvaraju et al. 2017): the feature maps ``A_k`` of a layer are weighted by the spatial mean
of the class score's gradient ``dy_c/dA_k``; the map is ``ReLU(sum_k w_k A_k)``, here normalised to
[0, 1] by medcam. :meth:`MedcamGradCam.native` returns it on the layer's own grid (the pipeline
resamples that once, straight onto the case grid); calling the adapter also resizes it (trilinear,
``align_corners=False``) to the network input.

medcam facts this adapter heeds (measured with medcam 0.1.22, see DESIGN.md):

* it needs gradients: it fails inside ``torch.inference_mode()`` and when every parameter is frozen;
  it switches grad on itself (works under ``no_grad``), so the network keeps ``requires_grad``;
* ``layer='auto'`` picks the last 3x4x3 map and doubles memory: the layer is always named;
* without an explicit label it fixes the label to the arg-max after the first call: every call here
  passes one (an index, or ``"best"`` = this input's arg-max, with batch 1);
* ``inject`` returns a shallow copy and sets the network to eval: inject once, after ``.to(device)``;
* on its first call it runs a "test run" (an extra forward and backward) only needed for
  ``layer='full'``; it is skipped by marking the injected model as tested;
* its ``save_maps`` writes NIfTI files with an identity affine: never used, maps are returned.

The CAM pass also gives the logits (one forward + backward), so classification needs no second forward.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class GradCamError(RuntimeError):
    """Grad-CAM cannot run on this network / layer."""


class MedcamGradCam:
    """Grad-CAM of one network at one layer through medcam.

    Args:
        network: the classifier, already on its device and in eval mode; batch size 1 inputs.
        layer: a module name of ``network`` (``features.denseblock1`` for MONAI's DenseNet, as in the paper).

    Raises:
        GradCamError: no module of that name.
    """

    def __init__(self, network: torch.nn.Module, layer: str):
        modules = dict(network.named_modules())
        if layer not in modules or layer == "":
            near = [n for n in modules if n and n.split(".")[0] == layer.split(".")[0]][:6]
            raise GradCamError(f"Grad-CAM layer {layer!r} is not a module of the network"
                               + (f" (e.g. {', '.join(near)})" if near else ""))
        from medcam import medcam

        self.network = network
        self.layer = layer
        self._model = medcam.inject(network, backend="gcam", layer=layer, label=None, save_maps=False,
                                    save_pickle=False, save_scores=False, evaluate=False, replace=False,
                                    return_attention=False)
        self._model.medcam_dict["tested"] = True  # skip medcam's extra forward+backward "test run"

    def __call__(self, x: torch.Tensor, class_index: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """:meth:`native`, with the map resized (trilinear) to the input grid: cam float32 ``(X, Y, Z)``."""
        logits, cam = self.native(x, class_index)
        cam = F.interpolate(torch.from_numpy(cam)[None, None], size=tuple(x.shape[2:]), mode="trilinear",
                            align_corners=False)
        return logits, np.ascontiguousarray(cam[0, 0].clamp_(0.0, 1.0).numpy(), dtype=np.float32)

    def native(self, x: torch.Tensor, class_index: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Logits and the Grad-CAM of one input, on the layer's grid (no resampling).

        Args:
            x: float ``(1, C, X, Y, Z)`` on the network's device.
            class_index: the class to explain; ``None`` = the arg-max of this input.

        Returns:
            ``(logits, cam)``: logits ``(1, n_classes)`` (detached), cam float32 ``(x, y, z)`` in [0, 1] on
            the layer's grid, which spans the same field of view as the input (all zero when the map is
            constant).
        """
        if x.ndim != 5 or x.shape[0] != 1:
            raise ValueError(f"Grad-CAM takes one input of shape (1, C, X, Y, Z), got {tuple(x.shape)}")
        if torch.is_inference_mode_enabled():
            raise GradCamError("Grad-CAM needs gradients; it cannot run inside torch.inference_mode()")
        if not any(p.requires_grad for p in self.network.parameters()):
            raise GradCamError("Grad-CAM needs gradients; every parameter of the network is frozen")
        label = "best" if class_index is None else int(class_index)
        try:
            logits = self._model(x, label=label)
            cam = self._model.get_attention_map()
        finally:
            self.network.zero_grad(set_to_none=True)  # the backward filled parameter grads: free them
        if cam is None:
            raise GradCamError(f"medcam produced no map at layer {self.layer!r}")
        cam = np.asarray(cam, dtype=np.float32)
        cam = np.clip(cam.reshape(cam.shape[-3:]), 0.0, 1.0)
        return logits.detach(), np.ascontiguousarray(cam, dtype=np.float32)
