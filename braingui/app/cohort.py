"""A cohort on disk: its case folders, the deterministic split into parts, and ``cohort.csv`` (no torch).

* :func:`find_cases` walks a folder recursively; :mod:`braingui.discovery` decides what a case is. A folder
  holding image files whose names carry a modality (``*_flair``, ``t1c``, ...) is a case; if discovery
  refuses it (a modality missing, two FLAIRs, ...) it is still listed, with the error, so the batch
  records it as failed. A folder of 4D images with no modality names holds MSD Task01 cases, one per
  file. A folder whose sub-folders each hold one volume, of two or more modalities among them
  (BRATS 2013-2015), is one case. Folders of images without modality names (``labelsTr``, masks) are
  skipped, and so is the output folder; the walk goes on below every folder that holds no image. DICOM studies are not walked (open them one by one, or
  convert them first).
* The **case id** is the case's path relative to the cohort folder (``HGG/Brats18_2013_2_1``; the folder
  name when the cohort folder is itself a case; an MSD file's id ends in its stem); the batch writes
  ``OUT/<case id>/``.
* :func:`select_part`: cases sorted by id, case ``i`` goes to part ``i % N`` (nnU-Net's
  ``-part_id`` / ``-num_parts``), so the parts of a scheduler array cover the cohort once.
* :data:`FIXED_COLUMNS` and :func:`columns`: the CSV header (one ``prob_<class>`` column per class of the
  classification model); :func:`write_csv` / :func:`read_csv`; :func:`merge_parts` joins the part files.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from braingui import atomic
from braingui.discovery import MODALITIES, CaseFiles, classify_name, discover
from braingui.errors import BrainguiError, CaseError
from braingui.formats import NIFTI_EXTENSIONS, image_stem

CSV_NAME = "cohort.csv"
PART_PATTERN = re.compile(r"cohort-part-(\d+)-of-(\d+)\.csv")

FIXED_COLUMNS: tuple[str, ...] = (
    "case", "status", "message", "resumed", "seconds", "path", "case_id",
    "volume_ET_ml", "volume_TC_ml", "volume_WT_ml",
    "ref_volume_ET_ml", "ref_volume_TC_ml", "ref_volume_WT_ml", "dice_ET", "dice_TC", "dice_WT",
    "lesion_region", "lesion_count", "measurable_count", "sum_of_products_mm2",
    "largest_longest_mm", "largest_perpendicular_mm", "largest_product_mm2", "largest_slice",
    "ref_lesion_count", "ref_sum_of_products_mm2",
    "predicted_class",
)
"""Columns before the class probabilities (see the README's "Cohort batch" for their meaning)."""
TRAILING_COLUMNS: tuple[str, ...] = (
    "explanation_enrichment", "explanation_mass_in_wt", "explanation_peak_in_wt", "explanation_deletion_gain",
    "explanation_verdict", "quality_flags", "tta_views", "warnings",
    "seg_model", "seg_model_sha256", "cls_model", "cls_model_sha256", "software_version",
)
"""Columns after the class probabilities."""
MODEL_HASH_COLUMNS = ("seg_model_sha256", "cls_model_sha256")


def columns(classes: tuple[str, ...] | list[str]) -> list[str]:
    """The CSV header for a classifier with these class codes (none without a classifier)."""
    return list(FIXED_COLUMNS) + [f"prob_{c}" for c in classes] + list(TRAILING_COLUMNS)


def part_csv_name(part: int | None, parts: int | None) -> str:
    """``cohort.csv``, or ``cohort-part-K-of-N.csv`` for part ``K`` (0-based) of ``N``."""
    return CSV_NAME if parts is None else f"cohort-part-{part}-of-{parts}.csv"


@dataclass
class CohortCase:
    """One case found in the cohort.

    Attributes:
        id: the case id (path relative to the cohort folder, ``/``-separated).
        path: what :func:`braingui.case.load_case` opens (a folder, or an MSD 4D file).
        files: what discovery found, or ``None`` when it refused the folder.
        error: discovery's message when it refused the folder.
    """

    id: str
    path: Path
    files: CaseFiles | None
    error: str | None = None


@dataclass
class Cohort:
    """What :func:`find_cases` found: the cases (sorted by id) and the folders skipped, with why."""

    root: Path
    cases: list[CohortCase]
    skipped: list[tuple[Path, str]]


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _images(entries: list[Path]) -> list[Path]:
    return [p for p in entries if image_stem(p.name) is not None and p.is_file()]


def _has_modality(images: list[Path]) -> bool:
    return any(classify_name(p.name)[0] in MODALITIES for p in images)


def _is_4d_nifti(path: Path) -> bool:
    if not path.name.lower().endswith(NIFTI_EXTENSIONS):
        return False
    try:
        import nibabel as nib

        shape = nib.load(os.fspath(path)).shape
    except Exception:  # noqa: BLE001 - an unreadable file is not an MSD image; the folder is skipped
        return False
    return len(shape) == 4 and shape[3] > 1


def find_cases(root: str | os.PathLike, exclude: tuple[str | os.PathLike, ...] = ()) -> Cohort:
    """Every case under ``root`` (see the module docstring).

    Args:
        root: the cohort folder.
        exclude: folders not to walk into (the batch's output folder).

    Raises:
        BrainguiError: ``root`` is not a folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BrainguiError(f"{root}: {'not a folder' if root.exists() else 'no such folder'}")
    excluded = {Path(p).expanduser().resolve() for p in exclude}
    seen: set[Path] = set()
    cases: list[CohortCase] = []
    skipped: list[tuple[Path, str]] = []

    def case_id(path: Path) -> str:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
        return root.resolve().name if rel == "." else rel

    def add(folder: Path) -> None:
        try:
            cases.append(CohortCase(case_id(folder), folder, discover(folder)))
        except CaseError as exc:
            cases.append(CohortCase(case_id(folder), folder, None, str(exc)))

    def visit(folder: Path) -> None:
        real = folder.resolve()
        if real in excluded or real in seen:
            return
        seen.add(real)
        try:
            entries = _entries(folder)
        except OSError as exc:
            skipped.append((folder, f"cannot list it ({exc.strerror or exc})"))
            return
        images, subs = _images(entries), [p for p in entries if p.is_dir()]
        if images:
            if _has_modality(images):
                add(folder)
                return
            four_d = [p for p in images if _is_4d_nifti(p)]
            if len(four_d) == 1:
                add(folder)
            elif four_d:  # an MSD imagesTr folder: one case per 4D image
                for p in four_d:
                    rel = case_id(folder)
                    stem = image_stem(p.name)
                    cid = stem if folder.resolve() == root.resolve() else f"{rel}/{stem}"
                    try:
                        cases.append(CohortCase(cid, p, discover(p)))
                    except CaseError as exc:
                        cases.append(CohortCase(cid, p, None, str(exc)))
            else:
                skipped.append((folder, "its images have no modality in their names"))
            return
        per_sub = []
        for sub in subs:
            try:
                per_sub.append(_images(_entries(sub)))
            except OSError:
                per_sub.append([])
        with_images = [imgs for imgs in per_sub if imgs]
        roles = {classify_name(imgs[0].name)[0] for imgs in with_images if len(imgs) == 1}
        if with_images and all(len(imgs) == 1 for imgs in with_images) and len(roles & set(MODALITIES)) >= 2:
            add(folder)  # BRATS 2013-2015: each volume in a sub-folder of its own
            return
        for sub in subs:
            visit(sub)

    visit(root)
    cases.sort(key=lambda c: c.id)
    return Cohort(root, cases, skipped)


def select_part(cases: list[CohortCase], part: int | None, parts: int | None) -> list[CohortCase]:
    """The cases of part ``part`` (0-based) of ``parts``: sorted by id, case ``i`` to part ``i % parts``."""
    ordered = sorted(cases, key=lambda c: c.id)
    if parts is None:
        return ordered
    if part is None or not 0 <= part < parts:
        raise BrainguiError(f"--part must be 0 .. {parts - 1} with --parts {parts} (got {part})")
    return [c for i, c in enumerate(ordered) if i % parts == part]


def input_fingerprint(case: CohortCase, root: Path) -> dict[str, list[int]] | None:
    """``{file (relative to root): [size, mtime_ns]}`` of every file the case reads; ``None`` when unknown."""
    if case.files is None:
        return None
    out = {}
    for p in case.files.all_files():
        try:
            st = p.stat()
        except OSError:
            return None
        try:
            name = p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            name = str(p.resolve())
        out[name] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def csv_text(header: list[str], rows: list[dict]) -> str:
    """CSV text of ``rows`` (dicts by column; missing cells empty), rows sorted by case id."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in sorted(rows, key=lambda r: str(r.get("case", ""))):
        writer.writerow([_cell(row.get(col)) for col in header])
    return buf.getvalue()


def write_csv(path: str | os.PathLike, header: list[str], rows: list[dict]) -> Path:
    """Write the CSV atomically (see :func:`csv_text`)."""
    return atomic.write_text(csv_text(header, rows), path)


def read_csv(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """``(header, rows)`` of a cohort CSV."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise BrainguiError(f"{path}: empty file, not a cohort CSV")
        return header, [dict(zip(header, r)) for r in reader]


def merge_parts(out_dir: str | os.PathLike) -> tuple[Path, int, list[dict[str, str]]]:
    """Join ``OUT/cohort-part-K-of-N.csv`` into ``OUT/cohort.csv``.

    Returns:
        ``(path, parts, rows)``.

    Raises:
        BrainguiError: no part files, parts of different ``N``, a part missing, headers that differ,
            different model sha256s between parts, or a case in two parts.
    """
    out = Path(out_dir).expanduser()
    found = {}
    if out.is_dir():
        for p in sorted(out.iterdir()):
            m = PART_PATTERN.fullmatch(p.name)
            if m:
                found[(int(m.group(1)), int(m.group(2)))] = p
    if not found:
        raise BrainguiError(f"{out}: no cohort-part-K-of-N.csv files to merge (run 'braingui batch ... --part K --parts N')")
    totals = sorted({n for _, n in found})
    if len(totals) > 1:
        raise BrainguiError(f"{out}: part files of different splits ({', '.join(f'of {n}' for n in totals)}); "
                            "remove the files of the old split")
    parts = totals[0]
    missing = [k for k in range(parts) if (k, parts) not in found]
    if missing:
        raise BrainguiError(f"{out}: part{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of {parts} "
                            "missing; run them first")
    header, rows, owner, hashes = None, [], {}, {}
    for k in range(parts):
        path = found[(k, parts)]
        h, part_rows = read_csv(path)
        if header is None:
            header = h
        elif h != header:
            raise BrainguiError(f"{path.name}: its columns differ from {found[(0, parts)].name} "
                                "(different software version or classifier); rerun that part")
        for row in part_rows:
            if row["case"] in owner:
                raise BrainguiError(f"case {row['case']} is in {owner[row['case']]} and {path.name}")
            owner[row["case"]] = path.name
            key = tuple(row.get(c, "") for c in MODEL_HASH_COLUMNS)
            if any(key):
                hashes.setdefault(key, path.name)
            rows.append(row)
    if len(hashes) > 1:
        seen = "; ".join(f"{name}: {' / '.join(v[:12] or '-' for v in key)}" for key, name in hashes.items())
        raise BrainguiError(f"the parts were run with different models (sha256 {seen}); rerun them with one set")
    return write_csv(out / CSV_NAME, header, rows), parts, rows
