"""The predictor: loads each model bundle once, on one device, and runs the networks.

After nnU-Net v2's predictor: construct once, load the trained folders once, then predict many cases.

* :func:`resolve_device` — ``auto`` picks CUDA, then MPS, then the CPU; a named device that is not
  available is an error.
* :class:`SegmentationModel` — sigmoid region probabilities on the network grid, by whole-volume forward
  or by sliding windows (a generator that yields between windows, so the pipeline can report progress
  and cancel), under ``no_grad`` and, on CUDA, autocast (fp16).
* :class:`ClassificationModel` — softmax probabilities and class activation maps (any method and layer
  of :mod:`braingui.inference.cam_methods`; the manifest's ``gradcam`` section gives the default); the
  map's pass runs in fp32 (fp16 gradients at the first dense block can underflow) and gives the logits too.
* :class:`Predictor` — the cache: ``load(bundle)`` returns the same model object for the same bundle
  folder and weights; on the CPU a segmentation network's forward runs through OpenVINO when it is
  installed and the network converts (:mod:`braingui.inference.openvino_backend`; ``backend`` /
  ``$BRAINGUI_BACKEND``: ``auto``, ``torch``, ``openvino``), else torch; :meth:`Predictor.warm_up` makes a
  loaded model's first real pass as fast as the next ones (lazy imports, kernel set-up, the Grad-CAM
  backward's first use).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch

from braingui.errors import BrainguiError
from braingui.inference.bundle import load_network
from braingui.inference.limits import segmentation_input
from braingui.inference.manifest import Bundle, ClassificationSpec, SegmentationSpec
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

    @property
    def spec(self) -> SegmentationSpec | ClassificationSpec:
        """The manifest's validated ``input`` / ``output`` sections for the bundle's task."""
        m = self.bundle.manifest
        return m.segmentation if m.task == "segmentation" else m.classification

    @property
    def prep(self) -> SegmentationPrep | ClassificationPrep:
        """The input policy for :mod:`braingui.preprocess` (the spec is one)."""
        return self.spec

    def autocast(self):
        """Mixed precision on CUDA, nothing elsewhere."""
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """``(C, X, Y, Z)`` float32 numpy -> ``(1, C, X, Y, Z)`` tensor on the device."""
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None].to(self.device)

    @property
    def cancel_modules(self) -> list[torch.nn.Module]:
        """The modules whose forward pre-hooks see a cancel (:func:`braingui.inference.interrupt.interruptible`)."""
        return [self.network]


class SegmentationModel(LoadedModel):
    """A segmentation bundle, loaded (see the module docstring)."""

    backend = "torch"
    """What runs the forward: ``"torch"`` or ``"openvino"`` (:attr:`runner`)."""
    backend_note: str | None = None
    """Why the backend asked for is not the one used (a warning for the result), or ``None``."""

    @property
    def runner(self) -> torch.nn.Module:
        """The module that computes the forward: the OpenVINO model when one is attached, else the network."""
        return getattr(self, "_runner", None) or self.network

    def use_runner(self, runner: torch.nn.Module | None, backend: str, note: str | None = None) -> None:
        """Run forwards through ``runner`` (``None``: the torch network) and record the choice."""
        self._runner, self.backend, self.backend_note = runner, backend, note

    @property
    def cancel_modules(self) -> list[torch.nn.Module]:
        """The modules whose forward pre-hooks see a cancel (:func:`braingui.inference.interrupt.interruptible`)."""
        return [self.network] + ([self.runner] if self.runner is not self.network else [])

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """One window through :attr:`runner`; an OpenVINO failure switches this model to torch for good
        (with :attr:`backend_note` saying why) and the window is computed again in torch."""
        runner = self.runner
        if runner is self.network:
            return runner(x)
        try:
            return runner(x)
        except BrainguiError:  # a cancel (the pipeline's Cancelled) is not a backend failure
            raise
        except Exception as exc:  # noqa: BLE001 - OpenVINO's runtime raises RuntimeError and others
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            self.use_runner(None, "torch", f"{self.bundle.name}: OpenVINO failed during the segmentation "
                                           f"({type(exc).__name__}: {first}); segmentation ran in torch")
            return self.network(x)

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
                    out = self._forward(x[(Ellipsis,) + sl])
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

    def cam_choice(self, method: str | None = None, layer: str | None = None) -> tuple[str, str]:
        """``(method, layer)`` of the maps: the given ones, else the manifest's (``gradcam.method`` /
        ``gradcam.layer``); neither is checked here (:meth:`check_cam_choice` does)."""
        return method or self.spec.cam_method, layer or self.spec.cam_layer

    def check_cam_choice(self, method: str | None = None, layer: str | None = None) -> tuple[str, str]:
        """:meth:`cam_choice`, checked against :data:`~braingui.inference.cam_methods.METHODS` and this
        network's :func:`~braingui.inference.cam_methods.cam_layers`.

        Raises:
            CamError: an unknown method or layer, one line naming the valid ones.
        """
        from braingui.inference.cam_methods import check_layer, check_method

        method, layer = self.cam_choice(method, layer)
        check_method(method)
        check_layer(self.network, layer)
        return method, layer

    def probabilities(self, array: np.ndarray) -> np.ndarray:
        """Softmax class probabilities ``(n_classes,)`` float64 of a prepared input (no Grad-CAM)."""
        with torch.no_grad(), self.autocast():
            logits = self.network(self.tensor(array))
        return softmax(logits)

    def explain(self, array: np.ndarray, class_index: int | None = None, *, on_input_grid: bool = True,
                method: str | None = None, layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and the class activation map of one class, in one forward + backward (fp32).

        Args:
            array: float32 ``(C, X, Y, Z)`` network input.
            class_index: the class to explain; ``None`` = the predicted class.
            on_input_grid: resize the map to the input grid; ``False`` keeps the layer's own (coarser)
                grid, which spans the same field of view, for callers that resample it once themselves.
            method, layer: the map's method and layer (``None``: the manifest's, :meth:`cam_choice`).

        Returns:
            ``(probabilities (n_classes,) float64, cam float32 (X, Y, Z) in [0, 1])``, the cam on the input
            grid (or the layer's grid).

        Raises:
            CamError: unknown method or layer, or no map at that layer.
        """
        from braingui.inference.cam_methods import compute_cam, upsample

        method, layer = self.cam_choice(method, layer)
        x = self.tensor(array)
        logits, cam = compute_cam(self.network, x, method, layer, class_index)
        return softmax(logits), (upsample(cam, x.shape[2:]) if on_input_grid else cam)


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
        backend: the segmentation forward's backend: ``auto`` (OpenVINO on the CPU when installed and the
            network converts, else torch), ``torch`` or ``openvino`` (torch with a warning when it cannot
            run); ``None`` reads ``$BRAINGUI_BACKEND`` (default ``auto``).

    Raises:
        DeviceError: unknown or unavailable device.
        BrainguiError: unknown backend.
    """

    def __init__(self, device: str = "auto", amp: bool = True, backend: str | None = None):
        from braingui.inference.openvino_backend import requested_backend

        self.device = resolve_device(device)
        self.amp = amp
        self.backend = requested_backend(backend)
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._lock = threading.RLock()  # a background preload and an analysis may load at the same time
        self._warm: set[int] = set()

    def load(self, bundle: Bundle) -> SegmentationModel | ClassificationModel:
        """The loaded model of a bundle (cached by folder and weights sha256).

        Raises:
            BundleError: see :func:`braingui.inference.bundle.load_network`.
        """
        key = (str(Path(bundle.folder).resolve()), bundle.manifest.sha256)
        with self._lock:
            model = self._models.get(key)
            if model is None:
                network = load_network(bundle).to(self.device)
                cls = SegmentationModel if bundle.task == "segmentation" else ClassificationModel
                model = cls(bundle, network, self.device, self.amp)
                if isinstance(model, SegmentationModel):
                    self._choose_backend(model)
                self._models[key] = model
            return model

    def _choose_backend(self, model: SegmentationModel) -> None:
        from braingui.inference import openvino_backend as ovb

        if self.backend == "torch" or (self.backend == "auto" and not ovb.available()):
            return
        if self.device.type != "cpu":
            if self.backend == "openvino":
                model.use_runner(None, "torch", f"OpenVINO runs on the CPU only: segmentation ran in torch on "
                                                f"{self.device}")
            return
        spec = model.spec
        try:
            runner = ovb.compile_segmentation(model.bundle, model.network, len(spec.channels),
                                              _size_multiple(model))
        except ovb.BackendError as exc:
            model.use_runner(None, "torch", f"{model.bundle.name}: {exc}; segmentation ran in torch")
            return
        model.use_runner(runner, "openvino")

    def is_loaded(self, bundle: Bundle) -> bool:
        return (str(Path(bundle.folder).resolve()), bundle.manifest.sha256) in self._models

    def warm_up(self, model: LoadedModel) -> None:
        """Run ``model`` once so that its first real pass costs what the next ones do.

        A classifier runs one forward + backward of its map method at the manifest's input shape (every
        case is resized to it): the first pass at a shape sets up oneDNN's kernels for each of its
        convolutions (about a second of CPU for DenseNet169 here) and imports what the first backward
        needs (medcam, sympy through ``torch.autograd``); then the quick explanation's batched forward of
        ``1 + C`` inputs (a batch size has kernels of its own). A segmentation model (whose input size
        varies with the case) runs one forward through its backend at :func:`warm_shape`, the size of a
        typical case. Done once per model; failures are left to the real pass to report.
        """
        with self._lock:
            if id(model) in self._warm:
                return
            self._warm.add(id(model))
        try:
            if isinstance(model, SegmentationModel):
                model.probabilities(np.zeros((len(model.spec.channels),) + warm_shape(model), np.float32))
            elif isinstance(model, ClassificationModel):
                from braingui.inference.faithfulness import classify

                rng = np.random.default_rng(0)
                shape = (len(model.spec.channels),) + tuple(model.spec.shape)
                x = rng.standard_normal(shape).astype(np.float32)
                model.explain(x, on_input_grid=False)
                n = 1 + len(model.spec.channels)  # the quick explanation's one batched forward (its own kernels)
                classify(model.network, model.tensor(x).expand(n, *shape).contiguous())
        except Exception:  # noqa: BLE001 - a warm-up never fails a run; the real pass reports problems
            with self._lock:  # a cancelled or failed warm-up may be tried again
                self._warm.discard(id(model))


TYPICAL_BRAIN_MM = (140, 172, 140)
"""Bounding box (mm, R-L x A-P x I-S) of an adult brain: the case grid (1 mm) :func:`warm_shape` starts from."""


def warm_shape(model: SegmentationModel) -> tuple[int, int, int]:
    """Spatial shape of the segmentation warm-up input: what a typical case gives the network (the network grid
    of a 1 mm brain of :data:`TYPICAL_BRAIN_MM`, :func:`braingui.inference.limits.segmentation_input`; the
    sliding window when it has one). A full-size first pass sets up the backend's buffers for the sizes real
    cases have (OpenVINO: its first pass at 72x88x72 took 0.32-0.57 s here, later ones 0.28-0.33 s at this or
    another similar shape)."""
    spec = model.spec
    size = segmentation_input(spec.crop, spec.zoom, _size_multiple(model), TYPICAL_BRAIN_MM)
    if spec.roi_size is not None:  # a multiple of the size multiple (the manifest checks it)
        size = tuple(min(s, r) for s, r in zip(size, spec.roi_size))
    return size


def _size_multiple(model: SegmentationModel) -> int:
    """The size multiple a SegResNet's input needs (``2 ** levels``; at least the manifest's ``multiple``)."""
    from braingui.inference.networks import segresnet_levels

    return max(int(model.spec.multiple), 2 ** segresnet_levels(model.bundle.manifest.kwargs))
