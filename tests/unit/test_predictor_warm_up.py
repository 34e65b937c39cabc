"""Predictor.warm_up: the segmentation runs once at the size of a typical case (warm_shape), the classifier its
map pass and the quick explanation's batched forward; each model once."""

from __future__ import annotations

import pytest
import torch

from braingui.inference.manifest import read_bundle
from braingui.inference.predictor import Predictor, warm_shape
from inference_helpers import (  # noqa: F401
    make_tiny_classification_bundle,
    make_tiny_segmentation_bundle,
    single_torch_thread,
)


@pytest.fixture()
def torch_backend(monkeypatch):
    monkeypatch.setenv("BRAINGUI_BACKEND", "torch")


def _input_shapes(module: torch.nn.Module) -> tuple[list, object]:
    seen = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    return seen, handle


@pytest.mark.parametrize("options, expected", [
    ({"zoom": 0.5}, (72, 88, 72)),  # 140 x 172 x 140 mm at half resolution, up to the multiple of 8
    ({"zoom": 1.0}, (144, 176, 144)),
    ({"zoom": 1.0, "roi_size": [32, 48, 64]}, (32, 48, 64)),
    ({"crop": [40, 48, 56]}, (40, 48, 56)),
])
def test_the_segmentation_warms_up_at_a_real_case_size(tmp_path, torch_backend, options, expected):
    predictor = Predictor("cpu")
    model = predictor.load(read_bundle(make_tiny_segmentation_bundle(tmp_path / "seg", **options)))
    assert warm_shape(model) == expected
    seen, handle = _input_shapes(model.network)
    try:
        predictor.warm_up(model)
        predictor.warm_up(model)  # once per model
    finally:
        handle.remove()
    assert seen == [(1, len(model.spec.channels)) + expected]


def test_the_classifier_warms_up_its_map_pass_and_the_quick_explanations_batch(tmp_path, torch_backend):
    predictor = Predictor("cpu")
    model = predictor.load(read_bundle(make_tiny_classification_bundle(tmp_path / "cls")))
    seen, handle = _input_shapes(model.network)
    try:
        predictor.warm_up(model)
    finally:
        handle.remove()
    c, shape = len(model.spec.channels), tuple(model.spec.shape)
    assert seen[0] == (1, c) + shape and (1 + c, c) + shape in seen  # the map's pass, then 1 + C inputs at once


def test_a_failed_warm_up_may_be_tried_again(tmp_path, torch_backend, monkeypatch):
    predictor = Predictor("cpu")
    model = predictor.load(read_bundle(make_tiny_segmentation_bundle(tmp_path / "seg")))
    calls = []

    def fail(_array):
        calls.append(1)
        raise RuntimeError("no memory")

    monkeypatch.setattr(model, "probabilities", fail)
    predictor.warm_up(model)  # never raises
    predictor.warm_up(model)
    assert len(calls) == 2
