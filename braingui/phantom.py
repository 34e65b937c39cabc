"""A deterministic, brain-like MRI phantom: FLAIR, T1, T1ce and T2 with a tumour and its labels.

It is the app's built-in demo case (``write_case`` writes a BraTS-2018-style case folder), the test
fixture of the core, and the base of synthetic tumour-type data: the tumour is described by a
:class:`TumourSpec`, so glioblastoma (ring enhancement round necrosis, wide edema), astrocytoma
(no enhancement, ``rim_mm=0``, little edema) and oligodendroglioma (cortical centre,
``calcifications``, ``patchy_enhancement`` with low ``enhancement``) are parameter sets, not code.

Geometry: the anatomy is drawn in *reference millimetres* of a 240 x 240 x 155 mm field of view that
is stretched onto whatever grid is asked for, so any shape gives the same brain. At the reference grid
(240 x 240 x 155 voxels of 1 mm) these are true millimetres; at other grids every size, including the
``*_mm`` fields of :class:`TumourSpec`, scales with the field of view. ``spacing`` only sets the affine.

Every class of tissue is a mask in one class map (:attr:`Phantom.tissues`, codes in ``TISSUES``);
intensities and labels are both looked up from that map, so labels sit exactly where contrast changes.
No patient data: every written case id contains ``SYNTHETIC`` and every header says so.
"""

from __future__ import annotations

import gzip
import os
import pathlib
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from braingui.atomic import write_bytes
from braingui.discovery import MODALITIES

REFERENCE_FOV_MM = (240.0, 240.0, 155.0)
DESCRIP = b"braingui synthetic phantom - not a patient"

#: Codes of :attr:`Phantom.tissues`.
TISSUES = {"background": 0, "csf": 1, "gm": 2, "wm": 3, "deep_gm": 4, "necrosis": 5,
           "non_enhancing": 6, "enhancing": 7, "edema": 8, "calcification": 9}
#: BraTS 2018 label of each tissue code (index = code).
_LABEL_OF_TISSUE = np.array([0, 0, 0, 0, 0, 1, 1, 4, 2, 1], dtype=np.uint8)
#: Intensity of each tissue code per modality (MRI-like units); the enhancing T1ce value is set per spec.
_INTENSITY = {
    #          bg   csf   gm    wm  deep  necr  nonenh  enh  edema calc
    "flair": (0, 120, 780, 620, 740, 850, 1100, 1050, 1250, 150),
    "t1": (0, 350, 720, 1000, 800, 420, 620, 680, 780, 200),
    "t1ce": (0, 380, 740, 1010, 820, 440, 640, 0, 800, 210),
    "t2": (0, 1500, 950, 700, 870, 1350, 1200, 1000, 1300, 180),
}


@dataclass(frozen=True)
class TumourSpec:
    """Shape and appearance of the phantom's tumour (sizes in reference millimetres, see module).

    Attributes:
        center: centre as a fraction of the brain's bounding box, RAS order (x: left->right,
            y: posterior->anterior, z: inferior->superior).
        radius_mm: radius of the tumour core (necrosis + enhancing + non-enhancing).
        necrosis_fraction: fraction of the core radius that is necrotic (label 1).
        rim_mm: enhancing rim thickness (label 4); 0 gives a non-enhancing tumour.
        enhancement: T1ce brightness of the rim, relative (0..1.5).
        edema_mm: edema margin beyond the core (label 2).
        irregularity: 0 is a sphere; larger gives a lumpier boundary (smooth random radial noise).
        calcifications: number of small dark foci inside the core (label 1).
        patchy_enhancement: 0 is a continuous rim; 1 leaves enhancing spots instead of a rim.
        calcification_mm: radius of each calcification focus.
        spare_csf: keep ventricles and sulci out of the edema (edema does not fill CSF).
    """

    center: tuple[float, float, float] = (0.62, 0.58, 0.55)
    radius_mm: float = 22.0
    necrosis_fraction: float = 0.5
    rim_mm: float = 4.0
    enhancement: float = 1.0
    edema_mm: float = 14.0
    irregularity: float = 0.3
    calcifications: int = 0
    patchy_enhancement: float = 0.0
    calcification_mm: float = 2.0
    spare_csf: bool = True

    def __post_init__(self):
        checks = {"radius_mm": self.radius_mm > 0, "necrosis_fraction": 0 <= self.necrosis_fraction < 1,
                  "rim_mm": self.rim_mm >= 0, "enhancement": 0 <= self.enhancement <= 1.5,
                  "edema_mm": self.edema_mm >= 0, "irregularity": self.irregularity >= 0,
                  "calcifications": self.calcifications >= 0, "calcification_mm": self.calcification_mm > 0,
                  "patchy_enhancement": 0 <= self.patchy_enhancement <= 1,
                  "center": len(self.center) == 3 and all(0 <= c <= 1 for c in self.center)}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"TumourSpec: out-of-range value for {', '.join(bad)}: {self}")


