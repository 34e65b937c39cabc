"""Resampling a volume onto another grid of the same session, in world coordinates.

Two series of one MR session share a frame of reference: their affines map voxels to the same
scanner (world) space, so a voxel of the reference grid finds its value in another series at
``inv(A_src) @ A_ref @ ijk``. :func:`resample_to` evaluates that with linear interpolation
(``scipy.ndimage.affine_transform``, the matrix form of ``map_coordinates``, with no coordinate array
in memory). Series from different sessions need registration, which is not done here.

All arrays are ``(I, J, K)`` in their file's voxel order; affines are 4x4 voxel -> world (mm).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

ROT_TOL = 1e-3
"""Largest difference between the 3x3 parts of two affines for them to count as one grid (mm)."""
SHIFT_TOL = 1e-2
"""Largest difference between two origins for them to count as one grid (mm)."""


def same_grid(shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...], affine_b: np.ndarray) -> bool:
    """True when two grids have the same shape and (within the tolerances) the same affine."""
    if tuple(shape_a[:3]) != tuple(shape_b[:3]):
        return False
    a, b = np.asarray(affine_a, dtype=np.float64), np.asarray(affine_b, dtype=np.float64)
    return bool(np.abs(a[:3, :3] - b[:3, :3]).max() <= ROT_TOL and np.abs(a[:3, 3] - b[:3, 3]).max() <= SHIFT_TOL)


def source_coordinates(src_affine: np.ndarray, ref_affine: np.ndarray) -> np.ndarray:
    """The 4x4 map from reference voxel indices to source voxel indices (``inv(src) @ ref``)."""
    return np.linalg.inv(np.asarray(src_affine, dtype=np.float64)) @ np.asarray(ref_affine, dtype=np.float64)


def resample_to(volume: np.ndarray, src_affine: np.ndarray, ref_shape: tuple[int, int, int],
                ref_affine: np.ndarray, order: int = 1) -> np.ndarray:
    """Resample ``volume`` onto the reference grid.

    Args:
        volume: ``(I, J, K)`` source volume in its file's voxel order (any real dtype).
        src_affine: its 4x4 voxel -> world affine.
        ref_shape: the reference grid's shape ``(X, Y, Z)``.
        ref_affine: the reference grid's 4x4 voxel -> world affine.
        order: 1 for linear interpolation (images), 0 for nearest neighbour (labels).

    Returns:
        float32 ``ref_shape`` array; 0 where the reference voxel lies outside the source volume.
    """
    m = source_coordinates(src_affine, ref_affine)
    out = ndimage.affine_transform(np.asarray(volume, dtype=np.float32), m[:3, :3], offset=m[:3, 3],
                                   output_shape=tuple(int(n) for n in ref_shape), order=order, mode="constant",
                                   cval=0.0, prefilter=False)
    return out.astype(np.float32, copy=False)


def coverage(src_shape: tuple[int, ...], src_affine: np.ndarray, ref_shape: tuple[int, int, int],
             ref_affine: np.ndarray, step: int = 4) -> float:
    """Fraction of the reference grid's voxel centres (sampled every ``step`` voxels) inside the source volume."""
    m = source_coordinates(src_affine, ref_affine)
    axes = [np.arange(0, n, step, dtype=np.float64) for n in ref_shape[:3]]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    src = ijk @ m[:3, :3].T + m[:3, 3]
    limit = np.asarray(src_shape[:3], dtype=np.float64) - 0.5
    inside = np.all((src >= -0.5) & (src <= limit), axis=1)
    return float(inside.mean()) if inside.size else 0.0
