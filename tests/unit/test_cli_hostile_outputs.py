"""Hostile output targets on the command line: ``demo-case`` and ``--out`` give one clear line, early.

Run in-process through :func:`braingui.app.cli.main`; nothing here runs a network.
"""

from __future__ import annotations

import errno
import os
import stat

import braingui.case
import braingui.phantom
from braingui.app.cli import main

DEMO_FILES = sorted(f"SYNTHETIC_braingui_demo_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2", "seg"))


def _one_error_line(capsys, *words: str) -> str:
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("braingui: error: "), err
    assert "internal error" not in err and "Traceback" not in err + out
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_demo_case_writes_files_with_the_normal_mode(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo-case", str(out), "--small"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote the synthetic demo case to {out}"
    assert sorted(p.name for p in out.iterdir()) == DEMO_FILES
    expected = 0o666 & ~_umask()  # what a plain open() gives; mkstemp alone would give 0600
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_demo_case_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file\n")
    assert main(["demo-case", str(out), "--small"]) == 1
    _one_error_line(capsys, str(out), "not empty")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_demo_case_refuses_a_file_target(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["demo-case", str(target), "--small"]) == 1
    _one_error_line(capsys, str(target), "not a folder")
    assert main(["demo-case", str(target / "sub"), "--small"]) == 1  # a folder below a file
    _one_error_line(capsys, str(target / "sub"))
    assert target.read_text() == "x"


def test_demo_case_on_a_full_disk_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    real = braingui.phantom.write_bytes
    calls = []

    def fill_up(data, path, **kwargs):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(data, path, **kwargs)

    monkeypatch.setattr(braingui.phantom, "write_bytes", fill_up)
    out = tmp_path / "demo"
    assert main(["demo-case", str(out), "--small"]) == 1
    _one_error_line(capsys, str(out), "No space left on device", "free some space")
    assert len(calls) == 3 and not out.exists()  # the two files written were removed, and the new folder


def _no_case_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the case was loaded before --out was checked")

    monkeypatch.setattr(braingui.case, "load_case", refuse)


def test_an_out_below_a_file_is_reported_before_anything_runs(tmp_path, capsys, monkeypatch):
    _no_case_loading(monkeypatch)
    blocker = tmp_path / "results.txt"
    blocker.write_text("x")
    assert main(["--no-gui", "--demo", "--out", str(blocker / "run1")]) == 1
    _one_error_line(capsys, "--out", str(blocker), "is a file")
    assert main(["--no-gui", "--demo", "--out", str(blocker)]) == 1
    _one_error_line(capsys, "--out", "exists and is not a folder")


def test_an_unwritable_out_is_reported_before_anything_runs(tmp_path, capsys, monkeypatch):
    import tempfile

    _no_case_loading(monkeypatch)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    assert main(["--no-gui", "--demo", "--out", str(tmp_path / "out")]) == 1
    _one_error_line(capsys, "--out", "cannot write in", "Read-only file system")
    assert not (tmp_path / "out").exists()


def test_an_invalid_out_name_is_one_line(tmp_path, capsys, monkeypatch):
    _no_case_loading(monkeypatch)
    assert main(["--no-gui", "--demo", "--out", str(tmp_path / "a\0b")]) == 1
    _one_error_line(capsys, "--out", "not a usable folder name")


def test_models_pointing_at_a_folder_without_a_bundle_is_an_error(tmp_path, capsys, monkeypatch):
    _no_case_loading(monkeypatch)
    empty = tmp_path / "models"
    empty.mkdir()
    assert main(["--no-gui", "--demo", "--models", str(empty), "--out", str(tmp_path / "out")]) == 1
    _one_error_line(capsys, "--models", str(empty))
