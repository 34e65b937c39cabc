"""Tumour-type phantoms on real anatomy: the tumours of real BraTS cases, recast as A / O / G.

The demo classifier learnt its classes on fully synthetic phantoms (:mod:`training.synthetic_types`); its
heat maps on real MRI then point at the tumour only for some calls. This module builds a training set on
*real anatomy*: every case here is a real, skull-stripped, co-registered BraTS brain with a real tumour,
whose appearance is changed to the simplified imaging features of each class:

* **G (glioblastoma)**: the real tumour as it is when it enhances (BraTS high-grade tumours: an enhancing
  rim round necrosis, wide edema); a tumour that hardly enhances gets a synthetic enhancing rim round a
  necrotic centre;
* **A (astrocytoma, lower grade)**: the same tumour without enhancement or necrosis (its core takes the
  edema's T1 / T1ce appearance, a homogeneous FLAIR / T2-bright mass) and with little edema (edema further
  than 0-4 mm from the core is replaced by the host's normal tissue);
* **O (oligodendroglioma)**: A's tumour plus 4-10 calcification-like dark foci of 2.4-4 mm radius (dark on
  every sequence) and a few patches of faint enhancement;
* **N (no tumour)**: the host brain with its tumour replaced by normal tissue (mirrored from the other
  hemisphere, else smoothed from the surrounding brain). Trained towards the uniform distribution over A / O
  / G: evidence for any class has to come from a tumour, so that the heat map of an A call cannot live in
  the normal brain (the synthetic classifier's A maps did).

Tumours move between brains: BraTS brains are co-registered to one atlas (SRI24), so the tumour of case
*i* (its label map and its intensities relative to that brain's normal tissue) is pasted into the
tumour-free version of case *j* at the same place (soft edge). With *k* cases this gives k x k tumour x
anatomy pairs per class. Class-independent randomness per output case: per-sequence gain and gamma and
Gaussian noise.

Outputs are written in the CPM-RadPath layout of :mod:`training.synthetic_types` at 2 mm (120x120x78), ids
``SYNTHETIC_RT_<host>_<source>_<class>``; the folder's ``README.txt`` and the CSV's ``#`` line say they are
derived from real cases and must not leave the machine (the BraTS terms: never commit them). Which real
cases were used is recorded in ``real_types.json``, so the cases held out from it can be named.

    python -m training.real_types --brats ../shared/data/brats2018 --out runs/data/real_types \\
        --holdout 7 --seed 3
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from training.synthetic_types import CSV_COLUMNS, CSV_NAME

MODALITIES = ("flair", "t1", "t1ce", "t2")
NO_TUMOUR = "N"
GENERATOR_VERSION = 2
NOTE = ("SYNTHETIC tumour-type cases made by braingui training.real_types from real BraTS 2018 anatomy and tumours "
        "(intensities of the tumour changed to simplified textbook features of A / O / G; N = tumour removed). "
        "Derived from BraTS data: research use only, never commit or share these files.")


# --- loading and the tumour-free host ---------------------------------------------------------------

def _downsample(a: np.ndarray, labels: bool = False) -> np.ndarray:
    """2x2x2 block mean (images) or the block's first voxel (labels); odd sizes are padded with zeros."""
    pad = [(0, s % 2) for s in a.shape]
    a = np.pad(a, pad)
    if labels:
        return a[::2, ::2, ::2].copy()
    x, y, z = (s // 2 for s in a.shape)
    return a.reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5), dtype=np.float32)


def load_source(folder: Path) -> dict:
    """A BraTS case folder at 2 mm: images (4, X, Y, Z) float32, labels, brain mask, affine."""
    import nibabel as nib

    case_id = folder.name
    imgs, affine = [], None
    for m in MODALITIES:
        path = next(folder.glob(f"*_{m}.nii*"))
        nii = nib.load(str(path))
        affine = nii.affine if affine is None else affine
        imgs.append(_downsample(np.asarray(nii.dataobj, dtype=np.float32)))
    seg = _downsample(np.asarray(nib.load(str(next(folder.glob("*_seg.nii*")))).dataobj).astype(np.uint8), True)
    images = np.stack(imgs)
    brain = (images > 0).any(0)
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * 2.0
    return {"id": case_id, "images": images, "labels": seg, "brain": brain, "affine": new_affine}


