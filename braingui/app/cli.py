"""Command line: ``braingui --case PATH``, ``braingui check PATH``, ``braingui demo-case OUT_DIR``,
``braingui batch COHORT_DIR --out OUT`` and ``braingui batch-merge OUT`` (:mod:`braingui.app.batch`).

Errors reach the user as one line (``braingui: error: ...``) and a non-zero exit status, never as a
traceback; unexpected failures also write the traceback to a log file in the user log folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from braingui import __version__
from braingui.cam_names import CAM_METHODS
from braingui.discovery import MODALITIES
from braingui.errors import BrainguiError
from braingui.logs import log_traceback

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TTA_CHOICES = (1, 2, 4, 8)
"""``--tta`` values: :data:`braingui.inference.tta.CHOICES` (not imported here: it would load numpy)."""
TTA_DEFAULT_TEXT = "4"
"""The pipeline's default (:data:`braingui.inference.tta.DEFAULT_TTA`), for the help text."""
CAM_METHOD_CHOICES = CAM_METHODS
"""``--cam-method`` values (:mod:`braingui.cam_names`: no torch, no numpy)."""
EXPLAIN_CHOICES = ("none", "quick", "full")
"""``--explain`` values: :data:`braingui.inference.explainer.LEVELS`."""


def _add_case_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("explicit files (override what the folder holds)")
    for m in MODALITIES + ("seg",):
        group.add_argument(f"--{m}", metavar="FILE", help=f"the {m} volume" if m != "seg" else "a label map")
    parser.add_argument("--labels", dest="label_convention", choices=("brats", "brats2023", "msd", "brats2013", "brats2012"),
                        help="label convention of the label map (default: detect)")
    dicom = parser.add_argument_group("DICOM folders (converted with dcm2niix into the user cache folder)")
    dicom.add_argument("--series-map", metavar="MAP",
                       help="which series is which: flair=SERIES,t1=...,t1ce=...,t2=... (series number or description; "
                            "default: the proposal from the series' metadata, shown by 'braingui check'); "
                            "with a DICOM folder --flair/--t1/--t1ce/--t2 also take a series")
    dicom.add_argument("--keep-patient-id", action="store_true",
                       help="name the case and its outputs by the DICOM PatientID (default: DICOM_<study date>_<hash>)")


def build_parser() -> argparse.ArgumentParser:
    """The main parser (GUI / headless run)."""
    p = argparse.ArgumentParser(
        prog="braingui",
        description="Interpretable brain-tumour MRI analysis: segmentation, classification and Grad-CAM.",
        epilog="Subcommands: 'braingui check PATH' (pre-flight report), 'braingui demo-case OUT_DIR' "
               "(write the synthetic demo case), 'braingui batch COHORT_DIR --out OUT' (every case of a cohort, "
               "cohort.csv) and 'braingui batch-merge OUT' (join the parts of a split batch). "
               "Research software - not for clinical use.",
    )
    p.add_argument("--version", action="version", version=f"braingui {__version__}")
    p.add_argument("--case", metavar="PATH", help="case folder (FLAIR, T1, T1ce, T2 NIfTI), MSD 4D image or DICOM study folder")
    p.add_argument("--demo", action="store_true", help="open the built-in synthetic demo case")
    p.add_argument("--no-gui", action="store_true", help="run headless (needs --out)")
    p.add_argument("--out", metavar="DIR", help="folder for the headless results")
    p.add_argument("--force-output-in-case", action="store_true",
                   help="allow --out to be the case folder or inside it (files braingui did not write are "
                        "never overwritten)")
    p.add_argument("--models", metavar="DIR", help="folder of model bundles (searched first; then "
                   "$BRAINGUI_MODELS, the user data folder, the bundled models)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--all-cams", action="store_true", help="Grad-CAM for every class, not only the predicted one")
    p.add_argument("--report", metavar="FILE.pdf",
                   help="with --no-gui: also write the PDF report of the case (A4: panes, volumes, measurements, "
                        "class, explanation, quality flags, models)")
    add_export_labels_option(p)
    p.add_argument("--tta", type=int, choices=TTA_CHOICES, default=None, metavar="N",
                   help="segmentation test-time augmentation: average N mirror-flipped views (1, 2, 4 or 8; default "
                        f"{TTA_DEFAULT_TEXT}); more than 1 also gives the uncertainty map (uncertainty.nii.gz)")
    p.add_argument("--postprocess", choices=("on", "off"), default="on",
                   help="post-process the segmentation (braingui.postprocess: small components, small enhancing "
                        "tumour; default on, with the thresholds chosen on data)")
    add_explanation_options(p)
    _add_gui_options(p)
    _add_case_options(p)
    _add_selftest_options(p)
    return p


