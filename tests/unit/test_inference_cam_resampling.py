"""The Grad-CAM is resampled once: from its layer's grid straight onto the case grid.

Before, the map was upsampled to the network input (the adapter) and then mapped to the case box
(``GridMap.inverse``); the one-step map must be the same map within interpolation tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from braingui.case import load_case
from braingui.inference.gradcam import MedcamGradCam
from braingui.inference.pipeline import analyse, cam_to_case, run_to_completion
from braingui.inference.manifest import read_bundle
from braingui.inference.predictor import Predictor
from braingui.preprocess import ClassificationPrep, prepare_classification
from inference_helpers import (CLS_SHAPE, make_tiny_classification_bundle,  # noqa: F401
                               single_torch_thread, tiny_densenet, write_tiny_case)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cam")
    case = load_case(write_tiny_case(root / "case"))
    inp = prepare_classification(case.stack(), ClassificationPrep(shape=CLS_SHAPE))
    return {"root": root, "case": case, "inp": inp}


def _peak(volume: np.ndarray) -> np.ndarray:
    return np.array(np.unravel_index(int(np.argmax(volume)), volume.shape))


@pytest.mark.parametrize("class_index", [0, 1, 2])
def test_one_step_map_matches_the_old_two_step_map(tiny, class_index):
    import torch

    inp = tiny["inp"]
    adapter = MedcamGradCam(tiny_densenet(seed=3), "features.denseblock1")
    x = torch.from_numpy(inp.array)[None]
    _, native = adapter.native(x, class_index)
    _, on_input = adapter(x, class_index)
    assert native.shape == tuple(s // 4 for s in CLS_SHAPE)  # the layer's own grid, coarser than the input
    assert on_input.shape == CLS_SHAPE
    old = inp.grid_map.inverse(on_input, fill=0.0, order=1)  # the former two interpolations
    new = cam_to_case(native, inp.grid_map)
    assert new.shape == old.shape == tiny["case"].grid.shape and new.dtype == np.float32
    assert new.min() >= 0.0 and new.max() <= 1.0
    box = inp.grid_map.box
    outside = np.ones(new.shape, bool)
    outside[tuple(slice(s, s + n) for s, n in zip(box.start, box.size))] = False
    assert not new[outside].any()  # zero outside the classifier's box, as before
    assert np.corrcoef(new.ravel(), old.ravel())[0, 1] > 0.99
    assert np.abs(_peak(new) - _peak(old)).max() <= 1
    assert np.abs(new - old)[~outside].mean() < 0.02  # measured 0.003-0.005 for seed 3


def test_the_pipeline_gives_the_one_step_map(tiny):
    """... then shown inside the brain only (zero outside, its in-brain maximum scaled to 1)."""
    bundle = read_bundle(make_tiny_classification_bundle(tiny["root"] / "cls", seed=3))
    result = run_to_completion(analyse(tiny["case"], Predictor("cpu"), None, bundle, all_cams=True))
    model = Predictor("cpu").load(bundle)
    brain = np.any(tiny["case"].stack() != 0, axis=0)
    for k, code in enumerate(bundle.manifest.classification.classes):
        _, native = model.explain(tiny["inp"].array, k, on_input_grid=False)
        one_step = cam_to_case(native, tiny["inp"].grid_map)
        expected = np.where(brain, one_step, 0.0) / max(float(one_step[brain].max()), 1e-30)
        np.testing.assert_allclose(result.cams[code], expected, atol=1e-6)
