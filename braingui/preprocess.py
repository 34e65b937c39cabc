"""The paper's preprocessing, with exact inverses.

Segmentation (paper IV-A-1, after Myronenko 2018): the four modalities as channels in a declared order,
z-scored per channel over the non-zero (brain) voxels, then cropped around the brain — either to a fixed
size (the paper's 160x192x128) centred on the brain, or to the brain's bounding box padded to a multiple
of 8 — optionally resampled by ``zoom`` for reduced-resolution models. The :class:`GridMap` kept with
the input maps network outputs back onto the case grid voxel-exactly.

Classification (paper IV-A-2): z-score, background cropped at an intensity tolerance of 1e-8, resized to
120x148x120. Its :class:`GridMap` maps a 120x148x120 heat map back onto the case grid (and gives the
network grid's affine).

Sizes and channel orders are parameters (:class:`SegmentationPrep`, :class:`ClassificationPrep`); the
model bundle manifests of :mod:`braingui.inference` fill them in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braingui.discovery import MODALITIES
from braingui.geometry import Box, GridMap, bounding_box, box_centered, box_multiple

PAPER_SEG_CROP = (160, 192, 128)
PAPER_CLS_SHAPE = (120, 148, 120)
BACKGROUND_TOLERANCE = 1e-8


@dataclass(frozen=True)
class SegmentationPrep:
    """How a segmentation network wants its input.

    Attributes:
        channels: modality order of the input channels.
        crop: ``"bbox"`` (brain bounding box padded to ``multiple``) or a fixed size ``(X, Y, Z)``.
        multiple: network input sizes must be multiples of this (8 for SegResNet's 3 downsamplings).
        zoom: resampling factor (0.5 = half resolution); 1 = native.
        margin: voxels added around the brain bounding box before padding (``"bbox"`` only).
    """

    channels: tuple[str, ...] = MODALITIES
    crop: str | tuple[int, int, int] = "bbox"
    multiple: int = 8
    zoom: float = 1.0
    margin: int = 0


@dataclass(frozen=True)
class ClassificationPrep:
    """How a classification network wants its input.

    Attributes:
        channels: modality order of the input channels.
        shape: network input size (the paper's 120x148x120).
        tolerance: intensity above which a voxel is foreground when cropping the background.
    """

    channels: tuple[str, ...] = MODALITIES
    shape: tuple[int, int, int] = PAPER_CLS_SHAPE
    tolerance: float = BACKGROUND_TOLERANCE


@dataclass(frozen=True)
class NetworkInput:
    """A preprocessed network input and the map back to the case grid.

    Attributes:
        array: float32 ``(C, *grid_map.out_shape)``.
        grid_map: case grid <-> network grid.
        channels: modality of each channel.
    """

    array: np.ndarray
    grid_map: GridMap
    channels: tuple[str, ...]


def zscore_nonzero(volume: np.ndarray) -> np.ndarray:
    """Z-score a 3D volume over its non-zero voxels; zeros (background) stay 0. Returns float32."""
    out = np.zeros(volume.shape, dtype=np.float32)
    mask = volume != 0
    if not mask.any():
        return out
    values = volume[mask].astype(np.float64)
    std = values.std()
    out[mask] = ((values - values.mean()) / (std if std > 0 else 1.0)).astype(np.float32)
    return out


def foreground_mask(volumes: np.ndarray, tolerance: float = BACKGROUND_TOLERANCE) -> np.ndarray:
    """Voxels where any channel of ``(C, X, Y, Z)`` exceeds ``tolerance`` in magnitude.

    Channel by channel into one reused boolean buffer (no ``|volumes|`` copy of the whole stack).
    """
    volumes = np.asarray(volumes)
    mask = np.zeros(volumes.shape[1:], dtype=bool)
    tmp = np.empty_like(mask)
    for channel in volumes:
        np.greater(channel, tolerance, out=tmp)
        mask |= tmp
        np.less(channel, -tolerance, out=tmp)
        mask |= tmp
    return mask


def zscore_stack(stack: np.ndarray) -> np.ndarray:
    """:func:`zscore_nonzero` of each channel of ``(C, X, Y, Z)``, as one float32 array."""
    return np.stack([zscore_nonzero(c) for c in stack])


def _round_up(n: float, multiple: int) -> int:
    return int(-(-int(round(n)) // multiple) * multiple)


def segmentation_map(stack: np.ndarray, prep: SegmentationPrep) -> GridMap:
    """The case grid -> network grid map for a segmentation input.

    Args:
        stack: float32 ``(C, X, Y, Z)`` raw intensities (used only to find the brain).
        prep: the network's input policy.
    """
    shape = tuple(stack.shape[-3:])
    bounds = bounding_box(foreground_mask(stack)) or ((0, 0, 0), shape)
    lo, hi = bounds
    if prep.crop == "bbox":
        step = int(round(prep.multiple / prep.zoom))
        box = box_multiple(lo, hi, multiple=max(step, 1), margin=prep.margin)
        out_shape = tuple(_round_up(s * prep.zoom, prep.multiple) for s in box.size)
    else:
        out_shape = tuple(int(s) for s in prep.crop)
        box = box_centered(lo, hi, tuple(int(round(s / prep.zoom)) for s in out_shape))
    return GridMap(box, out_shape, shape)


def prepare_segmentation(stack: np.ndarray, prep: SegmentationPrep = SegmentationPrep(),
                         normed: np.ndarray | None = None) -> NetworkInput:
    """Segmentation network input from raw modalities.

    Args:
        stack: float32 ``(C, X, Y, Z)`` in ``prep.channels`` order, RAS+ (``Case.stack(prep.channels)``).
        prep: the network's input policy.
        normed: :func:`zscore_stack` of ``stack`` when the caller has it (both networks share it).

    Returns:
        The z-scored, cropped (and resampled) input with its map back to the case grid.
    """
    grid_map = segmentation_map(stack, prep)
    normed = zscore_stack(stack) if normed is None else normed
    return NetworkInput(grid_map.forward(normed).astype(np.float32, copy=False), grid_map, tuple(prep.channels))


def prepare_classification(stack: np.ndarray, prep: ClassificationPrep = ClassificationPrep(),
                           normed: np.ndarray | None = None) -> NetworkInput:
    """Classification network input from raw modalities (paper IV-A-2).

    Args:
        stack: float32 ``(C, X, Y, Z)`` in ``prep.channels`` order, RAS+.
        prep: the network's input policy.
        normed: :func:`zscore_stack` of ``stack`` when the caller has it.

    Returns:
        The z-scored, background-cropped input resized to ``prep.shape``, with its map back.
    """
    shape = tuple(stack.shape[-3:])
    bounds = bounding_box(foreground_mask(stack, prep.tolerance)) or ((0, 0, 0), shape)
    box = Box(bounds[0], tuple(h - l for l, h in zip(*bounds)))
    grid_map = GridMap(box, tuple(prep.shape), shape)
    normed = zscore_stack(stack) if normed is None else normed
    return NetworkInput(grid_map.forward(normed), grid_map, tuple(prep.channels))
