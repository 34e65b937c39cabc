"""Export safety (issue 14, items 2 and 3): nothing the user made is overwritten, no output into the case
folder unless forced, and the export set goes into place atomically - a full disk leaves the old set and
no temporary files, a kill -9 leaves the old set or a set the marker calls incomplete.

Broken inputs are generated here: a user's own files in the output folder, a file edited after the
export, a foreign marker, output folders in and around the case folder, a writer that hits ENOSPC
midway, and a subprocess killed at each step of the commit.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from braingui import export
from braingui.case import load_case
from braingui.export import GRADCAM_FILE, RESULTS_FILE, SEGMENTATION_FILE, export_result
from braingui.export_set import (MARKER, PAUSE_ENV, TMP_PREFIX, ExportRefused, ExportSet, OutputInCaseError,
                                 check_output, file_entry, read_state)
from braingui.results import AnalysisResult
from helpers import REPO_ROOT, make_case_folder

CASE_ID = "Case01"


@pytest.fixture()
def case(tmp_path):
    """A BraTS-layout case: ``cases/Case01/Case01_<modality>.nii.gz`` (the folder is named after the case)."""
    make_case_folder(tmp_path / "cases" / CASE_ID, case_id=CASE_ID)
    return load_case(tmp_path / "cases" / CASE_ID)


def _result(case, value: int = 2, all_classes: bool = False) -> AnalysisResult:
    labels = np.zeros(case.grid.shape, np.uint8)
    labels[4:8, 4:8, 4:8] = value
    cam = np.zeros(case.grid.shape, np.float32)
    cam[5, 5, 5] = 1.0
    cams = {"G": cam, "A": cam * 0.5} if all_classes else {"G": cam}
    return AnalysisResult(case_id=case.case_id, labels=labels, class_names=("A", "G"), predicted_class="G",
                          probabilities={"A": 0.25, "G": 0.75}, cams=cams)


def _export(case, out, value: int = 2, all_classes: bool = False, **kw):
    """``export_result`` of a small result; ``all_classes``: two Grad-CAMs, each written (``all_cams``)."""
    return export_result(_result(case, value, all_classes), case.grid, out, all_cams=all_classes,
                         inputs=case.files.all_files(), case_folder=case.files.folder, **kw)


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) -> its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*")]


# ----- ownership: never overwrite a file the app did not write

def test_first_export_writes_the_set_and_a_complete_marker(case, tmp_path):
    out = tmp_path / "results" / "run1"
    written = _export(case, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, *[p.name for p in written.values()]])
    state = read_state(out)
    assert state.status == "complete" and state.problems == []
    assert set(state.files) == {p.name for p in written.values()}
    assert state.files[RESULTS_FILE] == file_entry(out / RESULTS_FILE)
    assert _hidden(tmp_path / "results") == []  # no staging folder or temp file left, here or beside
    assert (out.stat().st_mode & 0o777) == (0o777 & ~_umask())  # a normal folder, not mkdtemp's 0700


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("name", [SEGMENTATION_FILE, RESULTS_FILE, GRADCAM_FILE])
def test_a_users_own_file_in_the_out_folder_is_never_overwritten(case, tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"the user's own file")
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    with pytest.raises(ExportRefused) as info:
        _export(case, out)
    message = str(info.value)
    assert str(out / name) in message and "not written by braingui" in message and "\n" not in message
    assert _tree(out) == before  # nothing written, nothing left behind


def test_a_file_changed_since_the_export_is_not_overwritten(case, tmp_path):
    out = tmp_path / "out"
    _export(case, out)
    (out / RESULTS_FILE).write_text('{"edited": "by the user"}\n')
    before = _tree(out)
    with pytest.raises(ExportRefused, match="changed since braingui wrote it"):
        _export(case, out, value=4)
    assert _tree(out) == before
    assert read_state(out).status == "changed" and read_state(out).problems == [RESULTS_FILE]


def test_a_foreign_marker_is_refused_not_overwritten(case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text("[1, 2, 3]")
    with pytest.raises(ExportRefused, match="export marker"):
        _export(case, out)
    assert (out / MARKER).read_text() == "[1, 2, 3]" and sorted(p.name for p in out.iterdir()) == [MARKER]


def test_a_symlink_in_place_of_an_output_is_refused(case, tmp_path):
    out = tmp_path / "out"
    _export(case, out)
    victim = tmp_path / "victim.json"
    victim.write_text("keep")
    (out / RESULTS_FILE).unlink()
    (out / RESULTS_FILE).symlink_to(victim)
    with pytest.raises(ExportRefused, match="not a plain file"):
        _export(case, out)
    assert victim.read_text() == "keep"


def test_a_new_export_replaces_the_apps_own_set_and_removes_its_stale_files(case, tmp_path):
    out = tmp_path / "out"
    first = _export(case, out, all_classes=True)
    assert "gradcam_A" in first and (out / "gradcam_A.nii.gz").exists()
    (out / "notes.txt").write_text("the user's")
    second = _export(case, out, value=4)
    assert not (out / "gradcam_A.nii.gz").exists()  # the old set's file, unchanged, removed
    assert (out / "notes.txt").read_text() == "the user's"  # never touched
    state = read_state(out)
    assert state.status == "complete" and set(state.files) == {p.name for p in second.values()}
    seg = np.asarray(export.nib.load(str(out / SEGMENTATION_FILE)).dataobj)
    assert set(np.unique(seg)) == {0, 4}  # the new content
    assert _hidden(out) == []


# ----- no output in the case folder unless forced

@pytest.mark.parametrize("where", ["case folder", "inside it", "inside, deeper"])
def test_out_equal_to_or_inside_the_case_folder_is_refused(case, where):
    folder = case.files.folder
    out = {"case folder": folder, "inside it": folder / "results", "inside, deeper": folder / "a" / "b"}[where]
    before = _tree(folder)
    with pytest.raises(OutputInCaseError) as info:
        _export(case, out)
    assert str(folder) in str(info.value) and "case folder" in str(info.value)
    assert _tree(folder) == before and not (folder / "results").exists() and not (folder / "a").exists()


def test_forcing_output_into_the_case_folder_still_protects_the_users_files(case):
    folder = case.files.folder
    (folder / RESULTS_FILE).write_text('{"mine": true}')  # the user's results.json in the case folder
    with pytest.raises(ExportRefused, match="not written by braingui"):
        _export(case, folder, force_in_case=True)
    (folder / RESULTS_FILE).unlink()
    written = _export(case, folder, force_in_case=True)
    assert read_state(folder).status == "complete" and written["results"].parent == folder
    assert all(p.exists() for p in case.files.all_files())


def test_a_folder_holding_an_input_file_counts_as_a_case_folder(tmp_path, case):
    loose = tmp_path / "loose"
    loose.mkdir()
    flair = loose / "my_flair.nii.gz"
    flair.write_bytes(case.files.images["flair"].read_bytes())
    from braingui.export_set import case_folders

    with pytest.raises(OutputInCaseError):
        check_output(loose, (), case_folders([flair]))
    check_output(tmp_path / "elsewhere", (), case_folders([flair]))  # a sibling folder is fine


def test_gui_default_folder_never_nests_the_export_into_the_case_folder(case, tmp_path):
    from braingui.ui.exporter import default_export_folder, export_results, export_target, lands_in_case

    parent = case.files.folder.parent  # BraTS layout: <parent>/<case id>/ IS the case folder
    assert export_target(parent, case).resolve() == case.files.folder.resolve()
    assert lands_in_case(parent, case) and lands_in_case(case.files.folder, case)
    assert not lands_in_case(tmp_path, case)
    assert default_export_folder([str(parent), str(case.files.folder)], case) == tmp_path  # the nearest safe one
    other = tmp_path / "exports"
    other.mkdir()
    assert default_export_folder([str(parent), str(other)], case) == other
    with pytest.raises(OutputInCaseError):
        export_results(parent, case, _result(case))
    assert not (case.files.folder / RESULTS_FILE).exists()


# ----- atomicity: a full disk, a kill -9

def _enospc_after(monkeypatch, calls_ok: int) -> None:
    """``write_map`` writes half a file, then fails as a full disk does, after ``calls_ok`` good calls."""
    real = export.write_map
    count = {"n": 0}

    def write_map(volume, grid, path, **kw):
        count["n"] += 1
        if count["n"] > calls_ok:
            Path(path).write_bytes(b"\x1f\x8b half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(volume, grid, path, **kw)

    monkeypatch.setattr(export, "write_map", write_map)


def test_a_full_disk_midway_leaves_the_old_set_and_no_temp_files(case, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _export(case, out, all_classes=True)
    before = _tree(out)
    _enospc_after(monkeypatch, calls_ok=1)  # the segmentation and one map are written, then the disk is full
    with pytest.raises(OSError) as info:
        _export(case, out, value=4, all_classes=True)
    assert info.value.errno == errno.ENOSPC
    assert _tree(out) == before  # the old set, whole; no staging folder, no half file
    assert read_state(out).status == "complete"
    assert _hidden(tmp_path) == []


def test_a_full_disk_on_the_first_export_leaves_no_folder(case, tmp_path, monkeypatch):
    _enospc_after(monkeypatch, calls_ok=0)
    with pytest.raises(OSError):
        _export(case, tmp_path / "results" / "out")
    assert not (tmp_path / "results" / "out").exists() and list((tmp_path / "results").iterdir()) == []


_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from braingui.export_set import ExportSet

    out, tag = Path(sys.argv[1]), sys.argv[2]
    with ExportSet(out) as staging:
        for name in ("a.nii.gz", "b.nii.gz", "results.json"):
            (staging / name).write_bytes(f"{name} of set {tag}".encode() * 1000)
""")