def add_export_labels_option(parser: argparse.ArgumentParser) -> None:
    """``--export-labels brats|brats2023``: the values of the exported segmentation (and its label files)."""
    parser.add_argument("--export-labels", choices=("brats", "brats2023"), default="brats",
                        help="label values of the exported segmentation.nii.gz: brats = 1 core, 2 edema, 4 enhancing "
                             "(BraTS 2017-2022, default); brats2023 = 1, 2, 3 enhancing. segmentation_labels.txt "
                             "(ITK-SNAP) and segmentation.ctbl (3D Slicer) beside it name and colour them")


def add_explanation_options(parser: argparse.ArgumentParser) -> None:
    """``--explain``, ``--cam-method``, ``--cam-layer``: how the classification's heat map is made and checked."""
    group = parser.add_argument_group("heat map and its explanation")
    group.add_argument("--explain", choices=EXPLAIN_CHOICES, default="full",
                       help="how much to check the heat map: none; quick (where its heat lies against the whole "
                            "tumour, the call without the tumour and without each sequence); full (also the "
                            "deletion curve, the model-randomisation sanity check and the other classes' maps; "
                            "default). The window shows the quick part first, then the rest")
    group.add_argument("--cam-method", metavar="METHOD",
                       help=f"heat-map method: {', '.join(CAM_METHOD_CHOICES)} (default: the classifier manifest's)")
    group.add_argument("--cam-layer", metavar="LAYER",
                       help="network layer of the heat map, e.g. features.denseblock1 ... features.denseblock4 or "
                            "features.transition1 ... (default: the classifier manifest's; a wrong name lists the "
                            "valid ones)")


def check_explanation_options(args: argparse.Namespace) -> None:
    """Refuse an unknown ``--cam-method`` in one line (the layer is checked against the network once loaded).

    Raises:
        BrainguiError: naming the valid methods.
    """
    method = getattr(args, "cam_method", None)
    if method is not None and method not in CAM_METHOD_CHOICES:
        raise BrainguiError(f"--cam-method {method!r} is not a heat-map method "
                            f"(choose one of: {', '.join(CAM_METHOD_CHOICES)})")
    layer = getattr(args, "cam_layer", None)
    if layer is not None and not layer.strip():
        raise BrainguiError("--cam-layer needs a layer name, e.g. features.denseblock1")


def _add_selftest_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("self-test (of this installation, source or frozen)")
    group.add_argument("--selftest", action="store_true",
                       help="import everything, check the model bundles, analyse the synthetic demo case headless "
                            "and in the window (saved as a PNG), print a JSON report; exit 0 only if all passed")
    group.add_argument("--selftest-out", metavar="DIR",
                       help="where the self-test writes the demo case, results and PNG (default: a temporary "
                            "folder, removed when every check passed)")


def run_selftest_from_args(args: argparse.Namespace) -> int:
    """``--selftest``: see :mod:`braingui.app.selftest` (honours ``--models`` and ``--device``)."""
    from braingui.app.selftest import run_selftest

    return run_selftest(args.models, args.selftest_out, args.device)


def _add_gui_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--screenshot", metavar="FILE.png",
                        help="open the case in the app, run the analysis, save the window as this PNG and exit "
                             "(works without a screen: QT_QPA_PLATFORM=offscreen)")
    parser.add_argument("--plane", choices=("axial", "coronal", "sagittal"), default="axial",
                        help="plane shown first (default: axial)")