def normal_tissue(case: dict) -> np.ndarray:
    """Brain voxels away from the tumour (the tumour dilated by 2 voxels removed)."""
    return case["brain"] & ~ndi.binary_dilation(case["labels"] > 0, iterations=2)


def channel_medians(case: dict) -> np.ndarray:
    normal = normal_tissue(case)
    return np.array([float(np.median(case["images"][c][normal])) for c in range(len(MODALITIES))], dtype=np.float32)


def remove_tumour(case: dict) -> np.ndarray:
    """The case's images with the whole tumour (dilated by 1 voxel) replaced by normal tissue.

    Each hole voxel takes its mirror image about the brain's left-right centre when that voxel is normal
    brain; the rest is filled by normalised convolution (a Gaussian-weighted mean of the nearby normal
    brain). Outside the brain stays zero.
    """
    images = case["images"].copy()
    hole = ndi.binary_dilation(case["labels"] > 0, iterations=1) & case["brain"]
    if not hole.any():
        return images
    normal = case["brain"] & ~hole
    cx = float(np.mean(np.nonzero(case["brain"])[0]))
    xs, ys, zs = np.nonzero(hole)
    mx = np.clip(np.rint(2 * cx - xs).astype(int), 0, hole.shape[0] - 1)
    ok = normal[mx, ys, zs]
    weight = ndi.gaussian_filter(normal.astype(np.float32), 3.0)
    for c in range(images.shape[0]):
        smooth = ndi.gaussian_filter(np.where(normal, images[c], 0).astype(np.float32), 3.0) / np.maximum(weight, 1e-3)
        images[c][hole] = smooth[hole]
        images[c][xs[ok], ys[ok], zs[ok]] = images[c][mx[ok], ys[ok], zs[ok]]
    return images


# --- the tumour, per class --------------------------------------------------------------------------

def _smooth_noise(shape, rng: np.random.Generator, sigma: float = 1.5, amplitude: float = 0.05) -> np.ndarray:
    n = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return 1.0 + amplitude * n / max(float(n.std()), 1e-6)


def _median(values: np.ndarray, default: float) -> float:
    return float(np.median(values)) if values.size >= 20 else default


