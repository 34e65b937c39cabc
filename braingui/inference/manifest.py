"""Model bundle manifests: what a bundle folder says about its network (torch-free).

A *model bundle* is a folder holding a weights file and ``manifest.json``. The manifest says how to
build the network, how to prepare its input, what its outputs mean and where the weights came from, so
the app never guesses. This module reads and validates manifests only; loading weights lives in
:mod:`braingui.inference.bundle` (torch) and finding bundles in :mod:`braingui.inference.locate`.

Schema (``format_version`` 1; keys not listed are refused so that typos do not pass silently, except
inside ``network.kwargs`` and ``model_card``)::

    {
      "format_version": 1,                        # int; newer versions are refused with a clear message
      "name": "demo-segresnet",                   # shown to the user and written to results.json
      "task": "segmentation" | "classification",
      "network": {"name": "SegResNetVAE" | "SegResNet" | "DenseNet121" | "DenseNet169" | "DenseNet",
                  "kwargs": {...}},               # MONAI constructor keyword arguments (JSON lists -> tuples)
      "weights": {"file": "weights.pt",           # a file inside the bundle folder (plain state dict,
                  "sha256": "<64 hex>",           #   read with torch.load(weights_only=True))
                  "dtype": "float32" | "float16"},  # fp16 weights are loaded as fp32
      "input": {                                  # segmentation:
        "channels": ["flair", "t1", "t1ce", "t2"],  # modality of each input channel, in order
        "normalisation": "zscore_nonzero",        # z-score per channel over the non-zero voxels
        "crop": "bbox" | [160, 192, 128],         # brain bounding box padded to `multiple`, or a fixed size
        "multiple": 8, "zoom": 1.0, "margin": 0,  # size multiple, resampling factor, bbox margin (voxels)
        "roi_size": [160, 192, 128] | null,       # sliding window size on the network grid (null: always
                                                  #   the whole volume; also when the input fits in it)
        "sw_overlap": 0.25                        # sliding window overlap in [0, 1)
      },
      "input": {                                  # classification:
        "channels": [...], "normalisation": "zscore_nonzero",
        "shape": [120, 148, 120],                 # network input size after background crop + resize
        "tolerance": 1e-8                         # background crop intensity tolerance
      },
      "output": {"activation": "sigmoid", "threshold": 0.5,        # segmentation: region channels
                 "channels": ["TC", "WT", "ET"]},                  #   (a permutation of TC, WT, ET)
      "output": {"activation": "softmax", "classes": ["A", "O", "G"],           # classification
                 "class_titles": {"A": "astrocytoma", "O": "oligodendroglioma", "G": "glioblastoma"}},
      "gradcam": {"layer": "features.denseblock1",  # classification only (default as in the paper)
                  "method": "gradcam"},           # optional: gradcam | gradcam++ | hirescam | hirescam-contrastive | layercam
      "input_statistics": {                       # optional: the training data's z-scored intensity quantiles
        "normalisation": "zscore_nonzero", "quantiles": [0.01, ..., 0.99], "cases": 12,
        "sequences": {"flair": {"median": [...], "scale": [...]}, ...}},  # (braingui.intensity_stats)
      "model_card": {"summary": "...", "training_data": "...", "citations": [...], "metrics": {...},
                     "configuration": {...}, "intended_use": "...", "demo": true}
    }

Channel names are the app's modality names (``flair``, ``t1``, ``t1ce``, ``t2``); the aliases ``t1c``,
``t1gd``, ``t2f``, ``t1n``, ``t2w`` (any case) are accepted. Region and class names are kept as written.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from braingui import cam_names
from braingui.discovery import MODALITIES
from braingui.errors import BrainguiError
from braingui.inference import limits
from braingui.inference.networks import KwargsError, check_kwargs, networks_for, segresnet_levels
from braingui.intensity_stats import InputStatistics
from braingui.preprocess import ClassificationPrep, SegmentationPrep

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TASKS = ("segmentation", "classification")
SEG_NETWORKS = networks_for("segmentation")
CLS_NETWORKS = networks_for("classification")
REGION_NAMES = ("TC", "WT", "ET")
DEFAULT_CAM_LAYER = "features.denseblock1"
CAM_METHODS = cam_names.CAM_METHODS
"""The map methods a manifest may name (:data:`braingui.inference.cam_methods.METHODS` is this tuple)."""
DEFAULT_CAM_METHOD = "gradcam"
DEFAULT_CLASS_TITLES = {"A": "astrocytoma", "O": "oligodendroglioma", "G": "glioblastoma"}
_CHANNEL_ALIASES = {"t1c": "t1ce", "t1gd": "t1ce", "t2f": "flair", "t1n": "t1", "t2w": "t2"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME_LENGTH = 120


class BundleError(BrainguiError):
    """A model bundle cannot be found, read or used. The message names the bundle.

    Args:
        problem: what is wrong, in plain words.
        bundle: the bundle folder (or file) concerned.
    """

    def __init__(self, problem: str, bundle: str | os.PathLike | None = None):
        self.problem = problem
        self.bundle = os.fspath(bundle) if bundle is not None else None
        super().__init__(f"model bundle {self.bundle}: {problem}" if self.bundle else problem)


@dataclass(frozen=True, kw_only=True)
class SegmentationSpec(SegmentationPrep):
    """The ``input`` and ``output`` sections of a segmentation manifest, validated.

    The input policy fields (``channels``, ``crop``, ``multiple``, ``zoom``, ``margin``) are those of
    :class:`~braingui.preprocess.SegmentationPrep`: the spec *is* the prep that
    :func:`~braingui.preprocess.prepare_segmentation` takes. Added here:

    Attributes:
        roi_size: sliding window size on the network grid (``None``: always the whole volume).
        sw_overlap: sliding window overlap in [0, 1).
        threshold: sigmoid threshold of a region.
        regions: the region of each output channel (a permutation of TC, WT, ET).
    """

    roi_size: tuple[int, int, int] | None
    sw_overlap: float
    threshold: float
    regions: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ClassificationSpec(ClassificationPrep):
    """The ``input``, ``output`` and ``gradcam`` sections of a classification manifest, validated.

    The input policy fields (``channels``, ``shape``, ``tolerance``) are those of
    :class:`~braingui.preprocess.ClassificationPrep`: the spec *is* the prep that
    :func:`~braingui.preprocess.prepare_classification` takes. Added here:

    Attributes:
        classes: the class code of each output, in order.
        class_titles: code -> name shown to the user.
        cam_layer: the module whose class activation map is computed (``gradcam.layer``).
        cam_method: how (``gradcam.method``, one of :data:`CAM_METHODS`; default ``gradcam``).
    """

    classes: tuple[str, ...]
    class_titles: dict[str, str]
    cam_layer: str
    cam_method: str = DEFAULT_CAM_METHOD


@dataclass(frozen=True)
class Manifest:
    """A validated manifest.

    Attributes:
        name, task: as in the file.
        network: MONAI class name; ``kwargs`` its constructor arguments.
        weights_file, sha256, weights_dtype: the ``weights`` section.
        segmentation / classification: the task's spec (the other is ``None``).
        model_card: free-form model card (``demo``, ``intended_use``, metrics ...).
        raw: the dictionary as read.
        input_statistics: the training data's intensity statistics (quality checks), or ``None``.
    """

    name: str
    task: str
    network: str
    kwargs: dict[str, Any]
    weights_file: str
    sha256: str
    weights_dtype: str
    segmentation: SegmentationSpec | None
    classification: ClassificationSpec | None
    model_card: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    input_statistics: InputStatistics | None = None

    @property
    def demo(self) -> bool:
        """True for research-demonstration models."""
        return bool(self.model_card.get("demo", False))

    @property
    def channels(self) -> tuple[str, ...]:
        spec = self.segmentation or self.classification
        return spec.channels


@dataclass(frozen=True)
class Bundle:
    """A bundle folder and its validated manifest (weights not yet read)."""

    folder: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def weights_path(self) -> Path:
        return self.folder / self.manifest.weights_file


class _Checker:
    """Collects the location of a value for error messages (``input.crop`` ...)."""

    def __init__(self, where: str | os.PathLike | None):
        self.where = where

    def fail(self, problem: str) -> BundleError:
        """The error to raise: one line, at most about 300 characters of ``problem`` (values are quoted)."""
        problem = " ".join(problem.split())
        if len(problem) > 300:
            problem = problem[:297] + "..."
        return BundleError(f"{MANIFEST_NAME}: {problem}", self.where)

    def section(self, data: dict, key: str, required: bool = True) -> dict:
        value = data.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"'{key}' must be an object" + ("" if key in data else " (missing)"))
        return value

    def only(self, data: dict, allowed: tuple[str, ...], where: str) -> None:
        extra = sorted(set(data) - set(allowed))
        if extra:
            raise self.fail(f"unknown key(s) {extra} in '{where}' (allowed: {', '.join(allowed)})")

    def string(self, data: dict, key: str, where: str, default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"'{where}.{key}' must be a non-empty string" if where else f"'{key}' must be a non-empty string")
        return value

    def number(self, data: dict, key: str, where: str, default: float, lo: float, hi: float,
               lo_open: bool = False, hi_open: bool = False) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(f"'{where}.{key}' must be a finite number")
        if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
            raise self.fail(f"'{where}.{key}' = {value} is out of range "
                            f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")
        return float(value)

    def integer(self, data: dict, key: str, where: str, default: int, lo: int, hi: int | None = None) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            raise self.fail(f"'{where}.{key}' must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""))
        return value

    def shape3(self, value: Any, where: str) -> tuple[int, int, int]:
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            raise self.fail(f"'{where}' must be three positive integers, got {value!r}")
        return tuple(int(v) for v in value)

    def channels(self, data: dict, where: str) -> tuple[str, ...]:
        value = data.get("channels")
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(f"'{where}.channels' must be a list of modality names ({', '.join(MODALITIES)})")
        out = []
        for name in value:
            canon = _CHANNEL_ALIASES.get(name.lower(), name.lower())
            if canon not in MODALITIES:
                raise self.fail(f"'{where}.channels' has unknown modality {name!r} (use {', '.join(MODALITIES)})")
            out.append(canon)
        if len(set(out)) != len(out):
            raise self.fail(f"'{where}.channels' names a modality twice: {value}")
        return tuple(out)


def parse_manifest(data: Any, where: str | os.PathLike | None = None) -> Manifest:
    """Validate a manifest dictionary.

    Args:
        data: the parsed JSON.
        where: the bundle folder, for messages.

    Raises:
        BundleError: anything missing, misspelt or out of range (the message says which key).
    """
    c = _Checker(where)
    if not isinstance(data, dict):
        raise c.fail("must hold a JSON object")
    c.only(data, ("format_version", "name", "task", "network", "weights", "input", "output", "gradcam",
                  "model_card", "input_statistics"), "manifest")
    version = data.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise c.fail("'format_version' must be an integer")
    if version > FORMAT_VERSION:
        raise c.fail(f"format_version {version} is newer than this braingui understands ({FORMAT_VERSION}); "
                     "update braingui")
    if version < 1:
        raise c.fail(f"invalid format_version {version}")
    name = c.string(data, "name", "")
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise c.fail(f"'name' must be one line of at most {MAX_NAME_LENGTH} printable characters")
    task = data.get("task")
    if task not in TASKS:
        raise c.fail(f"'task' must be one of {', '.join(TASKS)}, got {task!r}")
    net = c.section(data, "network")
    c.only(net, ("name", "kwargs"), "network")
    net_name = net.get("name")
    allowed = SEG_NETWORKS if task == "segmentation" else CLS_NETWORKS
    if net_name not in allowed:
        raise c.fail(f"'network.name' must be one of {', '.join(allowed)} for {task}, got {net_name!r}")
    try:
        kwargs = check_kwargs(net_name, net.get("kwargs", {}))
    except KwargsError as exc:
        raise c.fail(str(exc)) from None
    weights = c.section(data, "weights")
    c.only(weights, ("file", "sha256", "dtype"), "weights")
    wfile = c.string(weights, "file", "weights")
    if Path(wfile).name != wfile or wfile in (".", "..") or "\\" in wfile:
        raise c.fail(f"'weights.file' must be a plain file name inside the bundle folder, got {wfile!r}")
    sha = weights.get("sha256")
    if not isinstance(sha, str) or not _HEX64.match(sha.lower()):
        raise c.fail("'weights.sha256' must be 64 hexadecimal digits")
    dtype = weights.get("dtype", "float32")
    if dtype not in ("float32", "float16"):
        raise c.fail(f"'weights.dtype' must be float32 or float16, got {dtype!r}")
    inp, out = c.section(data, "input"), c.section(data, "output")
    card = data.get("model_card", {})
    if not isinstance(card, dict):
        raise c.fail("'model_card' must be an object")
    if "demo" in card and not isinstance(card["demo"], bool):
        raise c.fail("'model_card.demo' must be true or false")
    seg = cls = None
    if task == "segmentation":
        if "gradcam" in data:
            raise c.fail("'gradcam' is for classification bundles only")
        seg = _parse_segmentation(c, inp, out)
        n_out = len(seg.regions)
    else:
        cls = _parse_classification(c, inp, out, data.get("gradcam", {}))
        n_out = len(cls.classes)
    spec_channels = (seg or cls).channels
    if "in_channels" in kwargs and kwargs["in_channels"] != len(spec_channels):
        raise c.fail(f"network.kwargs.in_channels = {kwargs['in_channels']} but input.channels lists "
                     f"{len(spec_channels)} modalities")
    if "out_channels" in kwargs and kwargs["out_channels"] != n_out:
        what = "output.channels" if seg else "output.classes"
        raise c.fail(f"network.kwargs.out_channels = {kwargs['out_channels']} but {what} has {n_out} entries")
    _check_limits(c, net_name, kwargs, seg, cls)
    stats = _input_statistics(c, data, spec_channels)
    return Manifest(name=name, task=task, network=net_name, kwargs=dict(kwargs), weights_file=wfile,
                    sha256=sha.lower(), weights_dtype=dtype, segmentation=seg, classification=cls,
                    model_card=dict(card), raw=data, input_statistics=stats)


def _input_statistics(c: _Checker, data: dict, channels: tuple[str, ...]) -> InputStatistics | None:
    """The optional ``input_statistics`` section; its sequences must be input channels."""
    if "input_statistics" not in data:
        return None
    try:
        stats = InputStatistics.from_dict(data["input_statistics"])
    except ValueError as exc:
        raise c.fail(str(exc)) from None
    unknown = sorted(set(stats.median) - set(channels))
    if unknown:
        raise c.fail(f"'input_statistics.sequences' names {unknown}, which are not in input.channels")
    return stats


def _check_limits(c: _Checker, net_name: str, kwargs: dict, seg: SegmentationSpec | None,
                  cls: ClassificationSpec | None) -> None:
    """Input sizes the network can take, and work bounded on a BraTS-sized case (:mod:`.limits`)."""
    try:
        if seg is not None:
            levels = segresnet_levels(kwargs)
            if seg.multiple % 2 ** levels:
                raise limits.LimitError("input.multiple", f"= {seg.multiple} but the network halves its input "
                                        f"{levels} times (network.kwargs.blocks_down): use a multiple of {2 ** levels}")
            limits.check_segmentation(seg.crop, seg.zoom, seg.multiple, seg.roi_size, seg.sw_overlap)
        else:
            levels = len(kwargs.get("block_config", (6, 12, 24, 16))) + 1
            limits.check_classification(cls.shape, levels)
    except limits.LimitError as exc:
        raise c.fail(str(exc)) from None


def _normalisation(c: _Checker, inp: dict) -> None:
    norm = inp.get("normalisation", "zscore_nonzero")
    if norm != "zscore_nonzero":
        raise c.fail(f"'input.normalisation' {norm!r} is not supported (only zscore_nonzero)")


def _parse_segmentation(c: _Checker, inp: dict, out: dict) -> SegmentationSpec:
    c.only(inp, ("channels", "normalisation", "crop", "multiple", "zoom", "margin", "roi_size", "sw_overlap"), "input")
    c.only(out, ("activation", "threshold", "channels"), "output")
    channels = c.channels(inp, "input")
    _normalisation(c, inp)
    crop = inp.get("crop", "bbox")
    crop = "bbox" if crop == "bbox" else c.shape3(crop, "input.crop")
    multiple = c.integer(inp, "multiple", "input", 8, 1, 64)
    zoom = c.number(inp, "zoom", "input", 1.0, 0.1, 4.0)
    margin = c.integer(inp, "margin", "input", 0, 0, 64)
    roi = inp.get("roi_size")
    roi = None if roi is None else c.shape3(roi, "input.roi_size")
    if isinstance(crop, tuple) and any(s % multiple for s in crop):
        raise c.fail(f"'input.crop' {list(crop)} must be a multiple of input.multiple = {multiple}")
    if roi is not None and any(s % multiple for s in roi):
        raise c.fail(f"'input.roi_size' {list(roi)} must be a multiple of input.multiple = {multiple}")
    overlap = c.number(inp, "sw_overlap", "input", 0.25, 0.0, 1.0, hi_open=True)
    if out.get("activation", "sigmoid") != "sigmoid":
        raise c.fail("'output.activation' must be sigmoid for segmentation (one channel per region)")
    threshold = c.number(out, "threshold", "output", 0.5, 0.0, 1.0, lo_open=True, hi_open=True)
    regions = out.get("channels")
    if (not isinstance(regions, list) or not all(isinstance(r, str) for r in regions)
            or sorted(regions) != sorted(REGION_NAMES)):
        raise c.fail(f"'output.channels' must list the regions {', '.join(REGION_NAMES)} in output order, got {regions!r}")
    return SegmentationSpec(channels=channels, crop=crop, multiple=multiple, zoom=zoom, margin=margin, roi_size=roi,
                            sw_overlap=overlap, threshold=threshold, regions=tuple(regions))


def _parse_classification(c: _Checker, inp: dict, out: dict, cam: Any) -> ClassificationSpec:
    c.only(inp, ("channels", "normalisation", "shape", "tolerance"), "input")
    c.only(out, ("activation", "classes", "class_titles"), "output")
    channels = c.channels(inp, "input")
    _normalisation(c, inp)
    shape = c.shape3(inp.get("shape"), "input.shape")
    tolerance = c.number(inp, "tolerance", "input", 1e-8, 0.0, math.inf)
    if out.get("activation", "softmax") != "softmax":
        raise c.fail("'output.activation' must be softmax for classification")
    classes = out.get("classes")
    if (not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(x, str) and x for x in classes)
            or len(set(classes)) != len(classes)):
        raise c.fail(f"'output.classes' must list two or more distinct class codes, got {classes!r}")
    titles = out.get("class_titles", {})
    if not isinstance(titles, dict) or not all(isinstance(v, str) for v in titles.values()):
        raise c.fail("'output.class_titles' must map class codes to names")
    unknown = sorted(set(titles) - set(classes))
    if unknown:
        raise c.fail(f"'output.class_titles' names classes {unknown} that are not in output.classes")
    titles = {k: titles.get(k, DEFAULT_CLASS_TITLES.get(k, k)) for k in classes}
    if not isinstance(cam, dict):
        raise c.fail("'gradcam' must be an object")
    c.only(cam, ("layer", "method"), "gradcam")
    layer = c.string(cam, "layer", "gradcam", DEFAULT_CAM_LAYER)
    method = c.string(cam, "method", "gradcam", DEFAULT_CAM_METHOD)
    if method not in CAM_METHODS:
        raise c.fail(f"'gradcam.method' {method!r} is not a map method (choose one of: {', '.join(CAM_METHODS)})")
    return ClassificationSpec(channels=channels, shape=shape, tolerance=tolerance, classes=tuple(classes),
                              class_titles=titles, cam_layer=layer, cam_method=method)


def read_bundle(folder: str | os.PathLike) -> Bundle:
    """Read and validate ``folder/manifest.json`` (the weights are not read).

    Raises:
        BundleError: no manifest, unreadable JSON, or an invalid manifest.
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"no {MANIFEST_NAME} in the folder", folder)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limits.MAX_MANIFEST_BYTES + 1)
        if len(raw) > limits.MAX_MANIFEST_BYTES:
            raise BundleError(f"{MANIFEST_NAME} is larger than {limits.MAX_MANIFEST_BYTES >> 20} MB; not read", folder)
        data = json.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise BundleError(f"cannot read {MANIFEST_NAME} ({exc.strerror or exc})", folder) from None
    except UnicodeDecodeError:
        raise BundleError(f"{MANIFEST_NAME} is not UTF-8 text", folder) from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{MANIFEST_NAME} is not valid JSON (line {exc.lineno}: {exc.msg})", folder) from None
    except RecursionError:
        raise BundleError(f"{MANIFEST_NAME} is nested too deeply to read", folder) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise BundleError(f"{MANIFEST_NAME} cannot be read ({str(exc).split(':')[0][:120]})", folder) from None
    if limits.json_depth(data) > limits.MAX_JSON_DEPTH:
        raise BundleError(f"{MANIFEST_NAME} is nested too deeply (more than {limits.MAX_JSON_DEPTH} levels)", folder)
    try:
        return Bundle(folder, parse_manifest(data, folder))
    except RecursionError:
        raise BundleError(f"{MANIFEST_NAME}: a value is nested too deeply", folder) from None