@dataclass(frozen=True)
class Phantom:
    """One synthetic case. Arrays are read-only and indexed ``[x, y, z]`` in RAS+ voxel order.

    Attributes:
        images: modality -> float32 (X, Y, Z); background exactly 0, brain strictly > 0.
        labels: uint8 (X, Y, Z), BraTS 2018: 0 background, 1 necrotic/non-enhancing core, 2 edema,
            4 enhancing.
        affine: 4x4 RAS+ affine of the arrays, ``diag(spacing + (1,))``.
        spacing: voxel size in mm, (x, y, z).
        tissues: uint8 (X, Y, Z) class map (codes in ``TISSUES``) that images and labels derive from.
    """

    images: dict[str, np.ndarray]
    labels: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    tissues: np.ndarray


def _axes_mm(shape):
    """Voxel-centre coordinates per axis in reference mm, centred on the field of view."""
    return [((np.arange(n, dtype=np.float32) + 0.5) / n - 0.5) * np.float32(fov)
            for n, fov in zip(shape, REFERENCE_FOV_MM)]


def _smooth_field(rng, axes, length_mm):
    """Smooth random field with unit standard deviation on the grid ``axes`` (three 1-D mm arrays).

    A sum of Gaussian bumps with random weights on a control grid of step ``length_mm``, evaluated
    separably (one einsum), so a full-size field costs tens of milliseconds.
    """
    kernels = []
    for ax in axes:
        ctrl = np.arange(ax[0] - 2 * length_mm, ax[-1] + 2.5 * length_mm, length_mm, dtype=np.float32)
        kernels.append(np.exp(-(((ax[:, None] - ctrl[None, :]) / np.float32(length_mm)) ** 2)))
    coef = rng.standard_normal([k.shape[1] for k in kernels]).astype(np.float32)
    field = np.einsum("ijk,xi,yj,zk->xyz", coef, *kernels, optimize=True)
    std = float(field[::3, ::3, ::3].std()) or 1.0
    return np.ascontiguousarray(field / np.float32(std), dtype=np.float32)


