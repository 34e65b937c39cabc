"""The OpenVINO backend for the segmentation forward on the CPU (torch stays the fallback and runs Grad-CAM).

On this project's CPUs OpenVINO's CPU plugin runs the shipped SegResNet's forward in about 0.35-0.65 of
torch eager's time, in fp32 (``INFERENCE_PRECISION_HINT = f32``: the plugin's default on CPUs with
AVX512-BF16 is bf16, which moved voxels across the 0.5 threshold), with sigmoid probabilities within
1e-5 of torch's. The predictor (:mod:`.predictor`) picks it by itself when the ``openvino`` package is
installed and the network converts and agrees with torch; any failure leaves the model on torch with a
warning, never without a result.

* :func:`available` — is the package installed (no import);
* :func:`requested_backend` — ``auto`` / ``torch`` / ``openvino`` from the caller or ``$BRAINGUI_BACKEND``;
* :func:`compile_segmentation` — the torch network -> an :class:`OpenVinoForward`: converted once with
  ``openvino.convert_model`` (example input ``(1, C, m, m, m)`` with ``m`` four times the network's size
  multiple, spatial dimensions left dynamic so one conversion serves every case), checked against torch
  on that input, and kept in the user cache folder (``$BRAINGUI_CACHE_DIR/openvino`` or the platformdirs
  user cache) keyed by the weights' sha256, the network, its kwargs and the OpenVINO version; a cached
  model is used only when the sha256 of its files matches the record written with them, else converted
  again;
* :class:`OpenVinoForward` — the compiled model as a ``torch.nn.Module`` whose forward takes and returns
  tensors, so the sliding windows and the test-time augmentation run unchanged; it waits for the
  asynchronous inference in short steps through a child module, so the pipeline's cancel hooks
  (:mod:`.interrupt`) stop a pass within about 50 ms.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from braingui.atomic import write_json
from braingui.errors import BrainguiError
from braingui.inference.manifest import Bundle

BACKENDS = ("auto", "torch", "openvino")
"""What a caller (or ``$BRAINGUI_BACKEND``) may ask for; ``auto`` = OpenVINO on the CPU when installed."""
ENV_BACKEND = "BRAINGUI_BACKEND"
FORMAT = 1
"""Bump to convert every cached model again (a change in how models are converted)."""
TOLERANCE = 1e-3
"""Largest sigmoid-probability difference from torch accepted at conversion (measured: 6e-6 in fp32)."""
POLL_MS = 50
"""Step in which a running inference looks for a cancel."""

_CORE = None
_CORE_LOCK = threading.Lock()


class BackendError(BrainguiError):
    """OpenVINO cannot run this network (the caller falls back to torch)."""


def available() -> bool:
    """True when the ``openvino`` package is installed (checked without importing it)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        return False


def requested_backend(backend: str | None = None) -> str:
    """The backend asked for: ``backend``, else ``$BRAINGUI_BACKEND``, else ``auto``.

    Raises:
        BrainguiError: not one of :data:`BACKENDS`.
    """
    name = (backend or os.environ.get(ENV_BACKEND) or "auto").strip().lower()
    if name not in BACKENDS:
        where = "" if backend else f" (from ${ENV_BACKEND})"
        raise BrainguiError(f"unknown backend {name!r}{where}; use one of {', '.join(BACKENDS)}")
    return name


def cache_root() -> Path:
    """``$BRAINGUI_CACHE_DIR/openvino`` or ``<platformdirs user cache>/openvino``."""
    override = os.environ.get("BRAINGUI_CACHE_DIR")
    if override:
        return Path(override) / "openvino"
    from platformdirs import PlatformDirs

    return Path(PlatformDirs("braingui", appauthor=False).user_cache_dir) / "openvino"


def _core():
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE


def version() -> str:
    """The installed OpenVINO's version (imports it)."""
    import openvino as ov

    return ov.__version__