def _run_set(out: Path, tag: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop(PAUSE_ENV, None)
    subprocess.run([sys.executable, "-c", _CHILD, str(out), tag], check=True, env=env, timeout=60)


def _kill_at(out: Path, tag: str, step: str) -> None:
    """Run an export of set ``tag`` that pauses at ``step`` (the test hook); kill -9 it there."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **{PAUSE_ENV: step})
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(out), tag], stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stderr:
            if line.strip() == f"braingui-export: paused at {step}":
                break
        else:
            pytest.fail(f"the export never reached step {step!r}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()


def _sets(out: Path) -> set[str]:
    """Which sets the three files come from ('old', 'new')."""
    return {(out / n).read_text()[-3:] for n in ("a.nii.gz", "b.nii.gz", "results.json")}


@pytest.mark.skipif(os.name != "posix", reason="kill -9")
@pytest.mark.parametrize("step, status, sets", [
    ("staged", "complete", {"old"}),               # all written and synced, nothing moved: the old set
    ("marker-pending", "incomplete", {"old"}),     # marked incomplete before the first move
    ("moved a.nii.gz", "incomplete", {"old", "new"}),  # a mix, and the marker says so
    ("marker-final", "incomplete", {"new"}),       # all moved, the final marker not yet written
])
def test_kill_9_mid_export_leaves_the_old_set_or_a_set_marked_incomplete(tmp_path, step, status, sets):
    out = tmp_path / "out"
    _run_set(out, "old")
    _kill_at(out, "new", step)
    state = read_state(out)
    assert state.status == status and _sets(out) == sets
    if status == "complete":
        assert state.problems == []
    # the next export recognises every file there as its own, replaces them and removes the dead staging folder
    _run_set(out, "new")
    assert read_state(out).status == "complete" and _sets(out) == {"new"}
    assert _hidden(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="kill -9")
def test_kill_9_before_the_folder_rename_leaves_no_output_folder(tmp_path):
    out = tmp_path / "out"
    _kill_at(out, "new", "rename")
    assert not out.exists()
    assert [p.name.startswith(f".out{TMP_PREFIX}") for p in tmp_path.iterdir()] == [True]  # the dead staging
    _run_set(out, "new")
    assert read_state(out).status == "complete" and _hidden(tmp_path) == []


def test_the_marker_lists_exactly_the_set_and_tells_a_changed_one(tmp_path):
    out = tmp_path / "out"
    with ExportSet(out) as staging:
        (staging / "x.txt").write_text("x")
        (staging / "sub").mkdir()
        (staging / "sub" / "y.txt").write_text("y")
    data = json.loads((out / MARKER).read_text())
    assert data["complete"] is True and set(data["files"]) == {"x.txt", "sub/y.txt"}
    assert data["files"]["sub/y.txt"] == {"sha256": file_entry(out / "sub" / "y.txt")["sha256"], "size": 1}
    (out / "x.txt").unlink()
    assert read_state(out).status == "changed" and read_state(out).problems == ["x.txt"]
    assert read_state(tmp_path).status == "none"


def test_an_exception_inside_the_block_changes_nothing(tmp_path):
    out = tmp_path / "out"
    with ExportSet(out) as staging:
        (staging / "x.txt").write_text("old")
    before = _tree(out)
    with pytest.raises(KeyboardInterrupt):
        with ExportSet(out) as staging:
            (staging / "x.txt").write_text("new")
            raise KeyboardInterrupt
    assert _tree(out) == before and _hidden(tmp_path) == []


# ----- the command line refuses before it analyses

def test_cli_refuses_out_in_the_case_folder_or_over_a_users_file_before_the_analysis(case, tmp_path, monkeypatch,
                                                                                   capsys):
    from braingui.app.cli import main
    from braingui.inference import pipeline
    from inference_helpers import make_models_dir

    models = make_models_dir(tmp_path / "models")
    monkeypatch.setattr(pipeline, "analyse", lambda *a, **k: pytest.fail("the analysis ran"))
    folder = case.files.folder
    own = tmp_path / "mine"
    own.mkdir()
    (own / SEGMENTATION_FILE).write_bytes(b"user's segmentation")
    for out, words in ((folder, "is the case folder"), (folder / "out", "inside the case folder"),
                       (own, "not written by braingui")):
        code = main(["--case", str(folder), "--no-gui", "--out", str(out), "--models", str(models), "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and err[0].startswith("braingui: error: --out" if out != own else
                                                                 "braingui: error: "), err
        assert words in err[0] and str(out) in err[0]
    assert "--force-output-in-case" in main.__globals__["build_parser"]().format_help()
    assert (own / SEGMENTATION_FILE).read_bytes() == b"user's segmentation" and not (folder / "out").exists()


def test_cli_full_disk_is_one_line_and_the_old_set_stays(case, tmp_path, monkeypatch, capsys):
    """A headless run whose export hits ENOSPC: one 'cannot write' line, the previous run's set intact."""
    from braingui.app.cli import main
    from inference_helpers import make_models_dir

    models = make_models_dir(tmp_path / "models")
    out = tmp_path / "out"
    argv = ["--case", str(case.files.folder), "--no-gui", "--out", str(out), "--models", str(models), "--device", "cpu"]
    assert main(argv) == 0
    capsys.readouterr()
    before = _tree(out)
    _enospc_after(monkeypatch, calls_ok=0)
    assert main(argv) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("braingui: error")]
    assert len(err) == 1 and "cannot write the results to" in err[0] and "No space left" in err[0]
    assert _tree(out) == before and _hidden(tmp_path) == []


def test_extra_files_join_the_set(case, tmp_path):
    out = tmp_path / "out"
    written = _export(case, out, extra=lambda folder: {"report": export.atomic.write_text("pdf", folder / "report.pdf")})
    assert written["report"] == out / "report.pdf" and (out / "report.pdf").read_text() == "pdf"
    assert "report.pdf" in read_state(out).files
