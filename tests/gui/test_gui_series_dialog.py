"""The DICOM series dialog and the load job that asks for it."""

from __future__ import annotations

import threading

import pytest

from braingui.series import Series, propose
from braingui.ui import jobs
from braingui.ui.series_dialog import NO_ROLE, SeriesDialog


def _run(factory):
    """Iterate a job factory in this thread; its return value."""
    gen = factory(threading.Event())
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def _series():
    return [Series(key="2_AX_FLAIR", number=2, description="AX FLAIR", shape=(24, 24, 12), spacing=(2, 2, 3)),
            Series(key="3_T1", number=3, description="Ax T1 pre", shape=(24, 24, 12), spacing=(2, 2, 3)),
            Series(key="5_T2", number=5, description="T2W_TSE", shape=(24, 24, 12), spacing=(2, 2, 3)),
            Series(key="7_T1C", number=7, description="T1 MPRAGE POST GAD", shape=(24, 24, 12), spacing=(2, 2, 3)),
            Series(key="8_FLAIR2", number=8, description="T2 FLAIR SAG", shape=(24, 24, 12), spacing=(2, 2, 4))]


def test_dialog_shows_the_proposal_and_keeps_one_series_per_role(qtbot):
    proposal = propose(_series())
    dialog = SeriesDialog(proposal)
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    shown = {key: combo.currentData() for key, combo in dialog.combos.items()}
    assert shown == {"2_AX_FLAIR": "flair", "3_T1": "t1", "5_T2": "t2", "7_T1C": "t1ce", "8_FLAIR2": None}
    assert ok.isEnabled()
    dialog.set_role("8_FLAIR2", "flair")  # FLAIR moves to series 8; series 2 is left without a role
    assert dialog.combos["2_AX_FLAIR"].currentText() == NO_ROLE and dialog.series_map()["flair"] == "8_FLAIR2"
    dialog.set_role("5_T2", None)
    assert not ok.isEnabled() and "T2" in dialog.status.text()
    dialog.set_role("5_T2", "t2")
    assert ok.isEnabled()
    assert dialog.series_map() == {"flair": "8_FLAIR2", "t1": "3_T1", "t1ce": "7_T1C", "t2": "5_T2"}
    assert proposal.assignment["flair"] == "2_AX_FLAIR"  # the caller's proposal is left alone


def test_load_job_asks_for_a_dicom_study_then_loads_the_answer(tmp_path, monkeypatch):
    pytest.importorskip("pydicom")
    pytest.importorskip("dcm2niix")
    from dicom_helpers import write_study

    monkeypatch.setenv("BRAINGUI_CACHE_DIR", str(tmp_path / "cache"))
    numbers = write_study(tmp_path / "study")
    question = _run(jobs.load_case_job(tmp_path / "study", confirm_series=True))
    assert isinstance(question, jobs.SeriesQuestion)
    chosen = dict(question.study.proposal.assignment)
    case = _run(jobs.load_case_job(*question.answer(chosen), confirm_series=True))  # all four named: no question
    assert case.case_id.startswith("DICOM_")
    assert case.files.images["t1ce"].name.startswith(f"{numbers['t1ce']}_")
    assert _run(jobs.load_case_job(tmp_path / "study")).case_id == case.case_id  # without confirmation: the proposal
