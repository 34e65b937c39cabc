"""``braingui --selftest``: check that this installation (source or frozen) works end to end.

Checks, in order (each reports ``name``, ``ok``, ``seconds``, ``detail``):

``imports``
    every ``braingui`` module and every third-party module the app imports lazily (torch, MONAI,
    medcam and its cv2 / matplotlib / pandas / scikit-image imports, Qt, pyqtgraph, the vtk modules
    of the 3D view) - what a frozen build most often misses;
``bundles``
    the model bundles are found (``--models``, ``$BRAINGUI_MODELS``, user data folder, shipped
    bundles), their weights match the manifests' sha256 and load into their networks;
``demo case``
    the synthetic demo case (:mod:`braingui.app.demo`) is written into the output folder;
``formats``
    MetaImage (``.mha``) and NRRD volumes written with SimpleITK read back through the app's reader
    (RAS+ voxel order and affine), which needs SimpleITK's compiled extension in a frozen build; and
    ``.nii.gz`` volumes are verified and decompressed by isal's igzip;
``dicom``
    a generated DICOM series is converted by the bundled dcm2niix binary and proposed as FLAIR;
``pipeline``
    the whole analysis (segmentation, classification, Grad-CAM) runs on it headless and its results
    are exported (``results/``: the files of ``--no-gui --out``); on the CPU with OpenVINO installed the
    segmentation must have run on OpenVINO (its device plugins are loaded at run time, which a frozen
    build has to ship);
``3d surface``
    the 3D view's tumour meshes (vtk) of that segmentation, without a screen;
``window``
    the main window opens the case, runs the analysis in its worker thread and saves itself as a PNG
    (the ``--screenshot`` path of :func:`braingui.ui.app.run_gui`; offscreen without a display);
``report``
    the PDF report of that result, written off-screen with Qt's own PDF writer;
``3d view``
    with a real screen only (e.g. under Xvfb), the vtk 3D window renders the meshes with OpenGL.

The JSON report goes to stdout, one progress line per check to stderr; the exit status is 0 only when
every check passed. This module imports neither torch nor Qt at import time (the checks do).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

LAZY_IMPORTS = (
    "numpy", "scipy.ndimage", "nibabel", "platformdirs", "SimpleITK", "pydicom", "dcm2niix", "isal.igzip", "openvino",
    "torch", "monai", "monai.networks.nets", "monai.data.utils", "medcam", "cv2",
    "matplotlib.cm", "matplotlib.pyplot", "pandas", "skimage.filters",
    "PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets", "PySide6.QtOpenGLWidgets", "pyqtgraph",
    "vtkmodules.vtkCommonDataModel", "vtkmodules.vtkCommonMath", "vtkmodules.vtkCommonTransforms",
    "vtkmodules.vtkFiltersCore", "vtkmodules.vtkFiltersGeneral", "vtkmodules.vtkRenderingCore",
    "vtkmodules.vtkRenderingOpenGL2", "vtkmodules.vtkInteractionStyle", "vtkmodules.util.numpy_support",
    "vtkmodules.qt.QVTKRenderWindowInteractor",
)
"""Third-party modules to import (``tests/test_packaging_spec.py`` checks that it covers braingui's imports)."""

PNG_NAME = "selftest-window.png"


def _braingui_modules() -> list[str]:
    import pkgutil

    import braingui

    names = ["braingui"]
    for info in pkgutil.walk_packages(braingui.__path__, "braingui."):
        if info.name != "braingui.app.__main__":  # importing it runs the app
            names.append(info.name)
    return sorted(names)


def check_imports(state: dict) -> dict:
    import importlib

    from braingui.inference import networks

    lean = "monai" not in sys.modules  # MONAI's first import, as the app makes it (issue 15)
    before = {n for n in networks.LEAN_IMPORT_SKIPS if n in sys.modules}
    networks.monai_nets()
    lean_loaded = [n for n in networks.LEAN_IMPORT_SKIPS if n in sys.modules and n not in before] if lean else []
    modules = _braingui_modules() + list(LAZY_IMPORTS)
    failed = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - report every failure, not only the first
            failed[name] = f"{type(exc).__name__}: {exc}"
    import numpy
    import PySide6
    import torch

    detail = {"modules": len(modules), "braingui_modules": len(_braingui_modules()), "failed": failed,
              "torch": torch.__version__, "cuda": bool(torch.cuda.is_available()), "numpy": numpy.__version__,
              "PySide6": PySide6.__version__, "monai_lean_import": "not first" if not lean else
              "fell back to the whole import" if lean_loaded else "ok"}
    if failed:
        raise SelftestFailure(f"{len(failed)} module(s) failed to import: {', '.join(sorted(failed))}", detail)
    if lean_loaded:
        raise SelftestFailure(f"MONAI's lean import loaded {', '.join(lean_loaded)} (it fell back to the whole "
                              "import: seconds more at every start)", detail)
    return detail


def check_bundles(state: dict) -> dict:
    from braingui.inference.bundle import load_network, sha256_file
    from braingui.inference.locate import find_bundles

    search = find_bundles(state["models_dir"])
    detail: dict[str, Any] = {"looked_in": search.looked_in(), "notes": list(search.notes)}
    for task in ("segmentation", "classification"):
        bundle = search.get(task)
        if bundle is None:
            raise SelftestFailure(f"no {task} model bundle found", detail)
        actual = sha256_file(bundle.weights_path)
        entry = {"name": bundle.name, "folder": str(bundle.folder), "sha256": actual,
                 "bytes": bundle.weights_path.stat().st_size, "sha256_ok": actual == bundle.manifest.sha256}
        detail[task] = entry
        if not entry["sha256_ok"]:
            raise SelftestFailure(f"{bundle.name}: weights sha256 {actual[:12]}... differs from the manifest's "
                                  f"{bundle.manifest.sha256[:12]}...", detail)
        network = load_network(bundle)  # checks the sha256 again, keys and shapes
        entry["parameters"] = int(sum(p.numel() for p in network.parameters()))
    state["search"] = search
    return detail


def check_demo_case(state: dict) -> dict:
    from braingui.app.demo import write_demo_case

    folder = write_demo_case(state["out"] / "demo-case")
    state["case_dir"] = folder
    return {"folder": str(folder), "files": sorted(p.name for p in folder.iterdir())}


def check_formats(state: dict) -> dict:
    """MetaImage and NRRD volumes through SimpleITK (the frozen app must carry its extension module):
    a tiny LPS volume written with SimpleITK reads back transposed to RAS+ voxel order with the right affine."""
    import numpy as np
    import SimpleITK as sitk

    from braingui.nifti import open_header, read_array

    zyx = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    detail = {}
    for ext in (".mha", ".nrrd"):
        image = sitk.GetImageFromArray(zyx)
        image.SetOrigin((1.0, 2.0, 3.0))
        image.SetSpacing((1.0, 2.0, 3.0))
        path = state["out"] / f"format-check{ext}"
        sitk.WriteImage(image, str(path))
        header = open_header(path)
        data = read_array(header, path)
        ok = (tuple(header.shape) == (4, 5, 6) and np.array_equal(data, zyx.transpose(2, 1, 0))
              and np.allclose(header.affine[:3, 3], (-1.0, -2.0, 3.0)))
        detail[ext] = {"shape": list(header.shape), "ok": bool(ok)}
        if not ok:
            raise SelftestFailure(f"{ext} read back wrong (shape, voxel order or affine)", detail)
    detail["SimpleITK"] = sitk.Version_VersionString()
    from braingui import gzip_io

    detail["gzip"] = gzip_io.backend()
    if detail["gzip"] != "isal":  # the verified fast reader (igzip) must be in the build
        raise SelftestFailure(f"gzip volumes are read with {detail['gzip']}, not isal's igzip", detail)
    return detail


def check_dicom(state: dict) -> dict:
    """DICOM in: a generated 6-slice "AX FLAIR" MR series converted by the bundled dcm2niix binary
    (pydicom writes it; the conversion cache goes to the self-test folder) and proposed as FLAIR."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    from braingui import dicom

    folder = state["out"] / "dicom-series"
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, frame_uid, series_uid = generate_uid(), generate_uid(), generate_uid()
    for k in range(6):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 3, k + 1, "AX FLAIR"
        ds.EchoTime, ds.RepetitionTime, ds.InversionTime = 120, 9000, 2500
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 3.0 * k], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness, ds.Rows, ds.Columns = [2.0, 2.0], 3.0, 8, 8
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (np.arange(64, dtype=np.uint16) + k).tobytes()
        ds.save_as(folder / f"IM{k}", enforce_file_format=True)
    saved = os.environ.get("BRAINGUI_CACHE_DIR")
    os.environ["BRAINGUI_CACHE_DIR"] = str(state["out"] / "dicom-cache")  # stay out of the user's cache
    try:
        study = dicom.open_study(folder)
    finally:
        if saved is None:
            os.environ.pop("BRAINGUI_CACHE_DIR", None)
        else:
            os.environ["BRAINGUI_CACHE_DIR"] = saved
    detail = {"converter": str(dicom.dcm2niix_binary()), "series": len(study.series)}
    if len(study.series) != 1:
        raise SelftestFailure(f"{len(study.series)} series converted, 1 expected", detail)
    (series,) = study.series
    detail.update(shape=list(series.shape[:3]), proposal=dict(study.proposal.assignment))
    if series.number != 3 or tuple(series.shape[:3]) != (8, 8, 6) or study.proposal.assignment.get("flair") != series.key:
        raise SelftestFailure("the DICOM series was converted or proposed wrongly", detail)
    return detail


def check_pipeline(state: dict) -> dict:
    import numpy as np

    from braingui.case import load_case
    from braingui.export import export_result
    from braingui.inference.pipeline import analyse, run_to_completion
    from braingui.inference.predictor import Predictor

    search = state.get("search")
    if search is None or "case_dir" not in state:
        raise SelftestFailure("needs the bundles and the demo case", {})
    case = load_case(state["case_dir"])
    result = run_to_completion(analyse(case, Predictor(state["device"]), search.segmentation,
                                       search.classification, notes=search.notes))
    written = export_result(result, case.grid, state["out"] / "results")
    state["case"], state["result"] = case, result
    probs = list(result.probabilities.values())
    detail = {"shape": list(case.grid.shape), "device": result.device, "predicted_class": result.predicted_class,
              "probabilities": result.probabilities, "volumes_ml": result.volumes_ml,
              "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
              "cam_classes": sorted(result.cams), "written": sorted(str(p) for p in written.values())}
    problems = []
    if result.labels is None:
        problems.append("no segmentation")
    if result.predicted_class is None or not np.isclose(sum(probs), 1.0, atol=1e-4):
        problems.append(f"bad probabilities {probs}")
    if not result.cams or not all(np.all(np.isfinite(c)) for c in result.cams.values()):
        problems.append("no (finite) Grad-CAM")
    if not all(np.isfinite(v) for v in result.volumes_ml.values()):
        problems.append("non-finite volumes")
    problems += _backend_problems(result)
    if problems:
        raise SelftestFailure("; ".join(problems), detail)
    return detail


def _backend_problems(result) -> list[str]:
    """The segmentation must have run on OpenVINO where it is installed and asked for (CPU, backend auto or
    openvino): a frozen build that lacks OpenVINO's device plugins falls back to torch, slower, and only says so in
    a warning."""
    from braingui.inference import openvino_backend as ovb

    if result.labels is None or not str(result.device or "").startswith("cpu") or not ovb.available():
        return []
    if ovb.requested_backend() == "torch" or "openvino" in (result.device or ""):
        return []
    why = [w for w in result.warnings if "OpenVINO" in w]
    return [f"the segmentation ran in torch although OpenVINO is installed ({why[0] if why else result.device})"]


def check_surface(state: dict) -> dict:
    from braingui.ui.surface_view import label_surfaces

    if state.get("result") is None or state["result"].labels is None:
        raise SelftestFailure("needs the pipeline's segmentation", {})
    surfaces = label_surfaces(state["result"].labels, state["case"].grid.affine, smooth=5)
    cells = {int(k): int(poly.GetNumberOfCells()) for k, poly in surfaces.items()}
    if not cells or not all(cells.values()):
        raise SelftestFailure("no tumour surface", {"triangles": cells})
    return {"triangles": cells}


def check_window(state: dict) -> dict:
    if "case_dir" not in state:
        raise SelftestFailure("needs the demo case", {})
    from braingui.ui.app import run_gui

    target = state["out"] / PNG_NAME
    options = {"models_dir": state["models_dir"], "device": state["device"], "all_cams": False}
    code = run_gui(str(state["case_dir"]), screenshot=target, analysis_options=options)
    from PySide6.QtGui import QGuiApplication

    detail: dict[str, Any] = {"png": str(target), "exit_status": code, "qt_platform": QGuiApplication.platformName()}
    data = target.read_bytes() if target.is_file() else b""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SelftestFailure("no PNG written", detail)
    detail["bytes"] = len(data)
    detail["size"] = [int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")]
    if code != 0:
        raise SelftestFailure(f"the window's analysis failed (status {code})", detail)
    return detail


def check_report(state: dict) -> dict:
    """The PDF report of the demo result (QtGui's QPdfWriter, off-screen): a complete PDF with embedded fonts.

    Runs after ``window``: once the report made its ``QGuiApplication``, no ``QApplication`` can follow.
    """
    if state.get("result") is None:
        raise SelftestFailure("needs the pipeline's result", {})
    import re

    from braingui.ui.report_pdf import write_report

    target = write_report(state["case"], state["result"], state["out"] / "report.pdf")
    data = target.read_bytes()
    detail = {"pdf": str(target), "bytes": len(data), "pages": len(re.findall(rb"/Type\s*/Page\b(?!s)", data)),
              "fonts": data.count(b"/FontFile2")}
    if (data[:5] != b"%PDF-" or b"%%EOF" not in data[-64:] or not 1 <= detail["pages"] <= 3 or not detail["fonts"]
            or len(data) < 100_000):
        raise SelftestFailure("the PDF report is missing, truncated, or has no embedded font", detail)
    return detail


def check_3d_view(state: dict) -> dict:
    """The vtk 3D window renders the meshes (only with a real screen; skipped offscreen)."""
    from braingui.ui.app import create_app
    from braingui.ui.surface_view import surface_supported

    app = create_app()
    ok, why = surface_supported()
    if not ok:
        return {"skipped": why}
    if state.get("result") is None:
        raise SelftestFailure("needs the pipeline's result", {})
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    from braingui.display.context import DisplayContext
    from braingui.ui.surface_view import make_surface_window

    ctx = DisplayContext()
    ctx.set_case(state["case"])
    ctx.set_result(state["result"])
    win = make_surface_window(ctx, None)
    try:
        win.show()
        app.processEvents()
        render_window = win.vtk.GetRenderWindow()
        render_window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(render_window)
        grab.ReadFrontBufferOff()
        grab.Update()
        pixels = vtk_to_numpy(grab.GetOutput().GetPointData().GetScalars())
        background = (pixels[:, :3] == pixels[0, :3]).all(axis=1) if len(pixels) else None  # corner = background
        lit = float(1.0 - background.mean()) if len(pixels) else 0.0
        caps = [line.split(":", 1)[1].strip() for line in render_window.ReportCapabilities().splitlines()
                if line.startswith(("OpenGL renderer string", "OpenGL version string"))]
        detail = {"opengl": caps, "pixels": int(len(pixels)), "fraction_drawn": round(lit, 4)}
    finally:
        win.close()
        app.processEvents()
    if not 0.01 < detail["fraction_drawn"] < 0.99:
        raise SelftestFailure("the 3D view drew nothing (or garbage)", detail)
    return detail


CHECKS: tuple[tuple[str, Callable[[dict], dict]], ...] = (
    ("imports", check_imports), ("bundles", check_bundles), ("demo case", check_demo_case), ("formats", check_formats),
    ("dicom", check_dicom),
    ("pipeline", check_pipeline), ("3d surface", check_surface), ("window", check_window),
    ("report", check_report),
    ("3d view", check_3d_view),
)


class SelftestFailure(Exception):
    """A check failed for a known reason; ``detail`` is reported with it."""

    def __init__(self, message: str, detail: dict):
        super().__init__(message)
        self.detail = detail


def run_selftest(models_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
                 device: str = "auto", stream=None) -> int:
    """Run every check, print the JSON report to ``stream`` (stdout); 0 when all passed, else 1.

    Args:
        models_dir: the ``--models`` folder (searched first, as in a normal run).
        out_dir: where the demo case, the results and the PNG go; default a temporary folder that is
            removed when every check passed (kept, and named in the report, otherwise).
        device: the ``--device`` of the analysis.
    """
    from braingui import __version__

    stream = stream if stream is not None else sys.stdout
    temp = out_dir is None
    out = Path(tempfile.mkdtemp(prefix="braingui-selftest-") if temp else out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"models_dir": models_dir, "out": out, "device": device}
    report: dict[str, Any] = {"braingui": __version__, "frozen": bool(getattr(sys, "frozen", False)),
                              "python": platform.python_version(), "platform": platform.platform(),
                              "executable": sys.executable, "out_dir": str(out), "checks": []}
    t_all = time.perf_counter()
    for name, check in CHECKS:
        t0 = time.perf_counter()
        try:
            ok, detail = True, check(state)
        except SelftestFailure as exc:
            ok, detail = False, {"error": str(exc), **exc.detail}
        except Exception as exc:  # noqa: BLE001 - a check that crashes is a failed check
            ok, detail = False, {"error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc(limit=-8).splitlines()}
        seconds = round(time.perf_counter() - t0, 3)
        report["checks"].append({"name": name, "ok": ok, "seconds": seconds, "detail": detail})
        print(f"selftest: {name}: {'ok' if ok else 'FAILED'} ({seconds:.1f} s)"
              + ("" if ok else f" - {detail.get('error')}"), file=sys.stderr, flush=True)
    report["ok"] = all(c["ok"] for c in report["checks"])
    report["seconds"] = round(time.perf_counter() - t_all, 3)
    if temp and report["ok"]:
        shutil.rmtree(out, ignore_errors=True)
        report["out_dir"] = None
    print(json.dumps(report, indent=2, default=str), file=stream, flush=True)
    return 0 if report["ok"] else 1
