"""Random synthetic phantoms for segmentation training (so the synthetic demo case segments sensibly).

Every case written here is a phantom, not a patient: its id contains ``SYNTHETIC``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from braingui.phantom import TumourSpec, write_case


def random_tumour_spec(rng: np.random.Generator) -> TumourSpec:
    """A random tumour: position, size, necrosis, rim, edema, shape, enhancement pattern."""
    rim = float(rng.choice([0.0, rng.uniform(2.0, 6.0), rng.uniform(2.0, 6.0)]))
    return TumourSpec(
        center=tuple(float(c) for c in rng.uniform([0.25, 0.3, 0.35], [0.75, 0.75, 0.75])),
        radius_mm=float(rng.uniform(8.0, 28.0)),
        necrosis_fraction=float(rng.uniform(0.0, 0.7)),
        rim_mm=rim,
        enhancement=float(rng.uniform(0.6, 1.4)),
        edema_mm=float(rng.uniform(2.0, 22.0)),
        irregularity=float(rng.uniform(0.1, 0.6)),
        calcifications=int(rng.integers(0, 4)),
        patchy_enhancement=float(rng.choice([0.0, 0.0, rng.uniform(0.3, 1.0)])) if rim > 0 else 0.0,
    )


def random_segmentation_phantom_case(folder: Path, case_id: str, seed: int, zoom: float = 1.0) -> dict[str, Path]:
    """Write one random phantom case (BraTS names, 240x240x155 at 1 mm like the real data).

    ``zoom`` is accepted for symmetry with the training options; the case is always written at 1 mm so
    that it goes through exactly the preprocessing of real cases.
    """
    rng = np.random.default_rng(seed)
    return write_case(folder, case_id=case_id, seed=seed, tumour=random_tumour_spec(rng),
                      noise=float(rng.uniform(0.02, 0.06)), bias_field=float(rng.uniform(0.05, 0.25)))