def build_check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="braingui check", description="Pre-flight report of a case; exit 0 if usable.")
    p.add_argument("path", nargs="?", help="case folder, MSD 4D image or DICOM study folder (prints its series)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_case_options(p)
    return p


def build_demo_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="braingui demo-case", description="Write the synthetic demo case (a phantom, not a patient).")
    p.add_argument("out_dir", help="folder to write the case into (created if missing)")
    p.add_argument("--small", action="store_true", help="a small 96x96x64 case at 2.5 mm instead of 240x240x155 at 1 mm")
    p.add_argument("--seed", type=int, default=0)
    return p


def _explicit(args: argparse.Namespace) -> dict[str, str]:
    explicit = {m: getattr(args, m) for m in MODALITIES + ("seg",) if getattr(args, m, None)}
    if getattr(args, "series_map", None):
        from braingui.series import parse_series_map

        explicit.update(parse_series_map(args.series_map))
    if getattr(args, "keep_patient_id", False):
        os.environ["BRAINGUI_KEEP_PATIENT_ID"] = "1"  # read by load_case, in this process and the window's
    return explicit


def _dicom_proposal(args: argparse.Namespace) -> list[dict] | None:
    """For a DICOM folder: print its series and their roles (text mode) and return the rows; else ``None``."""
    from braingui import dicom

    if not dicom.is_dicom_folder(args.path):
        if getattr(args, "series_map", None):
            raise BrainguiError(f"--series-map needs a DICOM folder; {args.path} is not one")
        return None
    study = dicom.open_study(args.path)
    selectors = {m: v for m, v in _explicit(args).items() if m != "seg"}
    from braingui.session import apply_selectors

    proposal = apply_selectors(study, selectors)
    if not args.json:
        print(f"DICOM study, {len(study.series)} series "
              f"(roles {'as given' if selectors else 'proposed from the series metadata'}; converted in {study.cache})")
        print(proposal.format())
    return proposal.rows()


def cmd_check(argv: list[str]) -> int:
    from braingui.case import load_case
    from braingui.report import case_summary, format_summary

    args = build_check_parser().parse_args(argv)
    if not args.path and not _explicit(args):
        raise BrainguiError("give a case folder (braingui check PATH) or the files (--flair ... --t2)")
    series = _dicom_proposal(args) if args.path else None
    case = load_case(args.path, _explicit(args), args.label_convention)
    summary = case_summary(case)
    if series is not None:
        summary["dicom_series"] = series
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return EXIT_OK


def cmd_demo_case(argv: list[str]) -> int:
    from braingui.app.demo import write_demo_case

    args = build_demo_parser().parse_args(argv)
    folder = write_demo_case(Path(args.out_dir), small=args.small, seed=args.seed)
    print(f"wrote the synthetic demo case to {folder}")
    return EXIT_OK


def cmd_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.selftest:
        return run_selftest_from_args(args)
    check_explanation_options(args)
    if args.no_gui:
        return run_headless(args)  # finds the model bundles before it makes the demo case
    if args.report:
        raise BrainguiError("--report is written by headless runs (--no-gui --out DIR); in the window use File > Report")
    if args.demo:
        from braingui.app.demo import demo_case_folder

        args.case = str(demo_case_folder())
    if not args.case and not _explicit(args):
        return run_gui_from_args(args)  # the app with no case open
    return run_case(args)


def run_case(args: argparse.Namespace) -> int:
    """Open a case: the GUI, or the headless pipeline with ``--no-gui``."""
    if args.no_gui:
        return run_headless(args)
    return run_gui_from_args(args)


def run_gui_from_args(args: argparse.Namespace) -> int:
    """The GUI branch: start the desktop app (torch loads in the analysis thread, not here)."""
    from braingui.ui.app import run_gui

    options = {"models_dir": args.models, "device": args.device, "all_cams": args.all_cams, "tta": args.tta,
               "postprocess": args.postprocess != "off", "export_labels": args.export_labels,
               "explain": args.explain, "cam_method": args.cam_method, "cam_layer": args.cam_layer}
    return run_gui(args.case, _explicit(args) or None, args.label_convention, screenshot=args.screenshot,
                   analysis_options=options, plane=args.plane)


