"""DICOM study folders: detect them, convert their series with dcm2niix into a cache, make a case of them.

* :func:`is_dicom_folder` — a folder (searched recursively) that holds DICOM files and no NIfTI-like
  image: files with the ``DICM`` preamble at byte 128, or preamble-less files that open with a group
  0008 element (what dcm2niix also accepts).
* :func:`open_study` — converts every series with dcm2niix (the binary of the ``dcm2niix`` PyPI package;
  nothing is downloaded) into ``<user cache>/dicom/<key>``, where the key hashes the files' relative
  paths, sizes and modification times, so a study is converted once and the DICOM folder is never written
  to. The series are described from dcm2niix's JSON sidecars (description, protocol, sequence, TE / TR /
  TI) and from the DICOM headers (frame of reference and contrast agent, which the sidecars lack, read
  with pydicom without pixel data), and their roles proposed by :mod:`braingui.series`.
* :func:`case_files` — the four series chosen (:func:`braingui.session.choose`) as a
  :class:`~braingui.discovery.CaseFiles`: series of one frame of reference on different grids are
  resampled onto the T1ce grid (:mod:`braingui.session`; the resampled files live in the cache too and the
  case warnings say so); series from different frames of reference are refused (registration is out of
  scope).

Privacy: dcm2niix runs with ``-ba o`` (no patient name, ID or birth date in the sidecars) and names files
``<series number>_<description>``; the cache folder is named by a hash; the case id is
``DICOM_<StudyDate>_<hash of the StudyInstanceUID>``, the PatientID only when asked (``keep_patient_id``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from braingui import series as ser
from braingui.atomic import write_json
from braingui.discovery import MODALITIES, CaseFiles
from braingui.errors import CaseError

SCHEME_DICOM = "DICOM (dcm2niix)"
CACHE_VERSION = 1
"""Bump when the conversion options or the cached metadata change (old entries are then ignored)."""
DCM2NIIX_TIMEOUT_S = 600.0
"""Longest a conversion may take before it is stopped."""
CACHE_KEEP = 20
"""Converted studies kept in the cache (the least recently used ones are removed)."""
DCM2NIIX_ARGS = ("-g", "i", "-b", "y", "-ba", "o", "-z", "n", "-f", "%s_%d", "-d", "9", "-w", "2")
"""Ignore a user defaults file, write sidecars without patient details, uncompressed NIfTI named by series
number and description (never ``%n`` / ``%i``), search 9 folder levels deep."""

_NOT_DICOM_SUFFIXES = (".nii", ".gz", ".json", ".txt", ".xml", ".csv", ".md", ".pdf", ".html", ".htm", ".jpg",
                       ".jpeg", ".png", ".bmp", ".gif", ".zip", ".exe", ".dll", ".bat", ".inf", ".ini", ".bval",
                       ".bvec", ".py", ".mha", ".mhd", ".nrrd", ".nhdr", ".mgz", ".mgh", ".raw", ".log", ".db")
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr", ".mgz", ".mgh")
MAX_SEARCHED = 200_000
"""Most files examined when a folder is searched for DICOM files."""
DETECT_SEARCHED = 5_000
"""Most files examined to decide whether a folder is a DICOM folder (the first DICOM file ends the search)."""
_HEADER_TAGS = ["SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "FrameOfReferenceUID",
                "ContrastBolusAgent", "StudyInstanceUID", "StudyDate"]


def looks_like_dicom(path: str | os.PathLike) -> bool:
    """True for a file dcm2niix takes as DICOM: ``DICM`` at byte 128, or (no Part 10 preamble) a file of at
    least 256 bytes opening with a group 0008 element, as dcm2niix's ``isDICOMfile`` tests."""
    if not os.path.isfile(path):  # a pipe, socket or device is never opened (it could block forever)
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    if len(head) < 256:
        return False
    return head[128:132] == b"DICM" or (head[0] == 8 and head[1] == 0 and head[3] == 0)


def _candidates(folder: Path, limit: int = MAX_SEARCHED):
    """Files under ``folder`` that may be DICOM (hidden entries and known other formats skipped)."""
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            seen += 1
            if seen > limit:
                return
            if name.startswith(".") or name.lower().endswith(_NOT_DICOM_SUFFIXES):
                continue
            yield Path(root) / name


def dicom_files(folder: str | os.PathLike) -> list[Path]:
    """Every DICOM file under ``folder`` (recursively), sorted."""
    return [p for p in _candidates(Path(folder)) if looks_like_dicom(p)]


