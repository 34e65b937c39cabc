"""``braingui batch COHORT_DIR --out OUT`` and ``braingui batch-merge OUT``: a cohort, with the models loaded once.

Every case of the cohort (:func:`braingui.app.cohort.find_cases`) is analysed as a headless run analyses
it and written to ``OUT/<case id>/`` as a headless run writes it (:func:`braingui.export.export_result`),
plus ``batch.json``, the batch's record of the case (inputs, models, options, its CSV row). One row per
case goes to ``OUT/cohort.csv`` (``cohort-part-K-of-N.csv`` with ``--part K --parts N``), rewritten
atomically after every case, so an interrupted batch leaves a valid CSV.

* **Models load once**: one :class:`~braingui.inference.predictor.Predictor` for the whole batch, the
  bundles loaded before the first case.
* **Failures**: a case that cannot be found, loaded, analysed or written is a ``failed`` row with its
  message, and the batch goes on; the exit status is 1 when any case failed.
* **Resume**: a case whose ``batch.json`` says ``ok`` for the same input files (size and mtime), the same
  model sha256s and the same options, with its files still there, is not run again (``resumed`` = 1;
  its row is the recorded one). Failed cases are always retried.
* **Split**: ``--part K --parts N`` (0-based ``K``) runs case ``i`` of the sorted ids when ``i % N == K``,
  as nnU-Net's ``-part_id`` / ``-num_parts``, e.g. a Slurm array ``--array=0-3`` with
  ``braingui batch COHORT --out OUT --part $SLURM_ARRAY_TASK_ID --parts 4``; then ``braingui batch-merge OUT``.
* ``--report`` writes ``OUT/<case>/report.pdf`` with :data:`REPORT_HOOK` when that module is installed
  (an up-to-date case without its report is run again); otherwise it says once that the report is not
  available and goes on.
* Progress: a bar with the case count, elapsed time and ETA on stderr (one line per case when stderr is
  not a terminal).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from braingui import atomic
from braingui import labels as lab
from braingui.app import cohort as co
from braingui.errors import BrainguiError
from braingui.logs import log_traceback

RECORD_NAME = "batch.json"
RECORD_FORMAT = 1
REPORT_HOOK = ("braingui.ui.report_pdf", "write_report")
"""``(module, function)`` of the PDF report, called as ``function(case, result, path)``."""
REPORT_NAME = "report.pdf"
_EXPLANATION_KEYS = {"explanation_enrichment": ("enrichment",), "explanation_mass_in_wt": ("mass_in_wt",),
                     "explanation_peak_in_wt": ("peak_in_wt",), "explanation_deletion_gain": ("deletion_gain", "gain"),
                     "explanation_verdict": ("verdict",)}


def build_batch_parser() -> argparse.ArgumentParser:
    from braingui.app.cli import TTA_CHOICES, add_explanation_options, add_export_labels_option

    p = argparse.ArgumentParser(prog="braingui batch", description="Analyse every case under COHORT_DIR, "
                                "writing OUT/<case>/ and OUT/cohort.csv. Research software - not for clinical use.")
    p.add_argument("cohort", metavar="COHORT_DIR", help="folder holding the case folders (searched recursively)")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder (OUT/<case>/, OUT/cohort.csv)")
    p.add_argument("--part", type=int, metavar="K", help="run part K (0-based) of --parts N (case i when i %% N == K)")
    p.add_argument("--parts", type=int, metavar="N", help="number of parts the cohort is split into")
    p.add_argument("--report", action="store_true", help="also write OUT/<case>/report.pdf")
    p.add_argument("--force", action="store_true", help="rerun every case (no resume)")
    p.add_argument("--models", metavar="DIR", help="folder of model bundles (as for a headless run)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--all-cams", action="store_true", help="Grad-CAM for every class")
    p.add_argument("--tta", type=int, choices=TTA_CHOICES, default=None, metavar="N",
                   help="segmentation test-time augmentation views (as for a headless run)")
    p.add_argument("--postprocess", choices=("on", "off"), default="on", help="post-process the segmentation")
    p.add_argument("--labels", dest="label_convention", choices=tuple(lab.CONVENTIONS),
                   help="label convention of the cases' own label maps (default: detect)")
    add_export_labels_option(p)
    add_explanation_options(p)
    return p


@dataclass
class BatchSummary:
    """How a batch went: counts and the CSV written."""

    csv_path: Path
    total: int
    ok: int
    failed: int
    resumed: int
    rows: list[dict]


class CohortProgress:
    """``[#####.....] 3/10 cases, 12 s elapsed, ETA 28 s | case: stage`` on stderr."""

    WIDTH = 24

    def __init__(self, total: int, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.computed_s: list[float] = []

    def eta_s(self) -> float | None:
        """Mean seconds of the cases computed so far x the cases left (``None`` before the first)."""
        if not self.computed_s:
            return None
        return float(np.mean(self.computed_s)) * (self.total - self.done)

    def line(self, detail: str) -> str:
        filled = int(round(self.WIDTH * self.done / max(self.total, 1)))
        eta = self.eta_s()
        return (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total} cases, "
                f"{time.perf_counter() - self.start:.0f} s elapsed, ETA {'?' if eta is None else f'{eta:.0f} s'}"
                f" | {detail}")

    def stage(self, case: str, event) -> None:
        if self.tty:
            self.stream.write("\r" + self.line(f"{case}: {event.stage}")[:150].ljust(150))
            self.stream.flush()

    def case_done(self, case: str, status: str, seconds: float, computed: bool) -> None:
        self.done += 1
        if computed:
            self.computed_s.append(seconds)
        text = self.line(f"{case}: {status} ({seconds:.1f} s)")
        self.stream.write(("\r" + text[:150].ljust(150)) if self.tty else text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Dice of two bool masks (BraTS: both empty -> 1)."""
    n = int(pred.sum()) + int(true.sum())
    return 1.0 if n == 0 else 2.0 * int(np.logical_and(pred, true).sum()) / n


def _find(tree, key: str):
    """The first value stored under ``key`` anywhere in nested dicts / lists, or ``None``."""
    if isinstance(tree, dict):
        if key in tree and not isinstance(tree[key], (dict, list)):
            return tree[key]
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            found = _find(item, key)
            if found is not None:
                return found
    return None


def result_row(case, result, seconds: float) -> dict:
    """The CSV row of an analysed case (``case`` is the loaded :class:`~braingui.case.Case`)."""
    summary = result.summary()
    row: dict = {"case_id": case.case_id, "seconds": round(seconds, 2), "status": "ok", "resumed": False,
                 "predicted_class": result.predicted_class, "software_version": result.software_version,
                 "tta_views": summary.get("segmentation", {}).get("tta_views") if summary.get("segmentation") else None,
                 "warnings": " | ".join(result.warnings)}
    for region, ml in result.volumes_ml.items():
        row[f"volume_{region}_ml"] = round(float(ml), 4)
    for code, p in result.probabilities.items():
        row[f"prob_{code}"] = round(float(p), 6)
    m = result.measurements
    if m is not None:
        big = m.largest
        row.update(lesion_region=m.region, lesion_count=m.count, measurable_count=m.measurable_count,
                   sum_of_products_mm2=round(m.sum_of_products_mm2, 1))
        if big is not None:
            row.update(largest_longest_mm=round(big.longest_mm, 2), largest_perpendicular_mm=round(big.perpendicular_mm, 2),
                       largest_product_mm2=round(big.product_mm2, 1), largest_slice=big.slice_index + 1)
    if case.labels is not None:
        for region, ml in case.region_volumes_ml().items():
            row[f"ref_volume_{region}_ml"] = round(float(ml), 4)
        if result.labels is not None:
            pred, true = lab.regions(result.labels), lab.regions(case.labels)
            for region in lab.REGIONS:
                if region == "ET" and case.label_convention == lab.BRATS2012:
                    continue  # a BRATS 2012 reference has no enhancing tumour: not a measurement
                row[f"dice_{region}"] = round(_dice(pred[region], true[region]), 4)
            from braingui.measurements import measure

            ref = measure(case.labels, case.grid.affine)
            row.update(ref_lesion_count=ref.count, ref_sum_of_products_mm2=round(ref.sum_of_products_mm2, 1))
    explanation = summary.get("explanation")
    for column, keys in _EXPLANATION_KEYS.items():
        row[column] = next((v for k in keys if (v := _find(explanation, k)) is not None), None)
    deletion = (explanation or {}).get("deletion") or {}
    if row.get("explanation_deletion_gain") is None and None not in (deletion.get("map_auc"), deletion.get("random_auc")):
        row["explanation_deletion_gain"] = round(deletion["random_auc"] - deletion["map_auc"], 6)
    quality = summary.get("quality") or {}
    row["quality_flags"] = ";".join(f.get("code", "") for f in quality.get("flags", []) if isinstance(f, dict))
    return row


def _model_columns(search) -> dict:
    seg, cls = search.segmentation, search.classification
    return {"seg_model": seg.name if seg else None, "seg_model_sha256": seg.manifest.sha256 if seg else None,
            "cls_model": cls.name if cls else None, "cls_model_sha256": cls.manifest.sha256 if cls else None}


def _read_record(folder: Path) -> dict | None:
    try:
        return json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _up_to_date(record: dict | None, folder: Path, inputs, models: dict, options: dict,
                needs: tuple[str, ...] = ()) -> bool:
    """Same inputs, models and options as the recorded ok run, its files there (and ``needs``, e.g. the report)."""
    if not record or record.get("format") != RECORD_FORMAT or record.get("status") != "ok" or inputs is None:
        return False
    if record.get("inputs") != inputs or record.get("models") != models or record.get("options") != options:
        return False
    files = list(record.get("files", [])) + list(needs)
    return all((folder / name).is_file() for name in files) and isinstance(record.get("row"), dict)


def report_writer():
    """The PDF report function of :data:`REPORT_HOOK`, or ``None`` when it is not installed."""
    try:
        return getattr(importlib.import_module(REPORT_HOOK[0]), REPORT_HOOK[1])
    except (ImportError, AttributeError):
        return None


def run_batch(args: argparse.Namespace, stream=None) -> BatchSummary:
    """Run a batch (the parsed ``braingui batch`` arguments; see the module docstring)."""
    if (args.part is None) != (args.parts is None):
        raise BrainguiError("--part K and --parts N go together")
    if args.parts is not None and args.parts < 1:
        raise BrainguiError(f"--parts must be 1 or more (got {args.parts})")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise BrainguiError(f"--out {out}: exists and is not a folder")
    found = co.find_cases(args.cohort, exclude=(out,))
    cases = co.select_part(found.cases, args.part, args.parts)
    stream = stream if stream is not None else sys.stderr
    for folder, why in found.skipped:
        print(f"braingui: skipped {folder}: {why}", file=stream)
    if not found.cases:
        raise BrainguiError(f"{args.cohort}: no case folder found (a case folder holds FLAIR, T1, T1ce and T2 images)")
    from braingui.inference.locate import find_bundles

    search = find_bundles(args.models)
    search.require_any()
    for task in search.missing():
        print(f"braingui: warning: no {task} model bundle found (looked in: {search.looked_in()})", file=stream)
    models = _model_columns(search)
    classes = list(search.classification.manifest.classification.classes) if search.classification else []
    header = co.columns(classes)
    options = {"all_cams": bool(args.all_cams), "tta": args.tta, "postprocess": args.postprocess,
               "export_labels": args.export_labels, "label_convention": args.label_convention,
               "explain": args.explain, "cam_method": args.cam_method, "cam_layer": args.cam_layer}
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / co.part_csv_name(args.part, args.parts)
    writer = report_writer() if args.report else None
    if args.report and writer is None:
        print("braingui: warning: --report: the PDF report is not available in this version; no report written",
              file=stream)
    predictor = None
    rows: list[dict] = []
    progress = CohortProgress(len(cases), stream)
    try:
        for entry in cases:
            folder = out / entry.id
            inputs = co.input_fingerprint(entry, found.root)
            base = {"case": entry.id, "path": str(entry.path), **models}
            record = None if args.force else _read_record(folder)
            if _up_to_date(record, folder, inputs, models, options, (REPORT_NAME,) if writer else ()):
                row = {**record["row"], "resumed": True}
                rows.append(row)
                progress.case_done(entry.id, "up to date", float(row.get("seconds") or 0), computed=False)
                co.write_csv(csv_path, header, rows)
                continue
            if predictor is None and entry.error is None:
                predictor = _load_models(args.device, search)  # a model that fails to load stops the batch
            t0 = time.perf_counter()
            try:
                if entry.error is not None:
                    raise BrainguiError(entry.error)
                row, written = _run_case(entry, folder, predictor, search, args, writer, progress, stream)
                row.update(base)
                record = {"format": RECORD_FORMAT, "status": "ok", "case": entry.id, "inputs": inputs,
                                 "models": models, "options": options, "files": sorted(p.name for p in written),
                                 "row": row}
                atomic.write_json(record, folder / RECORD_NAME, allow_nan=False)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BrainguiError as exc:
                row = {**base, "status": "failed", "message": str(exc)}
            except Exception as exc:  # noqa: BLE001 - one broken case must not stop a cohort
                log = log_traceback(traceback.format_exc(), "batch.log")
                row = {**base, "status": "failed",
                       "message": f"internal error: {type(exc).__name__}: {exc}" + (f" (details in {log})" if log else "")}
            row["seconds"] = row.get("seconds", round(time.perf_counter() - t0, 2))
            rows.append(row)
            progress.case_done(entry.id, row["status"], time.perf_counter() - t0, computed=row["status"] == "ok")
            co.write_csv(csv_path, header, rows)
    finally:
        progress.finish()
    co.write_csv(csv_path, header, rows)
    ok = sum(1 for r in rows if r.get("status") == "ok")
    return BatchSummary(csv_path, len(rows), ok, len(rows) - ok, sum(1 for r in rows if r.get("resumed")), rows)


def _load_models(device: str, search):
    """One predictor with every bundle loaded (once for the whole batch)."""
    from braingui.inference.predictor import Predictor

    predictor = Predictor(device)
    for bundle in (search.segmentation, search.classification):
        if bundle is not None:
            predictor.load(bundle)
    return predictor


def _run_case(entry, folder: Path, predictor, search, args, writer, progress, stream):
    """Load, analyse and export one case; returns ``(row, written paths)``."""
    from braingui.app.cli import _postprocessing
    from braingui.case import load_case
    from braingui.export import export_result
    from braingui.inference.pipeline import analyse, run_to_completion

    t0 = time.perf_counter()
    case = load_case(entry.path, None, args.label_convention)
    gen = analyse(case, predictor, search.segmentation, search.classification, all_cams=args.all_cams,
                  notes=search.notes, tta=args.tta, postprocess=_postprocessing(args), explain=args.explain,
                  cam_method=args.cam_method, cam_layer=args.cam_layer)
    result = run_to_completion(gen, lambda event: progress.stage(entry.id, event))
    try:
        written = export_result(result, case.grid, folder, all_cams=args.all_cams, label_convention=args.export_labels,
                                inputs=case.files.all_files(), case_folder=case.files.folder)
    except OSError as exc:
        raise BrainguiError(f"cannot write the results to {folder}: {exc.strerror or exc}") from exc
    paths = list(written.values())
    if writer is not None:
        try:
            writer(case, result, folder / REPORT_NAME)
            paths.append(folder / REPORT_NAME)
        except Exception as exc:  # noqa: BLE001 - the analysis stands without its PDF
            result.warnings.append(f"report not written: {type(exc).__name__}: {exc}")
    return result_row(case, result, time.perf_counter() - t0), paths


def cmd_batch(argv: list[str]) -> int:
    """``braingui batch``: exit 0 when every case is ok, 1 when any failed."""
    args = build_batch_parser().parse_args(argv)
    summary = run_batch(args)
    failed = [r for r in summary.rows if r.get("status") != "ok"]
    print(f"batch: {summary.total} cases, {summary.ok} ok ({summary.resumed} up to date), {summary.failed} failed"
          f" -> {summary.csv_path}")
    for row in failed:
        print(f"  failed {row['case']}: {row.get('message', '')}")
    return 1 if failed else 0


def cmd_batch_merge(argv: list[str]) -> int:
    """``braingui batch-merge OUT``: join the part CSVs into ``OUT/cohort.csv``."""
    p = argparse.ArgumentParser(prog="braingui batch-merge",
                                description="Join OUT/cohort-part-K-of-N.csv into OUT/cohort.csv.")
    p.add_argument("out", metavar="OUT", help="the batch output folder")
    args = p.parse_args(argv)
    path, parts, rows = co.merge_parts(args.out)
    ok = sum(1 for r in rows if r.get("status") == "ok")
    print(f"merged {parts} parts: {len(rows)} cases ({ok} ok, {len(rows) - ok} failed) -> {path}")
    return 0