class _ProgressBar:
    """A one-line text progress bar on a terminal; one line per stage otherwise (logs, pipes)."""

    WIDTH = 30

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.stage = None

    def update(self, event) -> None:
        filled = int(round(self.WIDTH * event.fraction))
        line = (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * event.fraction:5.1f}% "
                f"{event.stage}{': ' + event.message if event.message else ''} ({event.elapsed_s:.1f} s)")
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
        elif event.stage != self.stage:
            self.stream.write(line + "\n")
        self.stage = event.stage
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _postprocessing(args: argparse.Namespace):
    """``--postprocess off`` -> :data:`braingui.postprocess.OFF`; ``on`` -> ``None`` (the pipeline's default)."""
    if getattr(args, "postprocess", "on") != "off":
        return None
    from braingui.postprocess import OFF

    return OFF


def _check_out(out: Path, case, search, args: argparse.Namespace) -> None:
    """Before the analysis: refuse an ``--out`` inside the case folder (unless forced), a file there that
    braingui did not write, or a folder that cannot be written (:func:`braingui.export_set.check_output`)."""
    from braingui.export import GRADCAM_FILE, RESULTS_FILE, SEGMENTATION_FILE
    from braingui.export_set import OutputInCaseError, case_folders, check_output

    folders = case_folders(case.files.all_files(), case.files.folder)
    names = [RESULTS_FILE] + ([SEGMENTATION_FILE] if search.segmentation else []) + (
        [GRADCAM_FILE] if search.classification else [])
    try:
        check_output(out, names, folders, args.force_output_in_case)
    except OutputInCaseError as exc:
        raise BrainguiError(f"--out {exc} (pass --force-output-in-case to write there anyway)") from None


def _probe_out(text: str) -> Path:
    """``--out`` checked before anything runs: a valid path, not a file, and a folder (or the nearest
    existing folder above it) where a file can really be created - a probe file, removed at once."""
    import tempfile

    try:
        if "\x00" in text:
            raise ValueError("it holds a NUL character")
        out = Path(text).expanduser()
        if out.exists() and not out.is_dir():
            raise BrainguiError(f"--out {out}: exists and is not a folder")
        existing = next(p for p in (out, *out.parents) if p.exists())
    except (ValueError, OSError) as exc:  # an embedded NUL byte, a name too long, ...
        raise BrainguiError(f"--out {text!r}: not a usable folder name ({exc})") from None
    if not existing.is_dir():
        raise BrainguiError(f"--out {out}: {existing} is a file, so no folder can be made there")
    try:
        with tempfile.TemporaryFile(prefix=".braingui-probe-", dir=existing):
            pass
    except OSError as exc:
        raise BrainguiError(f"--out {out}: cannot write in {existing} ({exc.strerror or exc})") from None
    return out


def _check_report(args: argparse.Namespace, case):
    """``--report FILE.pdf`` checked before the analysis (:func:`braingui.ui.report_pdf.check_report_path`)."""
    if not getattr(args, "report", None):
        return None
    from braingui.ui.report_pdf import check_report_path

    return check_report_path(args.report, case, args.force_output_in_case)


def _write_report(case, result, path: Path) -> Path:
    """Write the PDF report (Qt off-screen: :func:`braingui.ui.report_pdf.write_report`)."""
    from braingui.ui.report_pdf import write_report

    try:
        return write_report(case, result, path)
    except OSError as exc:
        raise BrainguiError(f"cannot write the report {path}: {exc.strerror or exc}") from exc