def is_dicom_folder(path: str | os.PathLike | None) -> bool:
    """True for a folder holding DICOM files (at any depth) and no NIfTI / MetaImage / NRRD / MGH image."""
    if path is None:
        return False
    folder = Path(path)
    if not folder.is_dir():
        return False
    try:
        if any(p.name.lower().endswith(_IMAGE_SUFFIXES) for p in folder.iterdir() if not p.name.startswith(".")):
            return False
    except OSError:
        return False
    return any(looks_like_dicom(p) for p in _candidates(folder, DETECT_SEARCHED))


def dcm2niix_binary() -> Path:
    """The dcm2niix executable: ``$BRAINGUI_DCM2NIIX``, else the one the ``dcm2niix`` package ships, else PATH.

    Raises:
        CaseError: none is installed.
    """
    override = os.environ.get("BRAINGUI_DCM2NIIX")
    if override:
        return Path(override)
    try:
        import dcm2niix

        for candidate in (Path(dcm2niix.bin), Path(dcm2niix.bin).with_suffix(".exe")):
            if candidate.is_file():
                return candidate
    except ImportError:
        pass
    found = shutil.which("dcm2niix")
    if found:
        return Path(found)
    raise CaseError("the DICOM converter dcm2niix is not installed (pip install dcm2niix)")


def cache_root() -> Path:
    """``$BRAINGUI_CACHE_DIR/dicom`` or ``<platformdirs user cache>/dicom``."""
    override = os.environ.get("BRAINGUI_CACHE_DIR")
    if override:
        return Path(override) / "dicom"
    from platformdirs import PlatformDirs

    return Path(PlatformDirs("braingui", appauthor=False).user_cache_dir) / "dicom"


def study_key(folder: Path, files: list[Path], converter: str) -> str:
    """sha256 of the files' relative paths, sizes and mtimes, the converter, braingui's version and
    :data:`CACHE_VERSION` (so a new release converts and resamples again)."""
    from braingui import __version__

    h = hashlib.sha256(f"v{CACHE_VERSION}|{__version__}|{converter}|{' '.join(DCM2NIIX_ARGS)}".encode())
    for p in files:
        st = p.stat()
        h.update(f"\n{p.relative_to(folder).as_posix()}|{st.st_size}|{st.st_mtime_ns}".encode("utf-8", "replace"))
    return h.hexdigest()[:32]


@dataclass
class DicomStudy:
    """A converted DICOM study.

    Attributes:
        folder: the DICOM folder (never written to).
        cache: the folder holding the converted series.
        series: the converted series.
        study_date: StudyDate (``YYYYMMDD``), may be empty.
        study_tag: 6 hex digits of the hash of the StudyInstanceUID (part of the case id).
        notes: what the conversion reported (files skipped, incomplete series...).
    """

    folder: Path
    cache: Path
    series: list[ser.Series]
    study_date: str = ""
    study_tag: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.proposal = ser.propose(self.series)

    def case_id(self, patient_id: str | None = None) -> str:
        """``DICOM_<date>_<tag>``, or ``<PatientID>_<date>`` when ``patient_id`` is given."""
        date = self.study_date or "undated"
        if patient_id:
            return "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{patient_id}_{date}")
        return f"DICOM_{date}_{self.study_tag or 'study'}"


def open_study(folder: str | os.PathLike, timeout_s: float = DCM2NIIX_TIMEOUT_S) -> DicomStudy:
    """Convert (or find in the cache) every series of a DICOM folder and propose their roles.

    Raises:
        CaseError: no DICOM files, several studies, dcm2niix missing, failing or too slow, nothing converted.
    """
    folder = Path(folder)
    files = dicom_files(folder)
    if not files:
        raise CaseError("no DICOM files in this folder or below it", folder)
    binary = dcm2niix_binary()
    root = cache_root()
    target = root / study_key(folder, files, _converter_version(binary))
    if (target / "study.json").is_file():
        try:
            study = _read_study(folder, target)
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(target, ignore_errors=True)  # a damaged entry is converted again
        else:
            with contextlib.suppress(OSError):
                os.utime(target)  # most recently used: pruned last
            return study
    headers, studies = _scan_headers(files)
    if len(studies) > 1:
        listed = "; ".join(f"{_date(d) or 'no date'}: {n} series" for d, n in sorted(studies.values()))
        raise CaseError(f"the folder holds {len(studies)} studies ({listed}); open the folder of one study", folder)
    tmp = root / f".part-{target.name}-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise CaseError(f"cannot write the DICOM cache folder ({exc.strerror or exc}); set BRAINGUI_CACHE_DIR to a "
                        "writable folder", root) from exc
    try:
        notes = _run_dcm2niix(binary, folder, tmp, timeout_s)
        series = _read_outputs(tmp, headers, folder)
        uid = next(iter(studies), "")
        date = studies[uid][0] if uid in studies else ""
        meta = {"version": CACHE_VERSION, "study_date": date,
                "study_tag": hashlib.sha256(uid.encode()).hexdigest()[:6] if uid else "", "notes": notes,
                "series": [_series_json(s) for s in series]}
        write_json(meta, tmp / "study.json")
        try:
            os.replace(tmp, target)
        except OSError as exc:  # another process may have finished the same study first
            if not (target / "study.json").is_file():
                raise CaseError(f"cannot write the DICOM cache folder ({exc.strerror or exc})", root) from exc
    except OSError as exc:
        raise CaseError(f"cannot write the DICOM cache folder ({exc.strerror or exc})", root) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(root, keep=target)
    return _read_study(folder, target)


