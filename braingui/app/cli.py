"""Command line: ``braingui --case PATH``, ``braingui check PATH``, ``braingui demo-case OUT_DIR``.

Errors reach the user as one line (``braingui: error: ...``) and a non-zero exit status, never as a
traceback; unexpected failures also write the traceback to a log file in the user log folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from braingui import __version__
from braingui.discovery import MODALITIES
from braingui.errors import BrainguiError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SUBCOMMANDS = ("check", "demo-case")


def _add_case_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("explicit files (override what the folder holds)")
    for m in MODALITIES + ("seg",):
        group.add_argument(f"--{m}", metavar="FILE", help=f"the {m} volume" if m != "seg" else "a label map")
    parser.add_argument("--labels", dest="label_convention", choices=("brats", "brats2023", "msd"),
                        help="label convention of the label map (default: detect)")


def build_parser() -> argparse.ArgumentParser:
    """The main parser (GUI / headless run)."""
    p = argparse.ArgumentParser(
        prog="braingui",
        description="Interpretable brain-tumour MRI analysis: segmentation, classification and Grad-CAM.",
        epilog="Subcommands: 'braingui check PATH' (pre-flight report), 'braingui demo-case OUT_DIR' "
               "(write the synthetic demo case). Research software - not for clinical use.",
    )
    p.add_argument("--version", action="version", version=f"braingui {__version__}")
    p.add_argument("--case", metavar="PATH", help="case folder (FLAIR, T1, T1ce, T2 NIfTI) or MSD 4D image")
    p.add_argument("--demo", action="store_true", help="open the built-in synthetic demo case")
    p.add_argument("--no-gui", action="store_true", help="run headless (needs --out)")
    p.add_argument("--out", metavar="DIR", help="folder for the headless results")
    p.add_argument("--models", metavar="DIR", help="folder of model bundles (searched first; then "
                   "$BRAINGUI_MODELS, the user data folder, the bundled models)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--all-cams", action="store_true", help="Grad-CAM for every class, not only the predicted one")
    _add_gui_options(p)
    _add_case_options(p)
    _add_selftest_options(p)
    return p


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
    p.add_argument("path", nargs="?", help="case folder or MSD 4D image")
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
    return {m: getattr(args, m) for m in MODALITIES + ("seg",) if getattr(args, m, None)}


def cmd_check(argv: list[str]) -> int:
    from braingui.case import load_case
    from braingui.report import case_summary, format_summary

    args = build_check_parser().parse_args(argv)
    if not args.path and not _explicit(args):
        raise BrainguiError("give a case folder (braingui check PATH) or the files (--flair ... --t2)")
    case = load_case(args.path, _explicit(args), args.label_convention)
    summary = case_summary(case)
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
    if args.no_gui:
        return run_headless(args)  # finds the model bundles before it makes the demo case
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

    options = {"models_dir": args.models, "device": args.device, "all_cams": args.all_cams}
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


def run_headless(args: argparse.Namespace) -> int:
    """``--no-gui``: find the model bundles, analyse the case, write the results into ``--out``.

    Writes ``segmentation.nii.gz``, ``gradcam.nii.gz`` and ``results.json`` (see :mod:`braingui.export`)
    and nothing else; progress goes to stderr. torch is imported here, not when the CLI loads.
    """
    if not args.out:
        raise BrainguiError("--no-gui needs --out DIR (the folder for the results)")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise BrainguiError(f"--out {out}: exists and is not a folder")
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
    from braingui.inference.pipeline import analyse, run_to_completion
    from braingui.inference.predictor import Predictor

    predictor = Predictor(args.device)
    bar = _ProgressBar()
    try:
        result = run_to_completion(analyse(case, predictor, search.segmentation, search.classification,
                                           all_cams=args.all_cams, notes=search.notes), bar.update)
    finally:
        bar.finish()
    from braingui.export import export_result

    try:
        written = export_result(result, case.grid, out, all_cams=args.all_cams)
    except OSError as exc:
        raise BrainguiError(f"cannot write the results to {out}: {exc.strerror or exc}") from exc
    for warning in result.warnings:
        print(f"braingui: warning: {warning}", file=sys.stderr)
    if result.predicted_class is not None:
        p = result.probabilities
        title = result.class_titles.get(result.predicted_class, result.predicted_class)
        print(f"{case.case_id}: {title} ({result.predicted_class}), probabilities "
              + ", ".join(f"{c} {p[c]:.3f}" for c in result.class_names))
    if result.volumes_ml:
        print("volumes (mL): " + ", ".join(f"{k} {v:.2f}" for k, v in result.volumes_ml.items()))
    print("wrote " + ", ".join(str(path) for path in written.values()))
    if result.demo_models:
        print("research demonstration models - not for clinical use")
    return EXIT_OK


def _log_traceback() -> Path | None:
    try:
        from platformdirs import PlatformDirs

        log_dir = Path(PlatformDirs("braingui", appauthor=False).user_log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "crash.log"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(traceback.format_exc() + "\n")
        return path
    except Exception:  # noqa: BLE001 - logging must never mask the original error
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``braingui`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "check":
            return cmd_check(argv[1:])
        if argv and argv[0] == "demo-case":
            return cmd_demo_case(argv[1:])
        return cmd_main(argv)
    except BrainguiError as exc:
        print(f"braingui: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("braingui: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, details in the log
        log = _log_traceback()
        where = f" (details in {log})" if log else ""
        print(f"braingui: internal error: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
