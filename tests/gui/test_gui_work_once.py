"""Work done once (no widgets needed): the bundle search the window ran is reused by the analysis
worker, a GUI export writes results.json once, and the settings file is written by the atomic writer
(no temp file left when the write fails)."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from braingui import atomic
from braingui.case import load_case
from braingui.ui import jobs
from gui_helpers import fake_result, small_case_dir  # noqa: F401 - fixture
from inference_helpers import make_models_dir, make_tiny_classification_bundle, single_torch_thread  # noqa: F401


@pytest.fixture()
def models(tmp_path, monkeypatch):
    """A models folder, the other locations empty, no kept searches; counts the real searches."""
    from braingui.inference import locate

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.delenv(locate.ENV_MODELS, raising=False)
    monkeypatch.setenv(locate.ENV_BUNDLED, str(empty))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr(jobs, "_SEARCHES", {})
    calls = []
    real = locate.find_bundles
    monkeypatch.setattr(locate, "find_bundles", lambda *a, **k: calls.append(a) or real(*a, **k))
    return make_models_dir(tmp_path / "models", seg=False), calls


def test_the_worker_reuses_the_windows_bundle_search(models, small_case_dir, monkeypatch):
    folder, calls = models
    first = jobs.find_models(str(folder))  # what MainWindow.models_available runs on the GUI thread
    assert first.classification is not None and len(calls) == 1
    seen = {}

    def fake_analyse(case, predictor, segmentation, classification, **kw):
        seen.update(segmentation=segmentation, classification=classification, notes=kw["notes"])
        return case.case_id
        yield  # a generator, like the pipeline

    monkeypatch.setattr("braingui.inference.pipeline.analyse", fake_analyse)
    monkeypatch.setattr(jobs, "_predictor", lambda device: None)
    gen = jobs.analysis_job(load_case(small_case_dir), {"models_dir": str(folder)})(threading.Event())
    with pytest.raises(StopIteration) as stop:
        while True:
            next(gen)
    assert stop.value.value == "SYNTHETIC_gui_test"
    assert len(calls) == 1  # the worker did not search again
    assert seen["classification"] is first.classification and seen["segmentation"] is None
    assert any("no segmentation model bundle" in n for n in seen["notes"])


def test_a_changed_models_folder_is_searched_again(models):
    folder, calls = models
    first = jobs.find_models(str(folder))
    assert jobs.find_models(str(folder)) is first and len(calls) == 1
    time.sleep(0.01)  # a later modification time, even on coarse clocks
    make_tiny_classification_bundle(folder / "another-densenet", name="another")  # a bundle added
    second = jobs.find_models(str(folder))
    assert len(calls) == 2 and second is not first
    assert second.classification.name == "another"  # first in name order
    assert any("several classification bundles" in n for n in second.notes)
    manifest = folder / "another-densenet" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["name"] = "renamed"
    time.sleep(0.01)
    manifest.write_text(json.dumps(data))  # a manifest edited in place
    third = jobs.find_models(str(folder))
    assert len(calls) == 3 and third.classification.name == "renamed"
    assert jobs.find_models(None) is not third and len(calls) == 4  # kept per --models folder


def test_a_gui_export_writes_results_json_once(small_case_dir, tmp_path, monkeypatch):
    from braingui.ui.exporter import export_results

    case = load_case(small_case_dir)
    result = fake_result(case)
    writes = []
    real = atomic.atomic_path

    def spy(path, **kw):
        writes.append(os.path.basename(path))
        return real(path, **kw)

    monkeypatch.setattr(atomic, "atomic_path", spy)
    written = export_results(tmp_path, case, result, None, {"plane": "axial", "slice": 3})
    assert writes.count("results.json") == 1
    from braingui.export_set import MARKER

    assert writes.count(MARKER) == 1  # the export set's marker, written once, last
    assert sorted(w for w in writes if w != MARKER) == sorted(p.name for p in written)  # each file once
    data = json.loads((tmp_path / case.case_id / "results.json").read_text())
    assert data["exported_files"] == ["gradcam.nii.gz", "segmentation.ctbl", "segmentation.nii.gz", "segmentation_labels.txt"]
    assert data["predicted_class"] == "G" and data["view"] == {"plane": "axial", "slice": 3}
    assert np.isclose(sum(data["probabilities"].values()), 1.0)


def test_a_failed_settings_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    from braingui.ui.settings import Settings

    path = tmp_path / "config" / "settings.json"
    Settings(colormap="inferno").save(path)
    assert Settings.load(path).colormap == "inferno"

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    Settings(colormap="viridis").save(path)  # ignored failure (settings are a convenience)
    assert Settings.load(path).colormap == "inferno"
    assert os.listdir(path.parent) == ["settings.json"]  # the old code left its .settings-* file here