def _converter_version(binary: Path) -> str:
    try:
        return str(binary.stat().st_size) + ":" + str(binary.stat().st_mtime_ns)
    except OSError as exc:
        raise CaseError(f"the DICOM converter cannot be used ({exc})", binary) from exc


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


def _scan_headers(files: list[Path]) -> tuple[dict[str, dict], dict[str, tuple[str, int]]]:
    """Series UID -> {frame_of_reference, contrast_agent}; study UID -> (StudyDate, number of series)."""
    import pydicom

    series: dict[str, dict] = {}
    studies: dict[str, tuple[str, set]] = {}
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=_HEADER_TAGS)
        except Exception:  # noqa: BLE001 - a file pydicom cannot parse is left to dcm2niix, which reports it
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not uid:
            continue
        entry = series.setdefault(uid, {"frame_of_reference": str(ds.get("FrameOfReferenceUID", "") or ""),
                                        "contrast_agent": ""})
        agent = str(ds.get("ContrastBolusAgent", "") or "").strip()
        if agent and not entry["contrast_agent"]:
            entry["contrast_agent"] = agent
        study = str(ds.get("StudyInstanceUID", "") or "")
        date, members = studies.setdefault(study, (str(ds.get("StudyDate", "") or ""), set()))
        members.add(uid)
    return series, {k: (d, len(m)) for k, (d, m) in studies.items()}


