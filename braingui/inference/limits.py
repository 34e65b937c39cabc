"""Limits on what a model bundle's manifest may ask of the app (torch-free).

A manifest sets the network's input size, resampling (``zoom``) and sliding window; a hostile or
careless one could ask for a 2048-voxel input, a fourfold upsampling or a million sliding windows,
and the app would end in ``MemoryError`` or compute for hours. These checks bound the work on a
*reference case* the size of a BraTS volume (240x240x155 voxels, the largest input the app is built
for once the brain is cropped), so a manifest that passes runs on such a case in bounded memory
and time:

* one network input (a sliding window, or the whole cropped volume) holds at most
  :data:`MAX_WINDOW_VOXELS` voxels (240x240x160, MONAI's ``brats_mri_segmentation`` whole-volume input);
* the sliding window takes at most :data:`MAX_WINDOWS` windows and all of them together cover at most
  :data:`MAX_WORK_FACTOR` times :data:`MAX_WINDOW_VOXELS` (a small window with a high overlap
  recomputes each voxel many times);
* a classification input holds at most :data:`MAX_CLASSIFIER_VOXELS` voxels (the paper's 120x148x120
  is 2.1 M) and each side is 8 to 256 voxels.

The manifest file itself is at most :data:`MAX_MANIFEST_BYTES` and nests at most :data:`MAX_JSON_DEPTH`
levels (the shipped manifests: under 40 kB, 6 levels).

Window positions follow ``monai.inferers.sliding_window_inference`` (see
:func:`braingui.inference.predictor.window_slices`).
"""

from __future__ import annotations

import math

REFERENCE_CASE = (240, 240, 155)
"""The reference case grid (BraTS, 1 mm): the bounds below are checked on it."""
MAX_WINDOW_VOXELS = 240 * 240 * 160
MAX_WINDOWS = 10_000
MAX_WORK_FACTOR = 8
MAX_CLASSIFIER_VOXELS = 1 << 22
CLASSIFIER_SIDE = (8, 256)
SEGMENTATION_SIDE = (8, 512)
MAX_MANIFEST_BYTES = 4 << 20
MAX_JSON_DEPTH = 64


class LimitError(ValueError):
    """A manifest value beyond the limits; ``field`` is its dotted name (``input.roi_size``)."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"'{field}' {problem}")


def json_depth(data: object) -> int:
    """The nesting depth of parsed JSON (iterative; stops counting past :data:`MAX_JSON_DEPTH`)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, level)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            todo.extend((v, level + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _round_up(n: float, multiple: int) -> int:
    return int(-(-int(round(n)) // multiple) * multiple)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def window_count(image: tuple[int, int, int], roi: tuple[int, int, int], overlap: float) -> int:
    """How many sliding windows cover ``image`` (MONAI's positions; the roi clipped to the image)."""
    count = 1
    for s, r in zip(image, roi):
        r = min(r, s)
        step = r if r == s else max(int(r * (1 - overlap)), 1)
        count *= 1 if s <= r else math.ceil((s - r) / step) + 1
    return count


def segmentation_input(crop: str | tuple[int, int, int], zoom: float, multiple: int,
                       case: tuple[int, int, int] = REFERENCE_CASE) -> tuple[int, int, int]:
    """The network grid of a whole ``case`` grid (the largest a brain bounding box can be)."""
    if crop != "bbox":
        return tuple(int(s) for s in crop)
    return tuple(_round_up(s * zoom, multiple) for s in case)


def check_segmentation(crop: str | tuple[int, int, int], zoom: float, multiple: int,
                       roi: tuple[int, int, int] | None, overlap: float) -> None:
    """Refuse a segmentation input policy whose work on the reference case exceeds the limits.

    Args:
        crop, zoom, multiple, roi, overlap: the manifest's ``input`` values (already type-checked).

    Raises:
        LimitError: naming the field to change (``input.zoom``, ``input.crop``, ``input.roi_size``,
            ``input.sw_overlap``).
    """
    lo, hi = SEGMENTATION_SIDE
    for field, shape in (("input.crop", None if crop == "bbox" else crop), ("input.roi_size", roi)):
        if shape is not None and not all(lo <= s <= hi for s in shape):
            raise LimitError(field, f"{list(shape)}: each size must be {lo} to {hi} voxels")
    grid = segmentation_input(crop, zoom, multiple)
    covers = roi is None or all(s <= r for s, r in zip(grid, roi))
    window = grid if covers else tuple(min(r, s) for r, s in zip(roi, grid))
    voxels = math.prod(window)
    ref = f"a {_shape(REFERENCE_CASE)} case"
    if voxels > MAX_WINDOW_VOXELS:
        field = "input.crop" if crop != "bbox" and covers else "input.roi_size" if not covers else "input.zoom"
        raise LimitError(field, f"makes a network input of {_shape(window)} voxels on {ref} "
                         f"({voxels / MAX_WINDOW_VOXELS:.1f} x the largest allowed, 240x240x160); "
                         "use a smaller zoom or crop, or a sliding window (input.roi_size)")
    if covers:
        return
    windows = window_count(grid, roi, overlap)
    work = windows * voxels
    if windows > MAX_WINDOWS or work > MAX_WORK_FACTOR * MAX_WINDOW_VOXELS:
        field = "input.sw_overlap" if overlap > 0.5 else "input.roi_size"
        raise LimitError(field, f"roi_size {list(roi)} with sw_overlap {overlap} takes {windows} sliding windows "
                         f"on {ref} ({work / MAX_WINDOW_VOXELS:.1f} x a whole volume of work; limits "
                         f"{MAX_WINDOWS} windows, {MAX_WORK_FACTOR} x): use a larger roi_size or less overlap")


def check_classification(shape: tuple[int, int, int], levels: int = 0) -> None:
    """Refuse a classification input shape beyond the limits.

    Args:
        shape: ``input.shape``.
        levels: how many times the network halves its input (each side must stay >= 1 voxel deep in).

    Raises:
        LimitError: naming ``input.shape``.
    """
    lo, hi = CLASSIFIER_SIDE
    lo = max(lo, 2 ** levels)
    if not all(lo <= s <= hi for s in shape):
        raise LimitError("input.shape", f"{list(shape)}: each size must be {lo} to {hi} voxels")
    if math.prod(shape) > MAX_CLASSIFIER_VOXELS:
        raise LimitError("input.shape", f"{list(shape)} is {math.prod(shape)} voxels; at most "
                         f"{MAX_CLASSIFIER_VOXELS} (about 161^3; the paper's input is 120x148x120)")