def cache_key(bundle: Bundle) -> str:
    """What the converted model depends on: weights, network, kwargs, OpenVINO version, :data:`FORMAT`."""
    m = bundle.manifest
    text = json.dumps([FORMAT, version(), m.sha256, m.network, m.kwargs], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _Probe(torch.nn.Module):
    """A do-nothing child called while waiting, so forward pre-hooks (the cancel hooks) get their turn."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class OpenVinoForward(torch.nn.Module):
    """A compiled OpenVINO model behind a torch module's interface (inference only, CPU tensors).

    Args:
        compiled: the ``openvino.CompiledModel`` (one float32 input ``(1, C, X, Y, Z)``).
        path: the cached IR file it was read from (for messages).
    """

    def __init__(self, compiled: Any, path: Path | None = None):
        super().__init__()
        self.compiled = compiled
        self.path = path
        self.probe = _Probe()
        self._lock = threading.Lock()  # one inference request, one caller at a time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, C, X, Y, Z)`` float32 tensor -> the network's logits ``(1, R, X, Y, Z)`` float32 tensor."""
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        with self._lock:
            request = self.compiled.create_infer_request()
            request.start_async({0: array})
            try:
                while True:
                    self.probe(x)  # raises the pipeline's Cancelled once its event is set
                    if request.wait_for(POLL_MS):
                        break
            except BaseException:
                request.cancel()
                raise
            out = np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        return torch.from_numpy(out)


def _example(channels: int, multiple: int) -> torch.Tensor:
    size = max(int(multiple), 1) * 4
    generator = torch.Generator().manual_seed(0)
    return torch.randn((1, channels, size, size, size), generator=generator)


def _compile(model: Any):
    return _core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def _read_cached(xml: Path, bin_: Path, record: Path):
    """The cached model, or ``None`` when it is missing or its files do not match their record."""
    try:
        saved = json.loads(record.read_text())
        if saved.get("xml") != _file_sha256(xml) or saved.get("bin") != _file_sha256(bin_):
            return None
        return _core().read_model(str(xml), str(bin_))
    except (OSError, ValueError, RuntimeError):
        return None


def _convert_and_store(network: torch.nn.Module, example: torch.Tensor, folder: Path, key: str):
    import openvino as ov

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: harmless
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace, which OpenVINO's converter uses
        model = ov.convert_model(network, example_input=example,
                                 input=[(ov.PartialShape([1, example.shape[1], -1, -1, -1]), ov.Type.f32)])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=folder))
        try:
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
            record = {"xml": _file_sha256(tmp / "model.xml"), "bin": _file_sha256(tmp / "model.bin"),
                      "openvino": version(), "format": FORMAT}
            os.replace(tmp / "model.bin", folder / f"{key}.bin")
            os.replace(tmp / "model.xml", folder / f"{key}.xml")
            write_json(record, folder / f"{key}.json")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # a read-only or full cache folder: use the converted model without keeping it
    return model


def _agreement(network: torch.nn.Module, forward: OpenVinoForward, example: torch.Tensor) -> float:
    with torch.no_grad():
        ref = torch.sigmoid(network(example).float())
        got = torch.sigmoid(forward(example))
    if got.shape != ref.shape:
        raise BackendError(f"OpenVINO output shape {tuple(got.shape)} differs from torch's {tuple(ref.shape)}")
    return float((got - ref).abs().max())


def compile_segmentation(bundle: Bundle, network: torch.nn.Module, channels: int, multiple: int,
                         cache: Path | None = None) -> OpenVinoForward:
    """The bundle's segmentation network compiled by OpenVINO for the CPU (converted once, then cached).

    Args:
        bundle: where the network came from (its weights' sha256 keys the cache).
        network: the loaded torch network (eval mode, CPU).
        channels: input channels.
        multiple: the network's input size multiple (``2 ** levels`` for a SegResNet).
        cache: the cache folder (default :func:`cache_root`).

    Returns:
        The :class:`OpenVinoForward`.

    Raises:
        BackendError: not installed, the conversion failed, or its output differs from torch's by more
            than :data:`TOLERANCE` (the message says which).
    """
    if not available():
        raise BackendError("the openvino package is not installed")
    folder = cache or cache_root()
    try:
        key = cache_key(bundle)
        xml, bin_, record = folder / f"{key}.xml", folder / f"{key}.bin", folder / f"{key}.json"
        model = _read_cached(xml, bin_, record) if xml.is_file() and bin_.is_file() and record.is_file() else None
        fresh = model is None
        example = _example(channels, multiple)
        if fresh:
            model = _convert_and_store(network, example, folder, key)
        forward = OpenVinoForward(_compile(model), xml)
        if fresh:  # checked once, when converted; the record then vouches for the cached files
            diff = _agreement(network, forward, example)
            if not diff <= TOLERANCE:
                for path in (record, xml, bin_):
                    path.unlink(missing_ok=True)
                raise BackendError(f"OpenVINO's probabilities differ from torch's by {diff:.2g} "
                                   f"(more than {TOLERANCE:g})")
        return forward
    except BackendError:
        raise
    except Exception as exc:  # noqa: BLE001 - OpenVINO's converters raise many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BackendError(f"OpenVINO could not convert the network ({type(exc).__name__}: {first})") from exc
