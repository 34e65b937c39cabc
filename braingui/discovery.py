"""Find the four MRI modalities (and an optional label map) of a case.

Naming schemes recognised, case-insensitively, for ``.nii`` and ``.nii.gz`` files:

* BraTS 2017-2021: ``<id>_flair``, ``<id>_t1``, ``<id>_t1ce``, ``<id>_t2``, optional ``<id>_seg``;
* BraTS 2023+: ``<id>-t2f``, ``<id>-t1n``, ``<id>-t1c``, ``<id>-t2w``, optional ``<id>-seg``;
* bare names: ``flair``, ``t1``, ``t1c``/``t1ce``/``t1gd``, ``t2``, optional ``seg``/``label``, also with
  suffixes such as ``_bet`` or ``_fla_bet`` (``t1_bet.nii.gz``, ``flair_fla_bet.nii.gz``);
* MSD Task01: one 4D file with the channels FLAIR, T1w, T1gd, T2w (``BRATS_001.nii.gz``), its label
  map beside it or in the sibling ``labelsTr`` folder;
* an explicit mapping (``--flair FILE --t1 FILE ...``), which overrides what the folder holds.

Discovery looks at names and headers only; :mod:`braingui.case` reads and validates the data.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from braingui.errors import CaseError

MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
"""The four modalities, in the order the app lists them."""

MODALITY_TITLES = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce", "t2": "T2"}

# Channel order of MSD Task01 4D images ("FLAIR", "T1w", "t1gd", "T2w").
MSD_CHANNELS: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")

_ALIASES: dict[str, str] = {
    "flair": "flair", "t2f": "flair", "t2flair": "flair",
    "t1": "t1", "t1n": "t1", "t1w": "t1", "t1native": "t1",
    "t1ce": "t1ce", "t1c": "t1ce", "t1gd": "t1ce", "t1post": "t1ce", "t1contrast": "t1ce",
    "t2": "t2", "t2w": "t2",
    "seg": "seg", "label": "seg", "labels": "seg",
}
_TOKEN_SPLIT = re.compile(r"[_\-.\s]+")

SCHEME_BRATS = "BraTS 2017-2021"
SCHEME_BRATS2023 = "BraTS 2023+"
SCHEME_BARE = "bare names"
SCHEME_MSD = "MSD Task01 4D"
SCHEME_EXPLICIT = "explicit mapping"


@dataclass
class CaseFiles:
    """The files that make up one case.

    Attributes:
        case_id: identifier (the BraTS id, the MSD file stem or the folder name).
        folder: the case folder (``None`` for a purely explicit mapping).
        images: modality -> file, for the four modalities (empty when ``msd_image`` is set).
        seg: the label map, if any.
        msd_image: the 4D MSD image, if the case is one.
        scheme: which naming scheme matched (one of the ``SCHEME_*`` strings).
        ignored: NIfTI files in the folder that matched nothing.
    """

    case_id: str
    folder: Path | None
    images: dict[str, Path] = field(default_factory=dict)
    seg: Path | None = None
    msd_image: Path | None = None
    scheme: str = SCHEME_BARE
    ignored: list[Path] = field(default_factory=list)

    def all_files(self) -> list[Path]:
        """Every file the case reads, images first."""
        files = [self.msd_image] if self.msd_image else [self.images[m] for m in MODALITIES if m in self.images]
        return files + ([self.seg] if self.seg else [])


def nifti_stem(name: str) -> str | None:
    """Return the file name without ``.nii``/``.nii.gz`` (any case), or ``None`` if not NIfTI-named."""
    lower = name.lower()
    for ext in (".nii.gz", ".nii"):
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def classify_name(name: str) -> tuple[str | None, str | None, str]:
    """Guess the modality of a NIfTI file name.

    Args:
        name: a file name such as ``Brats18_2013_3_1_t1ce.nii.gz`` or ``T1_fla_bet.nii``.

    Returns:
        ``(role, case_id, scheme)``: role is a modality, ``"seg"`` or ``None``; case_id is the name
        before the modality token (``None`` for bare names); scheme is the naming scheme.
    """
    stem = nifti_stem(name)
    if stem is None:
        return None, None, SCHEME_BARE
    tokens = [t for t in _TOKEN_SPLIT.split(stem.lower()) if t]
    if not tokens:
        return None, None, SCHEME_BARE
    # Bare names: the modality comes first, suffixes (bet, fla, ...) follow.
    if tokens[0] in _ALIASES:
        return _ALIASES[tokens[0]], None, SCHEME_BARE
    # Prefixed names: the modality is the last recognised token, the id is what precedes it.
    for i in range(len(tokens) - 1, 0, -1):
        role = _ALIASES.get(tokens[i])
        if role is None:
            continue
        sep_at = _nth_token_start(stem, i)
        case_id = stem[:sep_at].rstrip("_-. ")
        scheme = SCHEME_BRATS2023 if stem[sep_at - 1 : sep_at] == "-" else SCHEME_BRATS
        return role, case_id, scheme
    return None, None, SCHEME_BARE


def _nth_token_start(stem: str, n: int) -> int:
    """Index in ``stem`` where token ``n`` (as split by ``_TOKEN_SPLIT``) starts."""
    pieces = list(re.finditer(r"[^_\-.\s]+", stem))
    return pieces[n].start()


def _nifti_files(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except PermissionError as exc:
        raise CaseError("cannot list the folder (permission denied)", folder) from exc
    return [p for p in entries if not p.name.startswith(".") and nifti_stem(p.name) is not None
            and not (p.exists() and p.is_dir())]


def _header_ndim(path: Path) -> tuple[int, ...] | None:
    """Shape from the header only, or ``None`` when it cannot be read (reported later by the loader)."""
    import nibabel as nib

    try:
        return tuple(int(d) for d in nib.load(os.fspath(path)).shape)
    except Exception:  # noqa: BLE001 - a bad file is reported by the loader with its reason
        return None


def discover(folder: str | os.PathLike | None, explicit: dict[str, str | os.PathLike] | None = None) -> CaseFiles:
    """Find the files of a case.

    Args:
        folder: a case folder, an MSD 4D image file, or ``None`` when ``explicit`` names every file.
        explicit: modality (``flair``, ``t1``, ``t1ce``, ``t2``, ``seg``) -> file; overrides the folder.

    Returns:
        The case's files.

    Raises:
        CaseError: the folder is missing, two files match one modality, or a modality is missing.
    """
    explicit = {k: Path(v) for k, v in (explicit or {}).items() if v is not None}
    unknown = set(explicit) - set(MODALITIES) - {"seg"}
    if unknown:
        raise CaseError(f"unknown modality in the explicit mapping: {', '.join(sorted(unknown))}")
    if folder is None:
        files = CaseFiles(case_id="case", folder=None, scheme=SCHEME_EXPLICIT)
    else:
        path = Path(folder)
        if path.is_symlink() and not path.exists():
            raise CaseError("broken symbolic link (its target does not exist)", path)
        if not path.exists():
            raise CaseError("no such file or folder", path)
        files = _discover_file(path) if path.is_file() else _discover_folder(path, set(explicit))
    for role, p in explicit.items():
        if role == "seg":
            files.seg = p
        else:
            files.images[role] = p
        files.scheme = SCHEME_EXPLICIT if folder is None or not files.images else files.scheme
    if explicit and files.msd_image is not None and any(r != "seg" for r in explicit):
        files.msd_image = None  # an explicit modality mapping replaces the 4D image
    if files.msd_image is None:
        missing = [m for m in MODALITIES if m not in files.images]
        if missing:
            where = files.folder if files.folder is not None else None
            found = ", ".join(f"{m}={files.images[m].name}" for m in MODALITIES if m in files.images) or "none"
            raise CaseError(
                f"missing modality {', '.join(missing)} (found: {found}); name the files "
                "<id>_flair/_t1/_t1ce/_t2, or give them with --flair/--t1/--t1ce/--t2",
                where,
            )
    return files


def _discover_file(path: Path) -> CaseFiles:
    """A single file given as the case: an MSD 4D image (label in ``../labelsTr/<same name>``)."""
    stem = nifti_stem(path.name)
    if stem is None:
        raise CaseError("not a NIfTI file name (.nii or .nii.gz expected); give the case folder instead", path)
    shape = _header_ndim(path)
    if shape is None or len(shape) != 4:
        raise CaseError("a single file must be an MSD-style 4D image with 4 channels; give the case folder instead", path)
    seg = path.parent.parent / "labelsTr" / path.name
    return CaseFiles(case_id=stem, folder=path.parent, msd_image=path,
                     seg=seg if seg.exists() else None, scheme=SCHEME_MSD)


def _discover_folder(folder: Path, overridden: set[str] = frozenset()) -> CaseFiles:
    """Match the folder's files to roles; roles in ``overridden`` come from the explicit mapping."""
    candidates: dict[str, list[Path]] = {}
    ids: dict[str, str] = {}
    schemes: set[str] = set()
    unmatched: list[Path] = []
    for p in _nifti_files(folder):
        role, case_id, scheme = classify_name(p.name)
        if role is None:
            unmatched.append(p)
            continue
        candidates.setdefault(role, []).append(p)
        schemes.add(scheme)
        if case_id:
            ids[role] = case_id
    for role, paths in candidates.items():
        if len(paths) > 1 and role not in overridden:  # an explicit file settles an ambiguity
            listed = ", ".join(p.name for p in paths)
            raise CaseError(f"ambiguous: {len(paths)} files match {role}: {listed}; keep one or "
                            f"name it with --{role}", folder)
    images = {r: ps[0] for r, ps in candidates.items() if r != "seg"}
    seg = candidates.get("seg", [None])[0]
    if not images:
        msd = _msd_in_folder(folder, unmatched, seg)
        if msd is not None:
            return msd
    scheme = (SCHEME_BRATS2023 if SCHEME_BRATS2023 in schemes else
              SCHEME_BRATS if SCHEME_BRATS in schemes else SCHEME_BARE)
    id_values = {v for r, v in ids.items() if r != "seg"}
    case_id = id_values.pop() if len(id_values) == 1 else folder.resolve().name
    return CaseFiles(case_id=case_id, folder=folder, images=images, seg=seg, scheme=scheme, ignored=unmatched)


def _msd_in_folder(folder: Path, unmatched: list[Path], named_seg: Path | None = None) -> CaseFiles | None:
    """A folder holding one 4D image (and perhaps a 3D label map with no modality in its name)."""
    four_d = []
    three_d = []
    for p in unmatched:
        shape = _header_ndim(p)
        if shape is not None and len(shape) == 4 and shape[3] > 1:
            four_d.append(p)
        elif shape is not None and len(shape) == 3:
            three_d.append(p)
    if len(four_d) > 1:
        raise CaseError("ambiguous: several 4D images: " + ", ".join(p.name for p in four_d), folder)
    if not four_d:
        return None
    image = four_d[0]
    # A label named as one (``*_seg``, ``label``) wins over an unnamed 3D file beside the image.
    seg = named_seg if named_seg is not None else three_d[0] if len(three_d) == 1 else None
    sibling = folder.parent / "labelsTr" / image.name
    if seg is None and folder.name == "imagesTr" and sibling.exists():
        seg = sibling
    return CaseFiles(case_id=nifti_stem(image.name) or folder.name, folder=folder, msd_image=image,
                     seg=seg, scheme=SCHEME_MSD, ignored=[p for p in unmatched if p not in (image, seg)])
