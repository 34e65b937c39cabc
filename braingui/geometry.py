"""Voxel grids and the exact maps between them.

* :class:`Grid` — a case's RAS+ grid and the way back to each file's original voxel order
  (the reorientation of ``nibabel.as_closest_canonical`` and its inverse).
* :class:`Box` — an axis-aligned crop that may reach outside the volume (padding); ``extract`` then
  ``paste`` is the identity inside the box.
* :func:`resize_linear` / :func:`resize_nearest` — separable resampling of the last three axes with
  voxel-centre alignment (``align_corners=False``, as ``torch.nn.functional.interpolate``).
* :class:`GridMap` — crop + resize from a case grid to a network grid, its inverse, and the network
  grid's affine, so a map produced on the network grid lands at the right world position.

All arrays are indexed ``[..., x, y, z]``; only the last three axes are spatial.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

Shape3 = tuple[int, int, int]

COPY_TILE = (64, 8)
"""Tile (along the first two of the last three axes) of :func:`c_order_copy`: the whole last axis, 64 x 8 of
the other two (fastest of the sizes tried for a 240x240x155 Fortran-ordered int16 volume seen in RAS order)."""


def c_order_copy(array: np.ndarray, dtype=None) -> np.ndarray:
    """A C-ordered copy of ``array`` (any strides: a view with flips and transposes) as ``dtype`` (default its
    own; values converted as ``np.copyto(..., casting="unsafe")``).

    A NIfTI file's voxels are in Fortran order, so seeing them in canonical C order is a 3D transpose; numpy
    makes it in one pass that walks the source across memory (47 ms for a 240x240x155 int16 volume to float32
    here). Copied tile by tile, each tile's source and destination stay in the cache: 15 ms, the same values.
    """
    out = np.empty(array.shape, dtype=array.dtype if dtype is None else np.dtype(dtype))
    if array.ndim < 3 or array.flags.c_contiguous or array.size == 0:
        np.copyto(out, array, casting="unsafe")
        return out
    bx, by = COPY_TILE
    nx, ny = array.shape[-3:-1]
    for lead in np.ndindex(array.shape[:-3]):
        for x0 in range(0, nx, bx):
            for y0 in range(0, ny, by):
                tile = (*lead, slice(x0, x0 + bx), slice(y0, y0 + by))
                np.copyto(out[tile], array[tile], casting="unsafe")
    return out


@dataclass(frozen=True)
class Grid:
    """A case's canonical (RAS+) voxel grid and its relation to the files' original grid.

    Attributes:
        shape: canonical shape ``(X, Y, Z)``.
        affine: canonical voxel -> world (mm, RAS) affine.
        original_shape: shape as stored in the files.
        original_affine: affine as stored in the files.
        ornt: nibabel orientation array mapping original axes to canonical ones.
    """

    shape: Shape3
    affine: np.ndarray
    original_shape: Shape3
    original_affine: np.ndarray
    ornt: np.ndarray

    @classmethod
    def from_original(cls, shape: Shape3, affine: np.ndarray) -> "Grid":
        """The canonical grid of a file with ``shape`` and ``affine`` (as ``as_closest_canonical``)."""
        ornt = nib.orientations.io_orientation(affine)
        shape = tuple(int(s) for s in shape[:3])
        canon_affine = affine @ nib.orientations.inv_ornt_aff(ornt, shape)
        canon_shape = tuple(int(shape[int(ax)]) for ax in np.argsort(ornt[:, 0]))
        return cls(canon_shape, canon_affine, shape, np.array(affine, dtype=np.float64), ornt)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical axes."""
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def original_axcodes(self) -> tuple[str, str, str]:
        """Orientation codes of the files before reorientation, e.g. ``('L', 'P', 'S')``."""
        return tuple(nib.aff2axcodes(self.original_affine))

    def canonical_view(self, array: np.ndarray) -> np.ndarray:
        """An array in the files' voxel order (last 3 axes) seen in canonical order (a view: flips, transposes)."""
        lead = array.ndim - 3
        ornt = np.vstack([[[i, 1] for i in range(lead)], self.ornt + [lead, 0]]) if lead else self.ornt
        return nib.orientations.apply_orientation(array, ornt)

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """Reorder an array in the files' voxel order (last 3 axes) into canonical order (a copy)."""
        return c_order_copy(self.canonical_view(array))  # always a copy

    def to_original(self, array: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_canonical`: canonical order -> the files' voxel order (a copy)."""
        inverse = _ornt_relative(self.ornt)
        lead = array.ndim - 3
        ornt = np.vstack([[[i, 1] for i in range(lead)], inverse + [lead, 0]]) if lead else inverse
        return c_order_copy(nib.orientations.apply_orientation(array, ornt))  # always a copy

    def world_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """World (mm) -> canonical voxel coordinates (floats)."""
        return nib.affines.apply_affine(np.linalg.inv(self.affine), xyz)

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Canonical voxel coordinates -> world (mm)."""
        return nib.affines.apply_affine(self.affine, ijk)


def _ornt_relative(ornt: np.ndarray) -> np.ndarray:
    """Orientation that undoes ``ornt`` (canonical axis order back to the original one)."""
    inverse = np.zeros_like(ornt)
    for src_axis, (dst_axis, flip) in enumerate(ornt):
        inverse[int(dst_axis)] = [src_axis, flip]
    return inverse


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``[start, start + size)`` in voxels; may extend past the volume.

    Attributes:
        start: first voxel along each axis (negative = padding before the volume).
        size: size along each axis.
    """

    start: Shape3
    size: Shape3

    @property
    def stop(self) -> Shape3:
        return tuple(s + n for s, n in zip(self.start, self.size))

    def extract(self, volume: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Cut the box out of ``volume`` (``[..., X, Y, Z]``), padding with ``fill`` outside it."""
        shape = volume.shape[-3:]
        out = np.full(volume.shape[:-3] + tuple(self.size), fill, dtype=volume.dtype)
        src, dst = self._overlap(shape)
        out[(Ellipsis,) + dst] = volume[(Ellipsis,) + src]
        return out

    def paste(self, patch: np.ndarray, shape: Shape3, fill: float = 0.0) -> np.ndarray:
        """Put ``patch`` (``[..., *size]``) back onto a grid of ``shape``; inverse of :meth:`extract`."""
        if tuple(patch.shape[-3:]) != tuple(self.size):
            raise ValueError(f"patch shape {patch.shape[-3:]} does not match box size {self.size}")
        out = np.full(patch.shape[:-3] + tuple(shape), fill, dtype=patch.dtype)
        src, dst = self._overlap(tuple(shape))
        out[(Ellipsis,) + src] = patch[(Ellipsis,) + dst]
        return out

    def _overlap(self, shape: Shape3) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        src, dst = [], []
        for start, size, n in zip(self.start, self.size, shape):
            lo, hi = max(start, 0), min(start + size, n)
            hi = max(hi, lo)
            src.append(slice(lo, hi))
            dst.append(slice(lo - start, hi - start))
        return tuple(src), tuple(dst)


def bounding_box(mask: np.ndarray) -> tuple[Shape3, Shape3] | None:
    """``(lo, hi)`` inclusive-exclusive bounds of the True voxels of a 3D mask, or ``None`` if empty."""
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        if idx.size == 0:
            return None
        lo.append(int(idx[0]))
        hi.append(int(idx[-1]) + 1)
    return tuple(lo), tuple(hi)


def box_centered(lo: Shape3, hi: Shape3, size: Shape3) -> Box:
    """A box of fixed ``size`` centred on the bounds ``[lo, hi)`` (the paper's 160x192x128 crop)."""
    start = tuple(int(l + (h - l - s) // 2) for l, h, s in zip(lo, hi, size))
    return Box(start, tuple(int(s) for s in size))


def box_multiple(lo: Shape3, hi: Shape3, multiple: int = 8, margin: int = 0) -> Box:
    """The bounds ``[lo, hi)`` grown by ``margin`` and padded evenly to a multiple of ``multiple``."""
    starts, sizes = [], []
    for l, h in zip(lo, hi):
        l, h = l - margin, h + margin
        n = h - l
        padded = -(-n // multiple) * multiple
        extra = padded - n
        starts.append(int(l - extra // 2))
        sizes.append(int(padded))
    return Box(tuple(starts), tuple(sizes))


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights for linear resampling along one axis (voxel centres aligned)."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def resize_linear(array: np.ndarray, shape: Shape3) -> np.ndarray:
    """Resize the last three axes of ``array`` to ``shape`` by separable linear interpolation.

    Voxel centres are aligned (``align_corners=False``), the convention of ``torch`` interpolation and of
    :meth:`GridMap.affine`. Returns float32.
    """
    out = np.asarray(array, dtype=np.float32)
    for k, n_out in enumerate(shape):
        axis = out.ndim - 3 + k
        n_in = out.shape[axis]
        if n_in == n_out:
            continue
        i0, i1, w = _axis_weights(n_in, n_out)
        bshape = [1] * out.ndim
        bshape[axis] = n_out
        w = w.reshape(bshape)
        a = np.take(out, i0, axis=axis)
        b = np.take(out, i1, axis=axis)
        out = a + (b - a) * w
    return out


def resize_nearest(array: np.ndarray, shape: Shape3) -> np.ndarray:
    """Resize the last three axes of ``array`` to ``shape`` by nearest neighbour (labels)."""
    out = array
    for k, n_out in enumerate(shape):
        axis = out.ndim - 3 + k
        n_in = out.shape[axis]
        if n_in == n_out:
            continue
        idx = np.minimum(np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.intp), n_in - 1)
        out = np.take(out, idx, axis=axis)
    return out


@dataclass(frozen=True)
class GridMap:
    """Crop a case grid to ``box`` and resample it to ``out_shape`` (a network's input grid).

    ``forward`` takes case-grid arrays to the network grid; ``inverse`` takes network-grid maps back
    onto the case grid, voxel-exactly when ``out_shape == box.size``.

    Attributes:
        box: the crop on the case grid.
        out_shape: the network grid shape.
        shape: the case grid shape.
    """

    box: Box
    out_shape: Shape3
    shape: Shape3

    @property
    def scale(self) -> tuple[float, float, float]:
        """Case voxels per network voxel along each axis."""
        return tuple(b / o for b, o in zip(self.box.size, self.out_shape))

    def forward(self, array: np.ndarray, fill: float = 0.0, order: int = 1) -> np.ndarray:
        """Case grid (``[..., X, Y, Z]``) -> network grid (``[..., *out_shape]``)."""
        patch = self.box.extract(array, fill)
        if tuple(self.box.size) == tuple(self.out_shape):
            return patch
        return resize_linear(patch, self.out_shape) if order == 1 else resize_nearest(patch, self.out_shape)

    def inverse(self, array: np.ndarray, fill: float = 0.0, order: int = 1) -> np.ndarray:
        """Network grid (``[..., *out_shape]``) -> case grid (``[..., *shape]``), ``fill`` outside the box."""
        if tuple(self.box.size) != tuple(self.out_shape):
            array = resize_linear(array, self.box.size) if order == 1 else resize_nearest(array, self.box.size)
        return self.box.paste(np.asarray(array), self.shape, fill)

    def affine(self, case_affine: np.ndarray) -> np.ndarray:
        """Voxel -> world affine of the network grid, given the case grid's affine."""
        scale = np.diag(list(self.scale) + [1.0])
        shift = np.eye(4)
        # network voxel i has its centre at case voxel start + (i + 0.5) * scale - 0.5
        shift[:3, 3] = [s + 0.5 * sc - 0.5 for s, sc in zip(self.box.start, self.scale)]
        return case_affine @ shift @ scale