def _ellipsoid(x, y, z, centre, semi):
    """Squared normalised radius of an axis-aligned ellipsoid (broadcast over open grids)."""
    return ((x - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2 + ((z - centre[2]) / semi[2]) ** 2


def _anatomy(shape, rng):
    """Healthy class map (codes 0-4) of a head-shaped, skull-stripped brain."""
    ax = _axes_mm(shape)
    x, y, z = ax[0][:, None, None], ax[1][None, :, None], ax[2][None, None, :]
    a, b, c = (np.float32(s * (1.0 + 0.04 * g)) for s, g in zip((70.0, 84.0, 61.0), rng.standard_normal(3)))
    z0 = np.float32(4.0)
    # Head shape: wider at the back, flatter and shorter below (superellipse), random lumps.
    ax_x = a * (1.0 - 0.07 * y / b)
    zz = (z - z0) / c
    zterm = np.where(zz < 0, np.abs(zz / 0.85) ** 3, zz * zz)
    rho = np.sqrt((x / ax_x) ** 2 + (y / b) ** 2 + zterm)
    rho = rho - 0.035 * _smooth_field(rng, ax, 45.0)
    brain = rho < 1.0
    # Depth below the surface (mm), first order: (1 - rho) / |grad rho| for the base ellipsoid.
    grad = np.sqrt((x / ax_x**2) ** 2 + (y / b**2) ** 2 + ((z - z0) / c**2) ** 2) / np.maximum(rho, 0.05)
    depth = (1.0 - rho) / np.maximum(grad, 1e-3)
    # Sulci: nodal surfaces of a random wave field over the directions from the centre, so that they
    # run radially like real sulci; open to the surface, 10-30 mm deep, with rounded fundi.
    sulcal_depth = 20.0 + 5.0 * _smooth_field(rng, ax, 30.0)
    waves = rng.standard_normal((12, 3)).astype(np.float32)
    waves *= np.float32(2 * np.pi / 24.0) / np.linalg.norm(waves, axis=1, keepdims=True)
    phases = rng.uniform(0, 2 * np.pi, 12).astype(np.float32)
    shell = np.nonzero(brain & (depth < sulcal_depth + 8.0))
    sx_, sy_, sz_ = ax[0][shell[0]], ax[1][shell[1]], ax[2][shell[2]] - z0
    ux, uy, uz = sx_ / (a * (1.0 - 0.07 * sy_ / b)), sy_ / b, sz_ / c
    norm = np.float32(1.0) / np.sqrt(ux**2 + uy**2 + uz**2 + 1e-6)
    ux, uy, uz = ux * norm, uy * norm, uz * norm  # unit direction
    px, py, pz = ux * np.float32(75.0), uy * np.float32(75.0), uz * np.float32(75.0)  # on a 75 mm sphere
    gyri, gx, gy, gz = (np.zeros(ux.shape, dtype=np.float32) for _ in range(4))
    for (kx, ky, kz), phase in zip(waves, phases):
        arg = kx * px + ky * py + kz * pz + phase
        gyri += np.cos(arg)
        sin = np.sin(arg)
        gx -= kx * sin
        gy -= ky * sin
        gz -= kz * sin
    radial = gx * ux + gy * uy + gz * uz  # keep the tangential gradient only
    slope = np.sqrt((gx - radial * ux) ** 2 + (gy - radial * uy) ** 2 + (gz - radial * uz) ** 2)
    sulci = np.abs(gyri) / np.maximum(slope, np.float32(0.6 * np.pi * 2 / 24.0 * np.sqrt(6)))
    d_shell = depth[shell]
    depth[shell] = np.minimum(d_shell, sulci + np.maximum(d_shell - sulcal_depth[shell], 0) * 1.5)
    # Interhemispheric fissure down to the corpus callosum (lower at the front and back).
    fissure_floor = 20.0 - 60.0 * np.clip(np.abs(y) / b - 0.45, 0, 1)
    slab = slice(*np.searchsorted(ax[0], (-8.0, 8.0)))
    depth[slab] = np.minimum(depth[slab], np.where(z - z0 > fissure_floor, np.abs(x[slab]), np.inf))
    thickness = 3.3 + 0.5 * _smooth_field(rng, ax, 25.0)
    tissues = np.full(shape, TISSUES["wm"], dtype=np.uint8)
    tissues[depth < 0.8 + thickness] = TISSUES["gm"]
    # Deep grey: caudate/putamen and thalami, symmetric about the midline.
    for sx in (-1.0, 1.0):
        for centre, semi in (((22.0, 6.0, 2.0), (7.0, 15.0, 10.0)), ((11.0, 16.0, 10.0), (5.0, 9.0, 6.0)),
                             ((10.0, -14.0, 2.0), (8.0, 12.0, 8.0))):
            tissues[_ellipsoid(x, y, z - z0, (sx * centre[0], centre[1], centre[2]), semi) < 1.0] = TISSUES["deep_gm"]
    # Lateral ventricles: arched ellipsoids either side of the midline, frontal horns wider.
    vscale = np.float32(1.0 + 0.12 * rng.standard_normal())
    yy = y - 2.0
    arch = 13.0 - 0.009 * yy**2
    for sx in (-1.0, 1.0):
        xc = sx * (6.0 + 0.0012 * yy**2)
        width = vscale * (3.5 + 2.0 * np.clip(yy / 30.0, 0, 1))
        v = ((x - xc) / width) ** 2 + (yy / 38.0) ** 2 + ((z - z0 - arch) / (vscale * 5.0)) ** 2
        tissues[v < 1.0] = TISSUES["csf"]
    tissues[depth < 0.8] = TISSUES["csf"]
    tissues[~brain] = TISSUES["background"]
    return tissues


def _add_tumour(tissues, spec, rng):
    """Draw the tumour of ``spec`` into the class map ``tissues`` (in place), clipped to the brain."""
    shape = tissues.shape
    ax = _axes_mm(shape)
    brain = tissues > 0
    lo, hi = [], []
    for axis in range(3):
        hit = np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(ax[axis][hit[0]])
        hi.append(ax[axis][hit[-1]])
    centre = np.array([lo[i] + spec.center[i] * (hi[i] - lo[i]) for i in range(3)], dtype=np.float32)
    # Lumps: radial scale factors exp(k * f) with f a smooth field clipped to +-3, so the box below holds all.
    k_core, k_edema = 0.35 * spec.irregularity, 0.4 * (spec.irregularity + 0.3)
    reach = (spec.radius_mm + spec.edema_mm * np.exp(3 * k_edema)) * np.exp(3 * k_core) + 2.0
    box = tuple(slice(int(np.searchsorted(a, cc - reach)), int(np.searchsorted(a, cc + reach, "right")))
                for a, cc in zip(ax, centre))
    sub = [a[s] for a, s in zip(ax, box)]
    if min(len(s) for s in sub) == 0:
        return
    x, y, z = sub[0][:, None, None], sub[1][None, :, None], sub[2][None, None, :]
    dist = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    length = max(spec.radius_mm, 4.0)
    r_core = dist * np.exp(-k_core * np.clip(_smooth_field(rng, sub, 0.6 * length), -3, 3))
    edema_mm = spec.edema_mm * np.exp(k_edema * np.clip(_smooth_field(rng, sub, 0.6 * length), -3, 3))
    spots = _smooth_field(rng, sub, 5.0)
    rim_mm = spec.rim_mm * np.exp(0.6 * spec.irregularity * np.clip(_smooth_field(rng, sub, 0.5 * length), -3, 3))
    radius = spec.radius_mm
    core = r_core < radius
    necrosis = r_core < spec.necrosis_fraction * radius
    rim = core & ~necrosis & (r_core >= radius - rim_mm) if spec.rim_mm > 0 else np.zeros_like(core)
    if spec.patchy_enhancement > 0:
        rim &= spots > 4.0 * spec.patchy_enhancement - 3.0
    edema = (r_core < radius + edema_mm) & ~core  # a shell of varying thickness round the core
    region = tissues[box]
    if spec.spare_csf:
        edema &= region != TISSUES["csf"]
    inside = region > 0
    region[edema & inside] = TISSUES["edema"]
    region[core & inside] = TISSUES["non_enhancing"]
    region[necrosis & inside] = TISSUES["necrosis"]
    region[rim & inside] = TISSUES["enhancing"]
    # Calcifications: small foci in the core; the nearest voxel always counts, so coarse grids keep them.
    for _ in range(spec.calcifications):
        direction = rng.standard_normal(3)
        offset = direction / np.linalg.norm(direction) * radius * 0.8 * rng.uniform() ** (1 / 3)
        focus = centre + offset.astype(np.float32)
        d2 = ((x - focus[0]) ** 2 + (y - focus[1]) ** 2 + (z - focus[2]) ** 2) / spec.calcification_mm**2
        dot = d2 < 1.0
        dot.flat[np.argmin(d2)] = True
        region[dot & inside & core] = TISSUES["calcification"]


def make_phantom(shape=(240, 240, 155), spacing=(1.0, 1.0, 1.0), seed=0,
                 tumour: TumourSpec | None = TumourSpec(), noise=0.03, bias_field=0.15,
                 smoothing=0.4) -> Phantom:
    """Make a synthetic four-modality case.

    Args:
        shape: grid size (X, Y, Z); the brain fills the same fraction of any grid.
        spacing: voxel size in mm (x, y, z); only sets :attr:`Phantom.affine`.
        seed: random seed; the same arguments give bit-identical arrays. The healthy anatomy depends
            on ``seed`` only, so the same seed with and without a tumour gives the same brain.
        tumour: the tumour, or None for a healthy brain (all-zero labels).
        noise: Rician noise sigma relative to the mean brain intensity of each modality (0 = none).
        bias_field: amplitude of the smooth multiplicative bias field, in [0, 1).
        smoothing: partial-volume blur, Gaussian sigma in voxels (0 = hard tissue boundaries).

    Returns:
        The :class:`Phantom`.
    """
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < 4 or len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"shape must be 3 sizes >= 4 and spacing 3 positive sizes, got {shape}, {spacing}")
    if not 0 <= bias_field < 1 or noise < 0 or smoothing < 0:
        raise ValueError(f"need 0 <= bias_field < 1, noise >= 0, smoothing >= 0; got {bias_field}, {noise}, {smoothing}")
    rng_anatomy, rng_tumour, rng_signal = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    tissues = _anatomy(shape, rng_anatomy)
    if tumour is not None:
        _add_tumour(tissues, tumour, rng_tumour)
    brain = tissues > 0
    ax = _axes_mm(shape)
    images = {}
    for name in MODALITIES:
        table = np.array(_INTENSITY[name], dtype=np.float32)
        if name == "t1ce":
            table[TISSUES["enhancing"]] = 680.0 + 1020.0 * (tumour.enhancement if tumour else 1.0)
        image = table[tissues]
        if smoothing > 0:
            image = ndimage.gaussian_filter(image, smoothing, truncate=2.5)
        bias = _smooth_field(rng_signal, ax, 90.0)
        bias *= np.float32(bias_field / max(float(np.abs(bias[::3, ::3, ::3]).max()), 1e-6))
        values = image[brain] * (1.0 + bias[brain])
        if noise > 0:
            sigma = np.float32(noise * values.mean())
            n1 = rng_signal.standard_normal(values.size, dtype=np.float32) * sigma
            n2 = rng_signal.standard_normal(values.size, dtype=np.float32) * sigma
            values = np.sqrt((values + n1) ** 2 + n2**2)
        image = np.zeros(shape, dtype=np.float32)
        image[brain] = np.maximum(values, 1.0)  # >= 1 so that brain voxels stay > 0 after int16 rounding
        image.flags.writeable = False
        images[name] = image
    labels = _LABEL_OF_TISSUE[tissues]
    affine = np.diag([*spacing, 1.0])
    for array in (labels, tissues, affine):
        array.flags.writeable = False
    return Phantom(images=images, labels=labels, affine=affine, spacing=spacing, tissues=tissues)


def _to_orientation(array, spacing, orientation):
    """Return (data, affine) to store a RAS array as ``orientation`` ("LPS" like BraTS 2018, or "RAS")."""
    sx, sy, sz = spacing
    if orientation == "RAS":
        return array, np.diag([sx, sy, sz, 1.0])
    if orientation == "LPS":
        nx, ny = array.shape[:2]
        affine = np.array([[-sx, 0, 0, (nx - 1) * sx], [0, -sy, 0, (ny - 1) * sy], [0, 0, sz, 0], [0, 0, 0, 1]])
        return np.ascontiguousarray(array[::-1, ::-1, :]), affine
    raise ValueError(f"orientation must be 'LPS' or 'RAS', got {orientation!r}")


def save_phantom(phantom: Phantom, folder, case_id="SYNTHETIC_braingui_demo", with_labels=True,
                 orientation="LPS") -> dict[str, pathlib.Path]:
    """Write ``phantom`` as ``<folder>/<case_id>_<modality>.nii.gz`` (+ ``_seg``), BraTS 2018 style.

    Images are stored int16 (rounded), labels uint8. With ``orientation="LPS"`` the arrays are flipped
    on x and y and stored with BraTS 2018's affine, so ``nibabel.as_closest_canonical`` gives back the
    phantom's arrays and affine exactly; ``"RAS"`` stores them as they are.

    Args:
        phantom: the case to write.
        folder: target folder; created when missing.
        case_id: file name prefix; must contain ``SYNTHETIC`` and no path separator.
        with_labels: also write ``<case_id>_seg.nii.gz``.
        orientation: ``"LPS"`` or ``"RAS"``.

    Returns:
        ``{"flair": path, "t1": ..., "t1ce": ..., "t2": ..., "seg": ...}`` (no ``seg`` without labels).

    Raises:
        ValueError: bad ``case_id`` or ``orientation``.
        FileExistsError: a target file exists (nothing is overwritten; the check runs before writing).
        OSError: a file cannot be written (a full disk, permissions); the files this call wrote are removed.
    """
    if "SYNTHETIC" not in case_id or any(sep in case_id for sep in ("/", "\\", os.sep)) or case_id.startswith("."):
        raise ValueError(f"case_id must contain 'SYNTHETIC' and be a plain file name, got {case_id!r}")
    _to_orientation(phantom.labels[:1, :1, :1], phantom.spacing, orientation)  # validates early
    folder = pathlib.Path(folder)
    arrays = {name: np.clip(np.rint(phantom.images[name]), -32768, 32767).astype(np.int16) for name in MODALITIES}
    if with_labels:
        arrays["seg"] = np.asarray(phantom.labels, dtype=np.uint8)
    paths = {name: folder / f"{case_id}_{name}.nii.gz" for name in arrays}
    for path in paths.values():
        if path.exists():
            raise FileExistsError(f"{path}: already exists, not overwritten")
    folder.mkdir(parents=True, exist_ok=True)
    written: list[pathlib.Path] = []
    try:
        for name, array in arrays.items():
            data, affine = _to_orientation(array, phantom.spacing, orientation)
            image = nib.Nifti1Image(data, affine)
            image.header.set_data_dtype(data.dtype)
            image.header.set_xyzt_units("mm", "sec")
            image.header["descrip"] = DESCRIP
            image.set_qform(affine, code=1)
            image.set_sform(affine, code=1)
            # gzip with mtime=0: the same phantom gives the same bytes; overwrite=False never replaces a file
            write_bytes(gzip.compress(image.to_bytes(), compresslevel=6, mtime=0), paths[name], overwrite=False)
            written.append(paths[name])
    except BaseException:  # a full disk, an interrupt: no half case stays behind (these files are new)
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return paths


def write_case(folder, case_id="SYNTHETIC_braingui_demo", shape=(240, 240, 155), spacing=(1.0, 1.0, 1.0), seed=0,
               tumour: TumourSpec | None = TumourSpec(), with_labels=True, orientation="LPS",
               **phantom_options) -> dict[str, pathlib.Path]:
    """Make a phantom (see :func:`make_phantom`) and write it with :func:`save_phantom`.

    Args:
        folder, case_id, with_labels, orientation: as in :func:`save_phantom`.
        shape, spacing, seed, tumour: as in :func:`make_phantom`.
        **phantom_options: further :func:`make_phantom` keywords (``noise``, ``bias_field``, ``smoothing``).

    Returns:
        Modality (and ``"seg"``) -> written path.
    """
    if orientation not in ("LPS", "RAS"):
        raise ValueError(f"orientation must be 'LPS' or 'RAS', got {orientation!r}")
    phantom = make_phantom(shape, spacing, seed, tumour, **phantom_options)
    return save_phantom(phantom, folder, case_id, with_labels, orientation)
