"""The window's background preload (braingui.ui.jobs.start_preload): the networks are loaded into the
cached Predictor and warmed up before the first analysis, which then loads nothing itself."""

from __future__ import annotations

import pytest

from braingui.case import load_case
from braingui.inference.manifest import read_bundle
from braingui.ui import jobs
from inference_helpers import make_models_dir, single_torch_thread, write_tiny_case  # noqa: F401


@pytest.fixture()
def fresh_jobs(monkeypatch):
    """Empty predictor / preload tables, restored afterwards (other tests keep theirs)."""
    monkeypatch.setattr(jobs, "_PREDICTORS", {})
    monkeypatch.setattr(jobs, "_PRELOADS", {})
    monkeypatch.setattr(jobs, "PRELOAD_STATUS", {})
    monkeypatch.setattr(jobs, "_WARM_STOP", jobs.threading.Event())
    monkeypatch.setenv("BRAINGUI_BACKEND", "torch")  # the OpenVINO path has its own tests


def _run(factory):
    gen, events = factory(None), []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events


def test_preload_loads_and_warms_the_models_the_analysis_then_uses(tmp_path, fresh_jobs, monkeypatch):
    import braingui.inference.pipeline as pipeline

    models = make_models_dir(tmp_path / "models")
    options = {"models_dir": str(models), "device": "cpu"}
    shapes, real = [], pipeline.analyse

    def analyse(case, *args, **kwargs):
        shapes.append((case.case_id, case.grid.shape))
        return real(case, *args, **kwargs)

    monkeypatch.setattr(pipeline, "analyse", analyse)
    thread = jobs.start_preload(options)
    assert thread is not None and jobs.start_preload(options) is None  # once per models folder and device
    assert jobs.wait_for_preload(120)
    predictor = jobs._predictor("cpu")
    seg, cls = (read_bundle(models / name) for name in ("tiny-segresnet", "tiny-densenet"))
    assert predictor.is_loaded(seg) and predictor.is_loaded(cls)
    assert jobs.PRELOAD_STATUS == {(str(models), "cpu"): "warmed"}  # the warm-up analyses ran to their end
    # the small phantom first (the classifier's kernels soonest), then one the size of a BraTS case (memory)
    assert shapes == [("SYNTHETIC_warm_up", jobs.WARM_CASE_SHAPE), ("SYNTHETIC_warm_up", (240, 240, 155))]
    result, events = _run(jobs.analysis_job(load_case(write_tiny_case(tmp_path / "case")), options))
    loads = [e.message for e in events if e.stage == "load models" and e.message.startswith("tiny-")]
    assert loads == ["tiny-segresnet (cached)", "tiny-densenet (cached)"]
    assert result.labels is not None and result.predicted_class in ("A", "O", "G")


def test_preload_without_models_does_nothing_and_fails_nothing(tmp_path, fresh_jobs, monkeypatch):
    monkeypatch.setenv("BRAINGUI_MODELS", str(tmp_path / "none"))
    thread = jobs.start_preload({"models_dir": str(tmp_path / "missing"), "device": "cpu"})
    assert thread is not None and jobs.wait_for_preload(60)
    assert jobs._PREDICTORS == {}  # nothing to load: no predictor made, no torch work done
    assert jobs.PRELOAD_STATUS[(str(tmp_path / "missing"), "cpu")].startswith("failed:")


def test_a_real_analysis_stops_the_warm_up_analysis(tmp_path, fresh_jobs, monkeypatch):
    import braingui.inference.pipeline as pipeline

    models = make_models_dir(tmp_path / "models")
    options = {"models_dir": str(models), "device": "cpu"}
    started, real = jobs.threading.Event(), pipeline.analyse

    def analyse(case, *args, **kwargs):  # the warm-up analysis starts only once the real one has begun
        if case.case_id == "SYNTHETIC_warm_up":
            started.set()
            for _ in range(600):
                if jobs._WARM_STOP.is_set():
                    break
                jobs.time.sleep(0.05)
        return real(case, *args, **kwargs)

    monkeypatch.setattr(pipeline, "analyse", analyse)
    jobs.start_preload(options)
    assert started.wait(120)
    result, _ = _run(jobs.analysis_job(load_case(write_tiny_case(tmp_path / "case")), options))
    assert jobs.wait_for_preload(60) and result.labels is not None
    assert jobs.PRELOAD_STATUS[(str(models), "cpu")] == "stopped"
