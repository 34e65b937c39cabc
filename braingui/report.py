"""The pre-flight report of ``braingui check``: what a case holds and whether it can be analysed."""

from __future__ import annotations

from typing import Any

from braingui import labels as lab
from braingui.case import Case
from braingui.discovery import MODALITIES, MODALITY_TITLES


def case_summary(case: Case) -> dict[str, Any]:
    """A JSON-ready summary of a loaded case.

    Returns:
        ``case_id``, ``scheme``, ``files`` (modality -> path), ``shape`` and ``spacing_mm`` (canonical),
        ``original_shape``, ``original_orientation`` (axcodes before reorientation), ``intensity``
        (modality -> min/max/p1/p99), ``labels`` (file, convention, region volumes in mL) and
        ``warnings``.
    """
    files = {m: str(case.files.images[m]) for m in MODALITIES} if case.files.msd_image is None else {
        m: f"{case.files.msd_image} [channel {i}]" for i, m in enumerate(MODALITIES)}
    intensity = {}
    for m in MODALITIES:
        s = case.intensity_stats(m)
        intensity[m] = {"min": s.minimum, "max": s.maximum, "p1": s.p1, "p99": s.p99,
                        "nonzero_fraction": round(s.nonzero_fraction, 4)}
    labels = None
    if case.labels is not None:
        labels = {"file": str(case.files.seg), "convention": case.label_convention,
                  "volumes_ml": {k: round(v, 3) for k, v in case.region_volumes_ml().items()}}
    return {
        "case_id": case.case_id,
        "synthetic": case.is_synthetic,
        "scheme": case.files.scheme,
        "files": files,
        "shape": list(case.grid.shape),
        "spacing_mm": [round(s, 4) for s in case.grid.spacing],
        "original_shape": list(case.grid.original_shape),
        "original_orientation": "".join(case.grid.original_axcodes),
        "labels": labels,
        "warnings": list(case.warnings),
    } | {"intensity": intensity}


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of :func:`case_summary`."""
    lines = [f"Case {summary['case_id']}" + ("  [SYNTHETIC phantom - not a patient]" if summary["synthetic"] else ""),
             f"  naming:       {summary['scheme']}"]
    for m in MODALITIES:
        i = summary["intensity"][m]
        lines.append(f"  {MODALITY_TITLES[m]:<6} {summary['files'][m]}")
        lines.append(f"         range {i['min']:.6g} .. {i['max']:.6g}, p1-p99 {i['p1']:.6g} .. {i['p99']:.6g}, "
                     f"brain {100 * i['nonzero_fraction']:.1f}% of voxels")
    sx, sy, sz = summary["spacing_mm"]
    lines += [f"  grid:         {' x '.join(map(str, summary['shape']))} voxels (RAS+), "
              f"spacing {sx:g} x {sy:g} x {sz:g} mm",
              f"  orientation:  {summary['original_orientation']} in the files (shown as RAS+)"]
    if summary["labels"]:
        lb = summary["labels"]
        vol = lb["volumes_ml"]
        lines += [f"  labels:       {lb['file']}",
                  f"                convention {lab.CONVENTION_TITLES[lb['convention']]}",
                  f"                volumes ET {vol['ET']:.2f} mL, TC {vol['TC']:.2f} mL, WT {vol['WT']:.2f} mL"]
    else:
        lines.append("  labels:       none")
    for w in summary["warnings"]:
        lines.append(f"  warning: {w}")
    lines.append("  status:       OK - ready for analysis")
    return "\n".join(lines)
