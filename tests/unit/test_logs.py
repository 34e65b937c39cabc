"""The one traceback logger (braingui.logs): the user log folder, appended, never raising."""

from __future__ import annotations

import sys

import pytest

from braingui.logs import log_dir, log_traceback


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_STATE_HOME places the log folder on Linux only")
def test_tracebacks_are_appended_to_the_named_file_in_the_user_log_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert log_dir() == tmp_path / "state" / "braingui" / "log"
    first = log_traceback("Traceback: first", "crash.log")
    second = log_traceback("Traceback: second", "crash.log")
    assert first == second == tmp_path / "state" / "braingui" / "log" / "crash.log"
    assert first.read_text(encoding="utf-8") == "Traceback: first\nTraceback: second\n"
    assert log_traceback("gui", "gui.log").read_text(encoding="utf-8") == "gui\n"  # another file, same folder


def test_a_log_that_cannot_be_written_gives_none(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the log folder should be")
    monkeypatch.setattr("braingui.logs.log_dir", lambda: blocker / "log")
    assert log_traceback("Traceback: lost", "crash.log") is None
    assert blocker.read_text() == "a file where the log folder should be"
