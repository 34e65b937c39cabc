"""The four series of one MR session on one grid.

:func:`choose` takes the study's proposal (see :mod:`braingui.series`), changed by the user's
``--series-map``, and refuses a modality left without a series.
:func:`require_one_frame` refuses series from different frames of reference (different sessions, or a
patient who left the scanner): they are not aligned in world space, and registering them is out of scope.
:func:`on_one_grid` resamples the series that are on another grid than the reference series (the T1ce by
default) onto it, in world coordinates and linearly, writing the results next to the converted series
in the cache, and says which series were resampled. A series on the same grid with its voxels stored in
another order (dcm2niix flips some 3D acquisitions) is reordered exactly instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from braingui.discovery import MODALITIES, MODALITY_TITLES
from braingui.errors import CaseError
from braingui.geometry import Grid
from braingui.nifti import save_atomic
from braingui.resampling import coverage, resample_to, same_grid
from braingui.series import Proposal, Series, select

REGISTRATION_TOOLS = ("ANTs (antsRegistration), FSL FLIRT, 3D Slicer (General Registration / BRAINSFit) or "
                      "BraTS Toolkit (registration, skull stripping and the rest of the BraTS preprocessing)")
"""Tools that register series of different sessions (named in the refusal)."""


def apply_selectors(study, selectors: dict[str, str] | None = None) -> Proposal:
    """The study's proposal changed by ``selectors`` (modality -> series number, description or key).

    Args:
        study: a :class:`braingui.dicom.DicomStudy` (its ``series``, ``proposal`` and ``folder``).
        selectors: the user's choices.

    Raises:
        CaseError: a selector matches no series or several, or one series is given for two modalities.
    """
    proposal = study.proposal.copy()
    picked: dict[str, str] = {}
    for role, selector in (selectors or {}).items():
        s = select(study.series, selector, role)
        if s.key in picked.values():
            other = next(r for r, k in picked.items() if k == s.key)
            raise CaseError(f"series {s.title} is given for both {other} and {role}", study.folder)
        picked[role] = s.key
    for role, key in picked.items():
        proposal.assign(key, role)
    return proposal


def choose(study, selectors: dict[str, str] | None = None) -> dict[str, Series]:
    """The series of each modality: :func:`apply_selectors`, refusing a modality left without a series.

    Returns:
        modality -> series, for the four modalities.

    Raises:
        CaseError: as :func:`apply_selectors`, or a modality has no series.
    """
    proposal = apply_selectors(study, selectors)
    missing = proposal.missing()
    if missing:
        raise CaseError(f"no series for {', '.join(MODALITY_TITLES[m] for m in missing)} in the DICOM study; name "
                        "them with --series-map flair=SERIES,t1=...,t1ce=...,t2=... (series number or description)"
                        f"\n{proposal.format()}", study.folder)
    return {m: proposal.get(proposal.assignment[m]) for m in MODALITIES}


def require_one_frame(chosen: dict[str, Series], folder: str | os.PathLike, warnings: list[str]) -> None:
    """Refuse series from more than one frame of reference; warn when a series has none recorded.

    Args:
        chosen: modality -> series.
        folder: the DICOM folder (named in the message).
        warnings: gets a note for series with no FrameOfReferenceUID.

    Raises:
        CaseError: the series come from different frames of reference.
    """
    frames: dict[str, list[str]] = {}
    unknown = []
    for role in MODALITIES:
        s = chosen[role]
        if s.frame_of_reference:
            frames.setdefault(s.frame_of_reference, []).append(f"{MODALITY_TITLES[role]} (series {s.title})")
        else:
            unknown.append(MODALITY_TITLES[role])
    if len(frames) > 1:
        groups = "; ".join(f"frame {i + 1}: {', '.join(members)}" for i, members in enumerate(frames.values()))
        raise CaseError(f"the chosen series come from {len(frames)} different frames of reference ({groups}), so "
                        "they were not acquired in one session and are not aligned; braingui does not register "
                        f"images. Register them to one grid first, e.g. with {REGISTRATION_TOOLS}, and open the "
                        "NIfTI files", folder)
    if unknown:
        warnings.append(f"DICOM: no frame of reference recorded for {', '.join(unknown)}; assumed to be from the "
                        "same session as the other series")


def reference_role(chosen: dict[str, Series], reference: str = "t1ce") -> str:
    """The modality whose grid the case uses: ``reference`` (a modality), or ``"finest"`` for the smallest voxels."""
    if reference in MODALITIES:
        return reference
    if reference != "finest":
        raise ValueError(f"reference must be a modality or 'finest', not {reference!r}")
    return min(MODALITIES, key=lambda m: (chosen[m].voxel_mm3, MODALITIES.index(m)))


def on_one_grid(chosen: dict[str, Series], cache: Path, warnings: list[str],
                reference: str = "t1ce") -> dict[str, Path]:
    """The files of the four series on one grid, resampling the others onto the reference series' grid.

    Args:
        chosen: modality -> converted series (3D, ``file`` set).
        cache: folder for the resampled files (``<key>_on_<reference key>.nii``; reused when present).
        warnings: gets one note listing the series that were resampled.
        reference: see :func:`reference_role`.

    Returns:
        modality -> NIfTI file, all on the reference grid.

    Raises:
        CaseError: a chosen series is not a 3D volume.
    """
    headers = {}
    for role in MODALITIES:
        s = chosen[role]
        img = nib.load(os.fspath(s.file))
        if len(img.shape) != 3 and not (len(img.shape) == 4 and img.shape[3] == 1):
            raise CaseError(f"series {s.title}, chosen as {MODALITY_TITLES[role]}, is not one 3D volume "
                            f"(shape {tuple(img.shape)})", s.file)
        headers[role] = img
    ref_role = reference_role(chosen, reference)
    ref, ref_img = chosen[ref_role], headers[ref_role]
    ref_shape = tuple(int(d) for d in ref_img.shape[:3])
    files, moved = {}, []
    for role in MODALITIES:
        s, img = chosen[role], headers[role]
        if role == ref_role or same_grid(img.shape, img.affine, ref_shape, ref_img.affine):
            files[role] = s.file
            continue
        src, dst = Grid.from_original(img.shape[:3], img.affine), Grid.from_original(ref_shape, ref_img.affine)
        reorder = same_grid(src.shape, src.affine, dst.shape, dst.affine)  # one grid, voxels stored in another order
        target = cache / f"{s.key}_on_{ref.key}.nii"
        if not target.is_file():
            data = np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])
            data = dst.to_original(src.to_canonical(data)) if reorder else resample_to(data, img.affine, ref_shape,
                                                                                       ref_img.affine)
            out = nib.Nifti1Image(data, ref_img.affine)
            out.set_qform(ref_img.affine, code=1)
            out.set_sform(ref_img.affine, code=1)
            save_atomic(out, target)
        files[role] = target
        if reorder:
            continue
        inside = coverage(img.shape, img.affine, ref_shape, ref_img.affine)
        moved.append(f"{MODALITY_TITLES[role]} (series {s.title}, {_grid(img)})"
                     + (f" covers {100 * inside:.0f}% of it (0 outside)" if inside < 0.99 else ""))
    if moved:
        warnings.append(f"DICOM: resampled linearly in world coordinates onto the {MODALITY_TITLES[ref_role]} grid "
                        f"(series {ref.title}, {_grid(ref_img)}): " + "; ".join(moved))
    return files


def _grid(img) -> str:
    zooms = img.header.get_zooms()[:3]
    return "x".join(str(int(d)) for d in img.shape[:3]) + " voxels of " + "x".join(f"{z:.3g}" for z in zooms) + " mm"