def run_headless(args: argparse.Namespace) -> int:
    """``--no-gui``: find the model bundles, analyse the case, write the results into ``--out``.

    Writes ``segmentation.nii.gz``, ``uncertainty.nii.gz`` (with ``--tta`` > 1), ``gradcam.nii.gz`` and
    ``results.json`` (see :mod:`braingui.export`) and the export set's marker ``braingui-export.json``
    (:mod:`braingui.export_set`), and nothing else (but the PDF that ``--report FILE.pdf`` names, written
    after them: :mod:`braingui.ui.report_pdf`); ``--out`` in the case folder (without
    ``--force-output-in-case``) or holding a file braingui did not write is refused before the analysis.
    Progress and quality flags go to stderr. torch is imported here, not when the CLI loads.
    """
    if not args.out:
        raise BrainguiError("--no-gui needs --out DIR (the folder for the results)")
    out = _probe_out(args.out)
    if not args.demo and not args.case and not _explicit(args):
        raise BrainguiError("--no-gui needs a case: --case PATH, --demo or the files (--flair ... --t2)")
    from braingui.inference.locate import find_bundles

    search = find_bundles(args.models)
    search.require_any()
    for task in search.missing():
        print(f"braingui: warning: no {task} model bundle found (looked in: {search.looked_in()})", file=sys.stderr)
    from braingui.case import load_case

    if args.demo:
        from braingui.app.demo import demo_case_folder

        args.case = str(demo_case_folder())
    case = load_case(args.case, _explicit(args), args.label_convention)
    _check_out(out, case, search, args)
    report = _check_report(args, case)
    from braingui.inference.pipeline import analyse, run_to_completion
    from braingui.inference.predictor import Predictor

    predictor = Predictor(args.device)
    bar = _ProgressBar()
    try:
        result = run_to_completion(analyse(case, predictor, search.segmentation, search.classification,
                                           all_cams=args.all_cams, notes=search.notes, tta=args.tta,
                                           postprocess=_postprocessing(args), explain=args.explain,
                                           cam_method=args.cam_method, cam_layer=args.cam_layer), bar.update)
    finally:
        bar.finish()
    from braingui.export import export_result

    try:
        written = export_result(result, case.grid, out, all_cams=args.all_cams, label_convention=args.export_labels,
                                inputs=case.files.all_files(), case_folder=case.files.folder,
                                force_in_case=args.force_output_in_case)
    except OSError as exc:
        raise BrainguiError(f"cannot write the results to {out}: {exc.strerror or exc}") from exc
    if report is not None:
        written = {**written, "report": _write_report(case, result, report)}
    for warning in result.warnings:
        print(f"braingui: warning: {warning}", file=sys.stderr)
    for flag in result.quality_flags:
        print(f"braingui: quality: {flag['code']}: {flag['message']}", file=sys.stderr)
    if result.predicted_class is not None:
        p = result.probabilities
        title = result.class_titles.get(result.predicted_class, result.predicted_class)
        print(f"{case.case_id}: {title} ({result.predicted_class}), probabilities "
              + ", ".join(f"{c} {p[c]:.3f}" for c in result.class_names))
    if result.explanation:
        print(f"explanation ({result.explanation['method']} at {result.explanation['layer']}, "
              f"{result.explanation['level']}): {result.explanation['verdict']}")
    if result.volumes_ml:
        print("volumes (mL): " + ", ".join(f"{k} {v:.2f}" for k, v in result.volumes_ml.items()))
    if result.measurements is not None:
        from braingui.measurements import measurements_text

        print(f"measurements: {measurements_text(result.measurements)}")
    print("wrote " + ", ".join(str(path) for path in written.values()))
    if result.demo_models:
        print("research demonstration models - not for clinical use")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``braingui`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "check":
            return cmd_check(argv[1:])
        if argv and argv[0] == "demo-case":
            return cmd_demo_case(argv[1:])
        if argv and argv[0] in ("batch", "batch-merge"):
            from braingui.app.batch import cmd_batch, cmd_batch_merge

            return (cmd_batch if argv[0] == "batch" else cmd_batch_merge)(argv[1:])
        return cmd_main(argv)
    except BrainguiError as exc:
        print(f"braingui: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("braingui: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, details in the log
        log = log_traceback(traceback.format_exc(), "crash.log")
        where = f" (details in {log})" if log else ""
        print(f"braingui: internal error: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