def _run_dcm2niix(binary: Path, folder: Path, out: Path, timeout_s: float) -> list[str]:
    cmd = [os.fspath(binary), *DCM2NIIX_ARGS, "-o", os.fspath(out), os.fspath(folder)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise CaseError(f"the DICOM conversion (dcm2niix) took longer than {timeout_s:.0f} s and was stopped",
                        folder) from exc
    except OSError as exc:
        raise CaseError(f"the DICOM converter dcm2niix cannot run ({exc.strerror or exc})", folder) from exc
    log = (proc.stdout or "") + (proc.stderr or "")
    converted = any(out.glob("*.nii"))
    if proc.returncode != 0 and not (converted and proc.returncode in (8, 10)):
        tail = " | ".join(line.strip() for line in log.strip().splitlines()[-3:] if line.strip())
        raise CaseError(f"the DICOM conversion failed (dcm2niix exit status {proc.returncode}: {tail})", folder)
    notes = []
    if proc.returncode == 8:
        notes.append("DICOM: dcm2niix could not convert some files (others were converted)")
    if proc.returncode == 10:
        notes.append("DICOM: dcm2niix found incomplete volumes (missing slices) in some series")
    if not converted:
        raise CaseError("dcm2niix found no image series it could convert", folder)
    return notes


def _ms(value) -> float | None:
    try:
        return round(float(value) * 1000.0, 3) if value is not None else None
    except (TypeError, ValueError):
        return None


def _read_outputs(out: Path, headers: dict[str, dict], folder: Path) -> list[ser.Series]:
    import nibabel as nib

    series = []
    for sidecar in sorted(out.glob("*.json")):
        nifti = sidecar.with_suffix(".nii")
        if not nifti.is_file():
            continue
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8", errors="replace"))
            img = nib.load(os.fspath(nifti))
        except (OSError, ValueError) as exc:
            raise CaseError(f"dcm2niix wrote an unreadable file {nifti.name} ({exc})", folder) from exc
        tags = headers.get(str(meta.get("SeriesInstanceUID", "")), {})
        number = meta.get("SeriesNumber")
        image_type = meta.get("ImageType") or []
        series.append(ser.Series(
            key=nifti.stem, number=int(number) if isinstance(number, (int, float)) else None,
            description=str(meta.get("SeriesDescription", "")), protocol=str(meta.get("ProtocolName", "")),
            sequence=str(meta.get("ScanningSequence", "")), variant=str(meta.get("SequenceVariant", "")),
            sequence_name=str(meta.get("SequenceName", "")),
            image_type=tuple(str(v) for v in (image_type if isinstance(image_type, list) else [image_type])),
            contrast_agent=tags.get("contrast_agent", ""), echo_ms=_ms(meta.get("EchoTime")),
            inversion_ms=_ms(meta.get("InversionTime")), repetition_ms=_ms(meta.get("RepetitionTime")),
            acquisition=str(meta.get("MRAcquisitionType", "")),
            frame_of_reference=tags.get("frame_of_reference", ""),
            shape=tuple(int(d) for d in img.shape),
            spacing=tuple(round(float(z), 5) for z in img.header.get_zooms()[:3]),
            file=nifti))
    return series


def _series_json(s: ser.Series) -> dict:
    d = asdict(s)
    d["file"] = s.file.name if s.file else None
    return d


def _read_study(folder: Path, cache: Path) -> DicomStudy:
    meta = json.loads((cache / "study.json").read_text(encoding="utf-8"))
    if meta.get("version") != CACHE_VERSION:
        raise ValueError("old cache entry")
    series = []
    for d in meta["series"]:
        d = dict(d, file=cache / d["file"], image_type=tuple(d["image_type"]), shape=tuple(d["shape"]),
                 spacing=tuple(d["spacing"]))
        if not d["file"].is_file():
            raise ValueError(f"{d['file']} is missing")
        series.append(ser.Series(**d))
    return DicomStudy(folder, cache, series, meta.get("study_date", ""), meta.get("study_tag", ""), list(meta["notes"]))


def _prune(root: Path, keep: Path) -> None:
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p != keep]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[CACHE_KEEP - 1:]:
        shutil.rmtree(old, ignore_errors=True)
    for part in root.glob(".part-*"):  # left by a conversion that was killed an hour or more ago
        if time.time() - part.stat().st_mtime > 3600:
            shutil.rmtree(part, ignore_errors=True)


def patient_id(folder: str | os.PathLike) -> str:
    """The PatientID of the study's first DICOM file (only for ``--keep-patient-id``); ``""`` if none."""
    import pydicom

    for path in dicom_files(folder)[:20]:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["PatientID"])
        except Exception:  # noqa: BLE001 - try the next file
            continue
        if str(ds.get("PatientID", "") or "").strip():
            return str(ds.PatientID).strip()
    return ""


def case_files(folder: str | os.PathLike, explicit: dict[str, str | os.PathLike] | None = None,
               warnings: list[str] | None = None, keep_patient_id: bool = False,
               reference: str = "t1ce") -> CaseFiles:
    """The files of a case made of a DICOM study (converted and, where needed, resampled in the cache).

    Args:
        folder: the DICOM folder.
        explicit: modality -> series number or description (``--series-map`` / ``--flair 3``...) overriding
            the proposal; ``seg`` -> a label map file on the reference grid.
        warnings: gets the conversion notes and the resampling note.
        keep_patient_id: make the case id of the PatientID instead of the study date and hash.
        reference: the grid the case uses: a modality, or ``"finest"`` (see :mod:`braingui.session`).

    Raises:
        CaseError: conversion failed, a modality has no series, or the series are from different
            frames of reference.
    """
    from braingui.session import choose, on_one_grid, require_one_frame

    warnings = warnings if warnings is not None else []
    explicit = dict(explicit or {})
    seg = explicit.pop("seg", None)
    unknown = set(explicit) - set(MODALITIES)
    if unknown:
        raise CaseError(f"unknown modality in the series map: {', '.join(sorted(unknown))}")
    study = open_study(folder)
    warnings.extend(study.notes)
    chosen = choose(study, {k: str(v) for k, v in explicit.items()})
    require_one_frame(chosen, folder, warnings)
    images = on_one_grid(chosen, study.cache, warnings, reference)
    case_id = study.case_id(patient_id(folder) if keep_patient_id else None)
    return CaseFiles(case_id=case_id, folder=Path(folder), images=images, seg=Path(seg) if seg else None,
                     scheme=SCHEME_DICOM)
