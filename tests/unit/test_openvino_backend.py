"""The OpenVINO segmentation backend: equal to torch within a tolerance, cached, checked, cancellable,
and torch as the fallback (skipped where openvino is not installed, but for the fallback tests)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from braingui.case import load_case
from braingui.errors import BrainguiError
from braingui.inference import openvino_backend as ovb
from braingui.inference.interrupt import interruptible
from braingui.inference.manifest import read_bundle
from braingui.inference.pipeline import analyse, run_to_completion
from braingui.inference.predictor import Predictor
from inference_helpers import (make_tiny_classification_bundle, make_tiny_segmentation_bundle,  # noqa: F401
                               single_torch_thread, write_tiny_case)

needs_openvino = pytest.mark.skipif(not ovb.available(), reason="openvino is not installed")


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache folder shared by the module's tests (each conversion takes seconds), never the user's."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINGUI_CACHE_DIR", str(root))
        mp.delenv(ovb.ENV_BACKEND, raising=False)
        yield root / "openvino"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("ov")
    return {"random": read_bundle(make_tiny_segmentation_bundle(root / "rand", rule="random", seed=3)),
            "intensity": read_bundle(make_tiny_segmentation_bundle(root / "int")),
            "cls": read_bundle(make_tiny_classification_bundle(root / "cls")),
            "case": write_tiny_case(root / "case")}


def _input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal((4,) + shape).astype(np.float32)


def _torch_probs(model, array):
    with torch.no_grad():
        return torch.sigmoid(model.network(torch.from_numpy(array)[None]))[0].numpy()


@needs_openvino
@pytest.mark.parametrize("shape", [(16, 16, 16), (24, 16, 32)])  # one conversion serves every size
def test_openvino_probabilities_equal_torch(bundles, cache, shape):
    model = Predictor("cpu", backend="openvino").load(bundles["random"])
    assert model.backend == "openvino" and model.backend_note is None
    array = _input(shape)
    got = model.probabilities(array)
    want = _torch_probs(model, array)
    assert got.shape == want.shape == (3,) + shape
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(want - 0.5).max() > 1e-3  # not a constant output, so the comparison means something


@needs_openvino
def test_auto_picks_openvino_and_the_pipeline_records_it(bundles, cache):
    predictor = Predictor("cpu")  # auto
    case = load_case(bundles["case"])
    result = run_to_completion(analyse(case, predictor, bundles["intensity"], bundles["cls"], tta=2))
    assert result.device == "cpu (segmentation: openvino)"
    assert result.summary()["device"] == "cpu (segmentation: openvino)"
    torch_result = run_to_completion(analyse(case, Predictor("cpu", backend="torch"), bundles["intensity"],
                                             bundles["cls"], tta=2))
    assert torch_result.device == "cpu"
    assert np.abs(result.seg_probabilities - torch_result.seg_probabilities).max() < 1e-4
    assert (result.labels != torch_result.labels).sum() == 0
    assert result.probabilities == pytest.approx(torch_result.probabilities)  # the classifier stays in torch


@needs_openvino
def test_converted_model_is_cached_and_a_damaged_cache_is_converted_again(bundles, cache, monkeypatch, tmp_path):
    monkeypatch.setenv("BRAINGUI_CACHE_DIR", str(tmp_path))  # its own cache: it damages it
    cache = tmp_path / "openvino"
    Predictor("cpu", backend="openvino").load(bundles["random"])
    key = ovb.cache_key(bundles["random"])
    files = [cache / f"{key}{ext}" for ext in (".xml", ".bin", ".json")]
    assert all(f.is_file() for f in files)
    calls = []
    real = ovb._convert_and_store
    monkeypatch.setattr(ovb, "_convert_and_store", lambda *a: calls.append(1) or real(*a))
    Predictor("cpu", backend="openvino").load(bundles["random"])
    assert calls == []  # read from the cache
    data = bytearray(files[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[1].write_bytes(bytes(data))
    model = Predictor("cpu", backend="openvino").load(bundles["random"])
    assert calls == [1] and model.backend == "openvino"  # the record did not match: converted again
    array = _input((16, 16, 16), seed=1)
    assert np.abs(model.probabilities(array) - _torch_probs(model, array)).max() < 1e-4


@needs_openvino
def test_a_set_cancel_stops_an_openvino_pass(bundles, cache):
    model = Predictor("cpu", backend="openvino").load(bundles["random"])
    cancel = threading.Event()
    cancel.set()
    with interruptible(model.cancel_modules, cancel, Stop), pytest.raises(Stop):
        model.probabilities(_input((16, 16, 16)))
    assert model.probabilities(_input((16, 16, 16))).shape == (3, 16, 16, 16)  # usable afterwards


def test_a_failing_conversion_falls_back_to_torch_with_a_warning(bundles, cache, monkeypatch):
    def fail(*_a, **_k):
        raise ovb.BackendError("OpenVINO could not convert the network (RuntimeError: nope)")

    monkeypatch.setattr(ovb, "available", lambda: True)
    monkeypatch.setattr(ovb, "compile_segmentation", fail)
    predictor = Predictor("cpu", backend="openvino")
    result = run_to_completion(analyse(load_case(bundles["case"]), predictor, bundles["intensity"], None, tta=1))
    assert result.device == "cpu" and result.labels is not None
    assert any("could not convert" in w and "segmentation ran in torch" in w for w in result.warnings)


def test_torch_backend_and_unknown_names(bundles, cache, monkeypatch):
    monkeypatch.setattr(ovb, "compile_segmentation", lambda *a, **k: pytest.fail("OpenVINO used"))
    assert Predictor("cpu", backend="torch").load(bundles["random"]).backend == "torch"
    monkeypatch.setenv(ovb.ENV_BACKEND, "torch")
    assert Predictor("cpu").load(bundles["random"]).backend == "torch"
    monkeypatch.setenv(ovb.ENV_BACKEND, "tensorrt")
    with pytest.raises(BrainguiError, match=r"unknown backend 'tensorrt' \(from \$BRAINGUI_BACKEND\)"):
        Predictor("cpu")
    with pytest.raises(BrainguiError, match="use one of auto, torch, openvino"):
        Predictor("cpu", backend="onnx")


@needs_openvino
def test_an_openvino_failure_during_the_run_finishes_in_torch(bundles, cache, monkeypatch):
    case = load_case(bundles["case"])
    predictor = Predictor("cpu", backend="openvino")
    model = predictor.load(bundles["intensity"])
    assert model.backend == "openvino"

    def broken(_x):
        raise RuntimeError("Exception from src/inference/src/cpp/infer_request.cpp: device lost")

    monkeypatch.setattr(model.runner, "forward", broken)
    result = run_to_completion(analyse(case, predictor, bundles["intensity"], None, tta=2))
    want = run_to_completion(analyse(case, Predictor("cpu", backend="torch"), bundles["intensity"], None, tta=2))
    assert result.device == "cpu" and model.backend == "torch"
    assert any("OpenVINO failed during the segmentation (RuntimeError: Exception from" in w for w in result.warnings)
    np.testing.assert_array_equal(result.labels, want.labels)
