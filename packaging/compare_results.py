"""Compare two headless runs (``braingui --no-gui --out DIR``): the frozen app against the source install.

    python packaging/compare_results.py FROZEN_DIR SOURCE_DIR

Compares ``results.json`` (predicted class, probabilities, region volumes, Grad-CAM classes) and the
volumes themselves (``segmentation.nii.gz`` voxel for voxel, ``gradcam*.nii.gz`` to ``--atol``, affines).
Prints one line per item; exit 0 when all agree. numpy + nibabel only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def compare(a: Path, b: Path, atol: float = 1e-6) -> list[str]:
    """The differences between two result folders (empty when they agree)."""
    import nibabel as nib
    import numpy as np

    ra = json.loads((a / "results.json").read_text())
    rb = json.loads((b / "results.json").read_text())
    problems = []
    for key in ("case_id", "predicted_class", "gradcam"):
        if ra.get(key) != rb.get(key):
            problems.append(f"{key}: {ra.get(key)!r} != {rb.get(key)!r}")
    for key in ("probabilities", "volumes_ml"):
        da, db = ra.get(key) or {}, rb.get(key) or {}
        if set(da) != set(db):
            problems.append(f"{key}: keys {sorted(da)} != {sorted(db)}")
            continue
        worst = max((abs(da[k] - db[k]) for k in da), default=0.0)
        print(f"{key}: {json.dumps(da)} (largest difference {worst:.2e})")
        if worst > atol:
            problems.append(f"{key} differ by {worst:.2e}: {da} != {db}")
    names = sorted(p.name for p in a.glob("*.nii.gz"))
    if names != sorted(p.name for p in b.glob("*.nii.gz")):
        problems.append(f"files differ: {names} != {sorted(p.name for p in b.glob('*.nii.gz'))}")
        return problems
    for name in names:
        ia, ib = nib.load(a / name), nib.load(b / name)
        va, vb = np.asarray(ia.dataobj), np.asarray(ib.dataobj)
        if va.shape != vb.shape or not np.allclose(ia.affine, ib.affine):
            problems.append(f"{name}: grid {va.shape} != {vb.shape} or affines differ")
            continue
        diff = float(np.max(np.abs(va.astype(np.float64) - vb.astype(np.float64)))) if va.size else 0.0
        exact = name.startswith("segmentation")
        print(f"{name}: shape {va.shape}, largest voxel difference {diff:.2e}")
        if (exact and diff != 0.0) or diff > atol:
            problems.append(f"{name}: voxels differ by up to {diff:.2e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("frozen", type=Path)
    p.add_argument("source", type=Path)
    p.add_argument("--atol", type=float, default=1e-6, help="tolerance for probabilities, volumes and heat maps")
    args = p.parse_args(argv)
    problems = compare(args.frozen, args.source, args.atol)
    for line in problems:
        print(f"DIFFERENT: {line}")
    print("results agree" if not problems else f"{len(problems)} difference(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
