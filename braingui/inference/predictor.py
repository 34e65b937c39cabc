"""The predictor: loads each model bundle once, on one device, and runs the networks.

After nnU-Net v2's predictor: construct once, load the trained folders once, then predict many cases.

* :func:`resolve_device` — ``auto`` picks CUDA, then MPS, then the CPU; a named device that is not
  available is an error.
* :class:`SegmentationModel` — sigmoid region probabilities on the network grid, by whole-volume forward
  or by sliding windows (a generator that yields between windows, so the pipeline can report progress
  and cancel), under ``no_grad`` and, on CUDA, autocast (fp16).
* :class:`ClassificationModel` — softmax probabilities and Grad-CAM maps (through
  :mod:`braingui.inference.gradcam`); the Grad-CAM pass runs in fp32 (fp16 gradients at the first dense
  block can underflow) and gives the logits too.
* :class:`Predictor` — the cache: ``load(bundle)`` returns the same model object for the same bundle
  folder and weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch

from braingui.errors import BrainguiError
from braingui.inference.bundle import load_network
from braingui.inference.manifest import Bundle
from braingui.preprocess import ClassificationPrep, SegmentationPrep
from braingui.results import ModelInfo

DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(BrainguiError):
    """The requested device is not available."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA, then MPS, then CPU; ``cpu``/``cuda``/``cuda:N``/``mps`` when available.

    Raises:
        DeviceError: unknown or unavailable device.
    """
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {name!r} (use one of {', '.join(DEVICES)})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but CUDA is not available (use --device cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not mps_ok:
        raise DeviceError(f"device {name!r} requested but MPS is not available (use --device cpu or auto)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {name!r} (use one of {', '.join(DEVICES)})")
    return device


def scan_interval(image_size: tuple[int, ...], roi_size: tuple[int, ...], overlap: float) -> tuple[int, ...]:
    """Window step per axis: ``int(roi * (1 - overlap))`` (at least 1), or ``roi`` where roi == image.

    The rule of ``monai.inferers.sliding_window_inference``.
    """
    return tuple(r if r == s else max(int(r * (1 - overlap)), 1) for s, r in zip(image_size, roi_size))


def window_slices(image_size: tuple[int, int, int], roi_size: tuple[int, int, int] | None,
                  overlap: float) -> list[tuple[slice, slice, slice]]:
    """The sliding windows over ``image_size`` (one window = the whole volume when it fits the roi).

    The roi is clipped to the image on each axis (no padding); positions are those of MONAI's
    ``sliding_window_inference`` (``monai.data.utils.dense_patch_slices``, last window flush with the end).
    """
    from monai.data.utils import dense_patch_slices

    if roi_size is None or all(s <= r for s, r in zip(image_size, roi_size)):
        return [tuple(slice(0, s) for s in image_size)]
    roi = tuple(min(r, s) for r, s in zip(roi_size, image_size))
    return [tuple(sl) for sl in dense_patch_slices(image_size, roi, scan_interval(image_size, roi, overlap))]


class LoadedModel:
    """A bundle's network on a device.

    Attributes:
        bundle: where it came from.
        network: the torch module (eval mode).
        device: where it runs.
        amp: autocast (fp16) for forward passes on CUDA.
    """

    def __init__(self, bundle: Bundle, network: torch.nn.Module, device: torch.device, amp: bool = True):
        self.bundle = bundle
        self.network = network
        self.device = device
        self.amp = amp and device.type == "cuda"

    @property
    def info(self) -> ModelInfo:
        m = self.bundle.manifest
        return ModelInfo(name=m.name, task=m.task, path=str(self.bundle.folder), sha256=m.sha256, demo=m.demo,
                         model_card=dict(m.model_card))

    def autocast(self):
        """Mixed precision on CUDA, nothing elsewhere."""
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """``(C, X, Y, Z)`` float32 numpy -> ``(1, C, X, Y, Z)`` tensor on the device."""
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None].to(self.device)


class SegmentationModel(LoadedModel):
    """A segmentation bundle, loaded (see the module docstring)."""

    @property
    def spec(self):
        return self.bundle.manifest.segmentation

    @property
    def prep(self) -> SegmentationPrep:
        """The input policy for :func:`braingui.preprocess.prepare_segmentation`."""
        s = self.spec
        return SegmentationPrep(channels=s.channels, crop=s.crop, multiple=s.multiple, zoom=s.zoom, margin=s.margin)

    def windows(self, shape: tuple[int, int, int]) -> list[tuple[slice, slice, slice]]:
        """The windows for a network input of spatial ``shape``."""
        return window_slices(tuple(shape), self.spec.roi_size, self.spec.sw_overlap)

    def iter_probabilities(self, array: np.ndarray) -> Generator[tuple[int, int], None, np.ndarray]:
        """Sigmoid region probabilities of a prepared input, one window at a time.

        Args:
            array: float32 ``(C, X, Y, Z)`` network input (``NetworkInput.array``).

        Yields:
            ``(windows_done, windows_total)`` after each window.

        Returns:
            float32 ``(n_regions, X, Y, Z)`` probabilities; overlapping windows' logits are averaged
            (MONAI's constant blending), then the sigmoid is applied.
        """
        shape = tuple(array.shape[1:])
        slices = self.windows(shape)
        x = self.tensor(array)
        total, count = None, None
        with torch.no_grad():
            for i, sl in enumerate(slices):
                with self.autocast():
                    out = self.network(x[(Ellipsis,) + sl])
                out = out.float()
                if len(slices) == 1:
                    total = out
                else:
                    if total is None:
                        total = torch.zeros((1, out.shape[1]) + shape, dtype=torch.float32, device=self.device)
                        count = torch.zeros((1, 1) + shape, dtype=torch.float32, device=self.device)
                    total[(Ellipsis,) + sl] += out
                    count[(Ellipsis,) + sl] += 1.0
                yield i + 1, len(slices)
            if count is not None:
                total /= count
            probs = torch.sigmoid(total)[0]
        return probs.cpu().numpy().astype(np.float32, copy=False)

    def probabilities(self, array: np.ndarray) -> np.ndarray:
        """:meth:`iter_probabilities` run to the end."""
        gen = self.iter_probabilities(array)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value


class ClassificationModel(LoadedModel):
    """A classification bundle, loaded (see the module docstring)."""

    def __init__(self, bundle: Bundle, network: torch.nn.Module, device: torch.device, amp: bool = True):
        super().__init__(bundle, network, device, amp)
        self._cam = None

    @property
    def spec(self):
        return self.bundle.manifest.classification

    @property
    def prep(self) -> ClassificationPrep:
        """The input policy for :func:`braingui.preprocess.prepare_classification`."""
        s = self.spec
        return ClassificationPrep(channels=s.channels, shape=s.shape, tolerance=s.tolerance)

    @property
    def gradcam(self):
        """The medcam adapter at the manifest's layer (built on first use, after ``.to(device)``)."""
        if self._cam is None:
            from braingui.inference.gradcam import MedcamGradCam

            self._cam = MedcamGradCam(self.network, self.spec.cam_layer)
        return self._cam

    def probabilities(self, array: np.ndarray) -> np.ndarray:
        """Softmax class probabilities ``(n_classes,)`` float64 of a prepared input (no Grad-CAM)."""
        with torch.no_grad(), self.autocast():
            logits = self.network(self.tensor(array))
        return softmax(logits)

    def explain(self, array: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and the Grad-CAM of one class, in one forward + backward (fp32).

        Args:
            array: float32 ``(C, X, Y, Z)`` network input.
            class_index: the class to explain; ``None`` = the predicted class.

        Returns:
            ``(probabilities (n_classes,) float64, cam float32 (X, Y, Z) in [0, 1] on the input grid)``.
        """
        logits, cam = self.gradcam(self.tensor(array), class_index)
        return softmax(logits), cam


def softmax(logits: torch.Tensor) -> np.ndarray:
    """``(1, n)`` logits -> float64 probabilities that sum to 1."""
    z = logits.detach().float().cpu().double().numpy()[0]
    e = np.exp(z - z.max())
    p = e / e.sum()
    if not np.all(np.isfinite(p)):
        raise BrainguiError("the classifier produced non-finite outputs")
    return p


class Predictor:
    """Loads bundles once and keeps them on one device.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        amp: mixed precision on CUDA.
    """

    def __init__(self, device: str = "auto", amp: bool = True):
        self.device = resolve_device(device)
        self.amp = amp
        self._models: dict[tuple[str, str], LoadedModel] = {}

    def load(self, bundle: Bundle) -> SegmentationModel | ClassificationModel:
        """The loaded model of a bundle (cached by folder and weights sha256).

        Raises:
            BundleError: see :func:`braingui.inference.bundle.load_network`.
        """
        key = (str(Path(bundle.folder).resolve()), bundle.manifest.sha256)
        model = self._models.get(key)
        if model is None:
            network = load_network(bundle).to(self.device)
            cls = SegmentationModel if bundle.task == "segmentation" else ClassificationModel
            model = cls(bundle, network, self.device, self.amp)
            self._models[key] = model
        return model

    def is_loaded(self, bundle: Bundle) -> bool:
        return (str(Path(bundle.folder).resolve()), bundle.manifest.sha256) in self._models
