"""Label files that make an exported segmentation open with names and colours in ITK-SNAP and 3D Slicer.

Beside ``segmentation.nii.gz`` the exporter writes:

* ``segmentation_labels.txt`` — an ITK-SNAP label description file (Segmentation > Import Label
  Descriptions, or ``itksnap -g image -s segmentation.nii.gz -l segmentation_labels.txt``). One
  line per label: ``IDX -R- -G- -B- -A-- VIS MSH "LABEL"`` (index, colour 0-255, opacity 0-1, visible
  0/1, mesh visible 0/1, quoted description), value 0 being ``"Clear Label"``.
* ``segmentation.ctbl`` — a 3D Slicer colour table ("Color table file" format: ``index name R G B A``,
  colour and opacity 0-255, spaces in names replaced by ``_``, ``#`` header lines). Load it with the
  segmentation and choose it as the label map's colour node.

Names and colours are the app's (:data:`braingui.labels.LABEL_NAMES`, :data:`braingui.labels.LABEL_COLOURS`:
edema red, non-enhancing core green, enhancing blue). The voxel values follow the convention chosen at
export (:data:`EXPORT_CONVENTIONS`): ``brats`` (1 core, 2 edema, 4 enhancing; BraTS 2017-2022, the
default) or ``brats2023`` (1 core, 2 edema, 3 enhancing). Inside the app labels are always ``brats``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from braingui import atomic
from braingui import labels as lab

EXPORT_CONVENTIONS: tuple[str, ...] = (lab.BRATS, lab.BRATS2023)
"""The label conventions a segmentation can be exported in (``--export-labels``)."""
ITKSNAP_FILE = "segmentation_labels.txt"
SLICER_FILE = "segmentation.ctbl"
_INTERNAL = {"core": lab.CORE, "edema": lab.EDEMA, "enhancing": lab.ENHANCING}


def _check(convention: str) -> None:
    if convention not in EXPORT_CONVENTIONS:
        raise ValueError(f"export label convention must be one of {', '.join(EXPORT_CONVENTIONS)}, "
                         f"not {convention!r}")


def export_values(convention: str = lab.BRATS) -> dict[int, int]:
    """Internal (BraTS) label value -> the value written in ``convention`` (``{1: 1, 2: 2, 4: 3}`` for 2023)."""
    _check(convention)
    return {_INTERNAL[tissue]: value for value, tissue in lab.CONVENTIONS[convention].items()}


def from_internal(labels: np.ndarray, convention: str = lab.BRATS) -> np.ndarray:
    """An internal label map in ``convention``'s values.

    Args:
        labels: uint8 internal (BraTS 0/1/2/4) label map, any shape.
        convention: one of :data:`EXPORT_CONVENTIONS`.

    Returns:
        uint8 map of the same shape (0 stays 0).
    """
    lut = np.zeros(256, dtype=np.uint8)
    for internal, value in export_values(convention).items():
        lut[internal] = value
    return lut[np.asarray(labels, dtype=np.uint8)]


def entries(convention: str = lab.BRATS) -> list[tuple[int, str, tuple[int, int, int]]]:
    """``(value, name, (r, g, b))`` of each tumour label in ``convention``, by value (no background)."""
    return sorted((value, lab.LABEL_NAMES[internal], lab.LABEL_COLOURS[internal])
                  for internal, value in export_values(convention).items())


def itksnap_text(convention: str = lab.BRATS) -> str:
    """The ITK-SNAP label description file for ``convention`` (see the module docstring)."""
    _check(convention)
    lines = ["################################################",
             "# ITK-SnAP Label Description File",
             f"# braingui segmentation labels, {lab.CONVENTION_TITLES[convention]}",
             "# File format:",
             "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
             "# Fields:",
             "#    IDX:   Zero-based index",
             "#    -R-:   Red color component (0..255)",
             "#    -G-:   Green color component (0..255)",
             "#    -B-:   Blue color component (0..255)",
             "#    -A-:   Label transparency (0.00 .. 1.00)",
             "#    VIS:   Label visibility (0 or 1)",
             "#    MSH:   Label mesh visibility (0 or 1)",
             "#  LABEL:   Label description",
             "################################################",
             f"{0:5d} {0:5d} {0:4d} {0:4d} {0:8g} {0:2d} {0:2d}    \"Clear Label\""]
    for value, name, (r, g, b) in entries(convention):
        lines.append(f"{value:5d} {r:5d} {g:4d} {b:4d} {1:8g} {1:2d} {1:2d}    \"{name.replace(chr(34), chr(39))}\"")
    return "\n".join(lines) + "\n"


def slicer_name(name: str) -> str:
    """A label name as a Slicer colour table holds it: one token, runs of spaces and ``/`` as ``_``."""
    return re.sub(r"[\s/]+", "_", name.strip()).strip("_") or "label"


def slicer_text(convention: str = lab.BRATS) -> str:
    """The 3D Slicer colour table (``.ctbl``) for ``convention`` (see the module docstring)."""
    _check(convention)
    rows = [(0, "Background", (0, 0, 0), 0)] + [(v, slicer_name(n), rgb, 255) for v, n, rgb in entries(convention)]
    lines = [f"# Color table file {SLICER_FILE}",
             f"# braingui segmentation labels, {lab.CONVENTION_TITLES[convention]}",
             f"# {len(rows)} values"]
    lines += [f"{v} {n} {r} {g} {b} {a}" for v, n, (r, g, b), a in rows]
    return "\n".join(lines) + "\n"


def write_label_tables(out_dir: str | os.PathLike, convention: str = lab.BRATS) -> dict[str, Path]:
    """Write both label files into ``out_dir`` (atomically); returns ``{"itksnap_labels", "slicer_colors"}``."""
    out = Path(out_dir)
    return {"itksnap_labels": atomic.write_text(itksnap_text(convention), out / ITKSNAP_FILE),
            "slicer_colors": atomic.write_text(slicer_text(convention), out / SLICER_FILE)}


def description(convention: str = lab.BRATS) -> dict:
    """What ``results.json`` says about the exported segmentation's values."""
    return {"convention": convention, "title": lab.CONVENTION_TITLES[convention],
            "values": {str(v): n for v, n, _ in entries(convention)},
            "files": {"itksnap": ITKSNAP_FILE, "slicer": SLICER_FILE}}
