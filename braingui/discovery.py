"""Find the four MRI modalities (and an optional label map) of a case.

Image files are NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``), NRRD (``.nrrd``,
``.nhdr``) or FreeSurfer MGH (``.mgz``, ``.mgh``) - see :mod:`braingui.formats`. Naming schemes
recognised, case-insensitively, with a browser's copy marker (``name (1).mha``) ignored:

* BraTS 2017-2021: ``<id>_flair``, ``<id>_t1``, ``<id>_t1ce``, ``<id>_t2``, optional ``<id>_seg``;
* BraTS 2023+: ``<id>-t2f``, ``<id>-t1n``, ``<id>-t1c``, ``<id>-t2w``, optional ``<id>-seg``;
* BRATS 2012: ``BRATS_HG0015_FLAIR``, ``_T1``, ``_T1C``, ``_T2``, optional ``_truth`` (``.mha``);
* BRATS 2013-2015 (SMIR / VSD): ``VSD.Brain.XX.O.MR_Flair.54512.mha``, ``..._T1.``, ``..._T1c.``,
  ``..._T2.``, optional ``VSD.Brain_3more.XX.O.OT.54517.mha``, each file often in a sub-folder of its
  own name (one level of sub-folders is searched when the folder itself holds no image); the case id
  is the folder's name;
* BraTS Toolkit / BrainLesion output: ``<id>_fla_bet``, ``<id>_t1_bet``, ``<id>_t1c_bet``,
  ``<id>_t2_bet`` (FLAIR is ``fla``; also bare ``fla``, ``t1``, ``t1c``, ``t2``);
* bare names: ``flair``, ``t1``, ``t1c``/``t1ce``/``t1gd``, ``t2``, optional ``seg``/``label``, also with
  suffixes such as ``_bet`` or ``_fla_bet`` (``t1_bet.nii.gz``, ``flair_fla_bet.nii.gz``): a leading
  modality token wins over the tokens that follow it;
* MSD Task01: one 4D file with the channels FLAIR, T1w, T1gd, T2w (``BRATS_001.nii.gz``), its label
  map beside it or in the sibling ``labelsTr`` folder;
* an explicit mapping (``--flair FILE --t1 FILE ...``), which overrides what the folder holds.

Label maps are named ``seg``, ``label(s)``, ``*truth*`` or carry an ``OT`` token. A file in a format
braingui does not read (DICOM, Analyze, NumPy, an archive, ...) is named with its format when a modality
is missing, and a folder with no readable image says what it holds.

Discovery looks at names and headers only; :mod:`braingui.case` reads and validates the data.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from braingui.errors import CaseError
from braingui.formats import READABLE, Unreadable, image_stem, is_itk, refusal, unreadable_format, unreadable_stem

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
    "seg": "seg", "label": "seg", "labels": "seg", "ot": "seg",
}
# Tokens that name a modality only when no other token does (``<id>_t1_fla_bet`` is T1, ``<id>_fla_bet`` FLAIR).
_WEAK_ALIASES: dict[str, str] = {"fla": "flair"}
_TOKEN_SPLIT = re.compile(r"[_\-.\s]+")
_COPY_MARKER = re.compile(r"\s*\(\d+\)$")  # "name (1)" as browsers save a second download
_BRATS2012_ID = re.compile(r"(sim)?brats_(hg|lg)\d+", re.IGNORECASE)
_LIST_LIMIT = 6  # file names shown in one message before "and N more"

SCHEME_BRATS = "BraTS 2017-2021"
SCHEME_BRATS2023 = "BraTS 2023+"
SCHEME_BRATS2012 = "BRATS 2012"
SCHEME_VSD = "BRATS 2013-2015 (SMIR/VSD)"
SCHEME_TOOLKIT = "BraTS Toolkit"
SCHEME_BARE = "bare names"
SCHEME_MSD = "MSD Task01 4D"
SCHEME_EXPLICIT = "explicit mapping"
_SCHEME_ORDER = (SCHEME_VSD, SCHEME_BRATS2012, SCHEME_TOOLKIT, SCHEME_BRATS2023, SCHEME_BRATS)


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
        ignored: image files in the folder that matched nothing.
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
    """Return the file name without its image extension (any readable format, any case), or ``None``."""
    return image_stem(name)


def classify_name(name: str) -> tuple[str | None, str | None, str]:
    """Guess the role of an image file name.

    Args:
        name: a file name such as ``Brats18_2013_3_1_t1ce.nii.gz``, ``T1_fla_bet.nii`` or
            ``BRATS_HG0015_FLAIR (1).mha``.

    Returns:
        ``(role, case_id, scheme)``: role is a modality, ``"seg"`` or ``None``; case_id is the name
        before the modality token (``None`` for bare names); scheme is the naming scheme.
    """
    stem = image_stem(name)
    return _classify_stem(stem) if stem is not None else (None, None, SCHEME_BARE)


def _role(token: str, weak: bool = False) -> str | None:
    if weak:
        return _WEAK_ALIASES.get(token)
    return _ALIASES.get(token) or ("seg" if "truth" in token else None)


def _classify_stem(stem: str) -> tuple[str | None, str | None, str]:
    stem = _COPY_MARKER.sub("", stem)
    tokens = [t for t in _TOKEN_SPLIT.split(stem.lower()) if t]
    if not tokens:
        return None, None, SCHEME_BARE
    # Bare names: the modality comes first, suffixes (bet, fla, ...) follow.
    first = _role(tokens[0]) or _role(tokens[0], weak=True)
    if first is not None:
        return first, None, SCHEME_TOOLKIT if tokens[0] in _WEAK_ALIASES else SCHEME_BARE
    # Prefixed names: the modality is the last recognised token, the id is what precedes it.
    for weak in (False, True):
        for i in range(len(tokens) - 1, 0, -1):
            role = _role(tokens[i], weak)
            if role is None:
                continue
            sep_at = _nth_token_start(stem, i)
            case_id = stem[:sep_at].rstrip("_-. ")
            if tokens[0] == "vsd":
                scheme = SCHEME_VSD
            elif weak:
                scheme = SCHEME_TOOLKIT
            elif _BRATS2012_ID.fullmatch(case_id):
                scheme = SCHEME_BRATS2012
            else:
                scheme = SCHEME_BRATS2023 if stem[sep_at - 1: sep_at] == "-" else SCHEME_BRATS
            return role, case_id, scheme
    return None, None, SCHEME_BARE


def _nth_token_start(stem: str, n: int) -> int:
    """Index in ``stem`` where token ``n`` (as split by ``_TOKEN_SPLIT``) starts."""
    pieces = list(re.finditer(r"[^_\-.\s]+", stem))
    return pieces[n].start()


def _entries(folder: Path) -> list[Path]:
    """The folder's entries, hidden ones left out, sorted."""
    try:
        return [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    except PermissionError as exc:
        raise CaseError("cannot list the folder (permission denied)", folder) from exc


def _image_files(entries: list[Path]) -> list[Path]:
    # A broken link stays in: the loader names it as one.
    return [p for p in entries if image_stem(p.name) is not None and not (p.exists() and p.is_dir())]


def _subfolder_images(entries: list[Path]) -> list[Path]:
    """Image files one level down (BRATS 2013-2015 keep each volume in a folder of its own)."""
    found = []
    for sub in entries:
        if sub.is_dir():
            try:
                found += _image_files(_entries(sub))
            except CaseError:
                continue  # an unreadable sub-folder holds nothing we can use
    return found


def _header_ndim(path: Path) -> tuple[int, ...] | None:
    """Shape from the header only, or ``None`` when it cannot be read (reported later by the loader)."""
    if not path.is_file():  # a pipe would block the read; a link loop, a folder: the loader names them
        return None
    try:
        if is_itk(path):
            from braingui.itk_io import open_itk_header

            return tuple(open_itk_header(path).shape)
        import nibabel as nib

        from braingui.nifti import quiet_nibabel

        with quiet_nibabel():  # the loader reports the header's problems, naming the file
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
        CaseError: the folder is missing, two files match one modality, a modality is missing (naming
            any file of an unreadable format that would have been it), or the folder holds no image.
    """
    explicit = {k: Path(v) for k, v in (explicit or {}).items() if v is not None}
    unknown = set(explicit) - set(MODALITIES) - {"seg"}
    if unknown:
        raise CaseError(f"unknown modality in the explicit mapping: {', '.join(sorted(unknown))}")
    if folder is None:
        files = CaseFiles(case_id="case", folder=None, scheme=SCHEME_EXPLICIT)
    else:
        path = Path(folder)
        _check_case_path(path)
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
            raise _missing_error(files, missing)
    return files


def _check_case_path(path: Path) -> None:
    """Refuse a case path that is missing, a broken link or a link loop, unreadable, or not a file or folder."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise CaseError("broken symbolic link (its target does not exist)", path) from None
        raise CaseError("no such file or folder", path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CaseError("symbolic link loop (the link leads back to itself); point it at the case folder",
                            path) from None
        raise CaseError(f"cannot be read ({exc.strerror or exc})", path) from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        what = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device or socket"
        raise CaseError(f"is {what}, not a case folder or image file", path)


def _discover_file(path: Path) -> CaseFiles:
    """A single file given as the case: an MSD 4D image (label in ``../labelsTr/<same name>``)."""
    stem = image_stem(path.name)
    if stem is None:
        fmt = unreadable_format(path, sniff=True)
        if fmt is not None:
            raise CaseError(refusal(fmt), path)
        raise CaseError(f"not an image file name (braingui reads {READABLE}); give the case folder instead", path)
    shape = _header_ndim(path)
    if shape is None or len(shape) != 4:
        raise CaseError("a single file must be an MSD-style 4D image with 4 channels; give the case folder instead", path)
    seg = path.parent.parent / "labelsTr" / path.name
    return CaseFiles(case_id=stem, folder=path.parent, msd_image=path,
                     seg=seg if seg.exists() else None, scheme=SCHEME_MSD)


def _discover_folder(folder: Path, overridden: set[str] = frozenset()) -> CaseFiles:
    """Match the folder's files to roles; roles in ``overridden`` come from the explicit mapping."""
    entries = _entries(folder)
    found = _image_files(entries)
    nested = not found
    if nested:
        found = _subfolder_images(entries)
    candidates: dict[str, list[Path]] = {}
    ids: dict[str, str] = {}
    schemes: set[str] = set()
    unmatched: list[Path] = []
    for p in found:
        role, case_id, scheme = classify_name(p.name)
        if role is None:
            unmatched.append(p)
            continue
        candidates.setdefault(role, []).append(p)
        schemes.add(scheme)
        if case_id:
            ids[role] = case_id
    if nested:
        _refuse_several_cases(folder, candidates)
    for role, paths in candidates.items():
        if len(paths) > 1 and role not in overridden:  # an explicit file settles an ambiguity
            raise CaseError(f"ambiguous: {len(paths)} files match {role}: {_listing(paths, folder)}; keep one or "
                            f"name it with --{role}", folder)
    images = {r: ps[0] for r, ps in candidates.items() if r != "seg"}
    seg = candidates.get("seg", [None])[0]
    if not images:
        msd = _msd_in_folder(folder, unmatched, seg)
        if msd is not None:
            return msd
    scheme = next((s for s in _SCHEME_ORDER if s in schemes), SCHEME_BARE)
    id_values = {v for r, v in ids.items() if r != "seg"}
    case_id = id_values.pop() if len(id_values) == 1 and scheme != SCHEME_VSD else folder.resolve().name
    return CaseFiles(case_id=case_id, folder=folder, images=images, seg=seg, scheme=scheme, ignored=unmatched)


def _refuse_several_cases(folder: Path, candidates: dict[str, list[Path]]) -> None:
    """Sub-folders that each hold a whole case (a data set's ``HGG/``) are several cases, not one."""
    parents = {p.parent for paths in candidates.values() if len(paths) > 1 for p in paths}
    if len(parents) > 1:
        raise CaseError(f"holds no image itself, and its sub-folders look like {len(parents)} separate cases "
                        f"({_listing(sorted(parents), folder)}); open one of them", folder)


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
        raise CaseError("ambiguous: several 4D images: " + _listing(four_d, folder), folder)
    if not four_d:
        return None
    image = four_d[0]
    # A label named as one (``*_seg``, ``label``) wins over an unnamed 3D file beside the image.
    seg = named_seg if named_seg is not None else three_d[0] if len(three_d) == 1 else None
    sibling = folder.parent / "labelsTr" / image.name
    if seg is None and folder.name == "imagesTr" and sibling.exists():
        seg = sibling
    return CaseFiles(case_id=image_stem(image.name) or folder.name, folder=folder, msd_image=image,
                     seg=seg, scheme=SCHEME_MSD, ignored=[p for p in unmatched if p not in (image, seg)])


# ------------------------------------------------------------------ messages for what is missing

def _listing(paths: list[Path] | list[str], folder: Path | None = None) -> str:
    """``a, b, c and 4 more``: names relative to ``folder`` (strings are shown as they are)."""
    names = [p if isinstance(p, str) else _relative(p, folder) for p in paths]
    shown = ", ".join(names[:_LIST_LIMIT])
    return shown + (f" and {len(names) - _LIST_LIMIT} more" if len(names) > _LIST_LIMIT else "")


def _relative(path: Path, folder: Path | None) -> str:
    if folder is not None:
        try:
            return path.relative_to(folder).as_posix()
        except ValueError:
            pass
    return path.name


def _unreadable_files(folder: Path) -> list[tuple[Path, Unreadable]]:
    """Files of a format braingui does not read, in the folder and (when it holds none) one level down."""
    entries = _entries(folder)
    out = [(p, fmt) for p in entries if p.is_file() and (fmt := unreadable_format(p, sniff=True))]
    if not out:
        for sub in (p for p in entries if p.is_dir()):
            try:
                out += [(p, fmt) for p in _entries(sub) if p.is_file() and (fmt := unreadable_format(p, sniff=True))]
            except CaseError:
                continue
    return out


def _describe(items: list[tuple[Path, Unreadable]], folder: Path) -> str:
    """``a.dcm: a DICOM file`` or ``3 DICOM files (a.dcm, ...)``, the formats joined, then what braingui reads."""
    groups: dict[Unreadable, list[Path]] = {}
    for p, fmt in items:
        groups.setdefault(fmt, []).append(p)
    parts = [f"{_relative(ps[0], folder)}: {fmt.describe()}" if len(ps) == 1 else
             f"{fmt.describe(len(ps))} ({_listing(ps, folder)})" for fmt, ps in groups.items()]
    hints = "; ".join(dict.fromkeys(f"{fmt.name}: {fmt.hint}" for fmt in groups if fmt.hint))
    return f"{', '.join(parts)}; braingui reads {READABLE}" + (f" ({hints})" if hints else "")


def _missing_error(files: CaseFiles, missing: list[str]) -> CaseError:
    """The error for missing modalities, naming unreadable files that look like them."""
    found = ", ".join(f"{m}={files.images[m].name}" for m in MODALITIES if m in files.images) or "none"
    plain = CaseError(f"missing modality {', '.join(missing)} (found: {found}); name the files "
                      "<id>_flair/_t1/_t1ce/_t2, or give them with --flair/--t1/--t1ce/--t2", files.folder)
    if files.folder is None or files.scheme == SCHEME_EXPLICIT:
        return plain
    folder = files.folder
    for p in _entries(folder):
        stem = image_stem(p.name)
        if stem is not None and p.is_dir() and _classify_stem(stem)[0] in missing:
            return CaseError(f"is a folder, not an image file (the {_classify_stem(stem)[0]} volume must be a file)", p)
    unreadable = _unreadable_files(folder)
    would_be = [(p, fmt) for p, fmt in unreadable
                if _classify_stem(unreadable_stem(p.name) or p.name)[0] in missing]
    if len(would_be) == 1 and len(missing) == 1:
        return CaseError(refusal(would_be[0][1]), would_be[0][0])
    if would_be:
        return CaseError(f"missing modality {', '.join(missing)} (found: {found}); cannot read "
                         f"{_describe(would_be, folder)}", folder)
    if unreadable and not files.images:
        return CaseError(f"no image braingui can read: {_describe(unreadable, folder)}", folder)
    if not files.images and files.seg is None and not files.ignored:
        entries = _entries(folder)
        if not entries:
            return CaseError(f"the folder is empty; a case folder holds the four MRI volumes "
                             f"(FLAIR, T1, T1ce, T2) as {READABLE} files", folder)
        listed = _listing([p.name + ("/" if p.is_dir() else "") for p in entries])
        where = " in it or its sub-folders" if any(p.is_dir() for p in entries) else ""
        return CaseError(f"no image file{where} (found: {listed}); braingui reads {READABLE}", folder)
    return plain