def _balls(mask: np.ndarray, n: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` balls of ``radius`` voxels centred on random voxels of ``mask`` (clipped to it)."""
    out = np.zeros_like(mask)
    idx = np.argwhere(mask)
    if not len(idx):
        return out
    r = int(np.ceil(radius))
    g = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    ball = (g ** 2).sum(0) <= radius ** 2 + 1e-6
    for i in rng.choice(len(idx), size=min(n, len(idx)), replace=False):
        c = idx[i]
        lo = np.maximum(c - r, 0)
        hi = np.minimum(c + r + 1, mask.shape)
        blo = lo - (c - r)
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] |= ball[blo[0]:blo[0] + hi[0] - lo[0],
                                                            blo[1]:blo[1] + hi[1] - lo[1],
                                                            blo[2]:blo[2] + hi[2] - lo[2]]
    return out & mask


def tumour_ratios(source: dict, label: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The source tumour of class ``label`` as intensity ratios to its brain's normal tissue.

    Returns:
        ``(ratios (4, X, Y, Z) float32, labels uint8)``; ratios are meaningful where labels > 0.
    """
    f, t1, t1ce, t2 = range(4)
    med = channel_medians(source)
    r = source["images"] / med[:, None, None, None]
    lab = source["labels"].copy()
    et, ncr, ed = lab == 4, lab == 1, lab == 2
    tc = et | ncr
    ed_ratio = [_median(r[c][ed], d) for c, d in zip(range(4), (1.6, 0.9, 0.9, 1.7))]
    if label == "G":
        if et.sum() >= 0.1 * max(tc.sum(), 1):
            return r, lab
        # a tumour that hardly enhances: an enhancing rim round a necrotic centre
        core = tc if tc.sum() >= 30 else ed
        inner = ndi.binary_erosion(core, iterations=int(rng.integers(1, 3)))
        rim = core & ~inner
        r[t1ce][rim] = rng.uniform(1.5, 2.2) * _smooth_noise(rim.shape, rng)[rim]
        for c, lo, hi in ((t1ce, 0.5, 0.8), (t1, 0.5, 0.7), (t2, 1.8, 2.4), (f, 0.9, 1.3)):
            r[c][inner] = rng.uniform(lo, hi) * _smooth_noise(inner.shape, rng)[inner]
        lab = lab.copy()
        lab[rim], lab[inner] = 4, 1
        return r, lab
    if label not in ("A", "O"):
        raise ValueError(f"unknown class {label!r}")
    # non-enhancing, homogeneous T2 / FLAIR-bright core; edema within 0-4 mm of the core only
    base = tc if tc.sum() >= 30 else (lab > 0)
    noise = _smooth_noise(base.shape, rng, amplitude=0.04)
    for c, lo, hi in ((t1ce, 0.95, 1.05), (t1, 0.85, 1.0), (f, 1.0, 1.15), (t2, 1.05, 1.3)):
        r[c][base] = ed_ratio[c] * rng.uniform(lo, hi) * noise[base]
    keep = ndi.distance_transform_edt(~base) <= rng.uniform(0.0, 2.0)
    lab = np.where(base, 1, np.where(ed & keep, 2, 0)).astype(np.uint8)
    if label == "O":
        # foci of 2.4-4 mm radius: smaller ones vanish at the classifier's ~2.4 mm input grid (version 1 had
        # 1.6-3 mm and the network could not tell O from A)
        foci = _balls(base, int(rng.integers(4, 11)), float(rng.uniform(1.2, 2.0)), rng)
        r[:, foci] = rng.uniform(0.2, 0.45)  # dark on every sequence, relative to normal brain
        patches = _balls(base & ~foci, int(rng.integers(2, 5)), float(rng.uniform(2.0, 3.0)), rng)
        r[t1ce][patches] *= rng.uniform(1.3, 1.6)
    return r, lab


def compose(host: dict, host_clean: np.ndarray, source: dict, label: str, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """``source``'s tumour as class ``label`` pasted into the tumour-free ``host`` (soft edge), + acquisition."""
    if label == NO_TUMOUR:
        images, labels = host_clean.copy(), np.zeros_like(host["labels"])
    else:
        ratios, labels = tumour_ratios(source, label, rng)
        labels = np.where(host["brain"], labels, 0).astype(np.uint8)
        alpha = np.clip(ndi.gaussian_filter((labels > 0).astype(np.float32), 0.7) * 1.5, 0, 1) * host["brain"]
        med = channel_medians(host)
        images = host_clean * (1 - alpha) + alpha * ratios * med[:, None, None, None]
    images = np.where(host["brain"], images, 0).astype(np.float32)
    for c in range(images.shape[0]):
        p99 = float(np.percentile(images[c][host["brain"]], 99)) or 1.0
        x = np.clip(images[c] / p99, 0, None) ** rng.uniform(0.85, 1.2)
        x = x + rng.uniform(0.0, 0.03) * rng.standard_normal(x.shape).astype(np.float32)
        images[c] = np.where(host["brain"], np.clip(x, 1e-3, None) * p99 * rng.uniform(0.8, 1.25), 0)
    return images, labels


# --- the data set -----------------------------------------------------------------------------------

def split_cases(folders: list[Path], holdout: int, seed: int, grades: dict[str, str]) -> tuple[list[Path], list[Path]]:
    """(used, held out): ``holdout`` cases held out, drawn per grade in proportion (seeded)."""
    rng = np.random.default_rng([seed, 4242])
    held: list[Path] = []
    groups: dict[str, list[Path]] = {}
    for f in folders:
        groups.setdefault(grades.get(f.name, "?"), []).append(f)
    left = holdout
    for k, (grade, group) in enumerate(sorted(groups.items())):
        n = left if k == len(groups) - 1 else int(round(holdout * len(group) / len(folders)))
        n = min(n, len(group), left)
        held += [group[i] for i in rng.permutation(len(group))[:n]]
        left -= n
    used = [f for f in folders if f not in held]
    return used, sorted(held)


def generate(brats: Path, out: Path, holdout: int, seed: int, no_tumour_draws: int) -> dict:
    import nibabel as nib

    folders = sorted(p for p in brats.iterdir() if p.is_dir() and any(p.glob("*_seg.nii*")))
    grades = {}
    if (brats / "grades.csv").exists():
        with open(brats / "grades.csv", newline="") as f:
            grades = {row["case_id"]: row["grade"] for row in csv.DictReader(f)}
    used, held = split_cases(folders, holdout, seed, grades)
    out.mkdir(parents=True, exist_ok=True)
    (out / "Radiology").mkdir(exist_ok=True)
    t0 = time.time()
    cases = [load_source(f) for f in used]
    clean = [remove_tumour(c) for c in cases]
    rows = []
    rng = np.random.default_rng(seed)

    def write(case_id: str, images: np.ndarray, labels: np.ndarray, affine: np.ndarray, label: str) -> None:
        folder = out / "Radiology" / case_id
        folder.mkdir(parents=True, exist_ok=True)
        for c, m in enumerate(MODALITIES):
            nib.save(nib.Nifti1Image(np.clip(np.rint(images[c]), 0, 32767).astype(np.int16), affine),
                     str(folder / f"{case_id}_{m}.nii.gz"))
        nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), str(folder / f"{case_id}_seg.nii.gz"))
        rows.append((case_id, label))

    short = [c["id"].replace("Brats18_", "") for c in cases]
    for j, host in enumerate(cases):
        for i, source in enumerate(cases):
            for label in ("A", "O", "G"):
                images, labels = compose(host, clean[j], source, label, rng)
                write(f"SYNTHETIC_RT_{short[j]}_{short[i]}_{label}", images, labels, host["affine"], label)
        for d in range(no_tumour_draws):
            images, labels = compose(host, clean[j], host, NO_TUMOUR, rng)
            write(f"SYNTHETIC_RT_{short[j]}_none{d}_{NO_TUMOUR}", images, labels, host["affine"], NO_TUMOUR)
        print(f"host {j + 1}/{len(cases)} {host['id']} done ({time.time() - t0:.0f} s)", flush=True)
    with open(out / CSV_NAME, "w", newline="") as f:
        f.write(f"# {NOTE}\n")
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerows(rows)
    (out / "README.txt").write_text(NOTE + "\n")
    record = {"generator": "training.real_types", "version": GENERATOR_VERSION, "seed": seed,
              "source": str(brats), "used_cases": [f.name for f in used], "held_out_cases": [f.name for f in held],
              "no_tumour_draws": no_tumour_draws, "n_cases": len(rows),
              "counts": {k: sum(1 for _, l in rows if l == k) for k in ("A", "O", "G", NO_TUMOUR)},
              "note": NOTE}
    (out / "real_types.json").write_text(json.dumps(record, indent=1))
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.real_types", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--brats", type=Path, required=True, help="folder of labelled BraTS case folders")
    p.add_argument("--out", type=Path, required=True, help="data set folder (created)")
    p.add_argument("--holdout", type=int, default=7, help="real cases kept out of the set (default 7)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--no-tumour-draws", type=int, default=7, help="tumour-free cases per host brain (default 7)")
    args = p.parse_args(argv)
    if not args.brats.is_dir():
        print(f"{args.brats}: not a folder", file=sys.stderr)
        return 2
    t0 = time.time()
    rec = generate(args.brats, args.out, args.holdout, args.seed, args.no_tumour_draws)
    print(f"wrote {rec['n_cases']} cases {rec['counts']} to {args.out} in {time.time() - t0:.0f} s; "
          f"held out: {', '.join(rec['held_out_cases'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
