"""Post-processing of label maps (braingui.postprocess) on hand-made masks, and its record in results.json."""

from __future__ import annotations

import numpy as np
import pytest

from braingui import labels as lab
from braingui import postprocess as pp


def _labels() -> np.ndarray:
    """A 30^3 map: a 10^3 tumour (edema round a 4^3 enhancing core), a 2^3 speck and a 1-voxel speck."""
    out = np.zeros((30, 30, 30), dtype=np.uint8)
    out[2:12, 2:12, 2:12] = lab.EDEMA
    out[5:9, 5:9, 5:9] = lab.ENHANCING
    out[20:22, 20:22, 20:22] = lab.CORE
    out[27, 3, 27] = lab.ENHANCING
    return out


def test_small_components_go_and_the_main_one_stays():
    before = _labels()
    out, n, ml = pp.remove_small_components(before, voxel_ml=0.001, min_ml=0.005)  # 8 voxels = 0.008 mL stay
    assert n == 1 and ml == pytest.approx(0.001)
    assert out[27, 3, 27] == 0 and (out[20:22, 20:22, 20:22] == lab.CORE).all()
    assert np.array_equal(out[:15, :15, :15], before[:15, :15, :15])
    out, n, ml = pp.remove_small_components(before, voxel_ml=0.001, min_ml=0.5)
    assert n == 2 and ml == pytest.approx(0.009)
    assert np.array_equal(out > 0, np.pad(np.ones((10, 10, 10), bool), ((2, 18),) * 3))
    assert np.array_equal(before, _labels())  # the input is not changed


def test_the_largest_component_is_kept_even_when_below_the_threshold():
    before = _labels()
    out, n, _ = pp.remove_small_components(before, voxel_ml=0.001, min_ml=100.0)
    assert n == 2 and np.count_nonzero(out) == 1000


def test_components_are_26_connected():
    out = np.zeros((10, 10, 10), dtype=np.uint8)
    out[2:5, 2:5, 2:5] = lab.EDEMA
    out[5, 5, 5] = lab.EDEMA  # touches the block only at a corner
    kept, n, _ = pp.remove_small_components(out, voxel_ml=1.0, min_ml=5.0)
    assert n == 0 and kept[5, 5, 5] == lab.EDEMA


def test_small_enhancing_becomes_core():
    labels = _labels()
    et_voxels = int(np.count_nonzero(labels == lab.ENHANCING))  # 64 + 1
    out, ml = pp.relabel_small_enhancing(labels, voxel_ml=0.01, min_ml=1.0)  # 0.65 mL < 1 mL
    assert ml == pytest.approx(et_voxels * 0.01)
    assert not (out == lab.ENHANCING).any()
    assert np.array_equal(out == lab.CORE, (labels == lab.CORE) | (labels == lab.ENHANCING))
    out, ml = pp.relabel_small_enhancing(labels, voxel_ml=0.01, min_ml=0.5)  # 0.65 mL >= 0.5 mL
    assert ml == 0.0 and np.array_equal(out, labels)


def test_volumes_keep_whole_tumour_and_core_when_et_is_relabelled():
    labels = _labels()
    out, _ = pp.relabel_small_enhancing(labels, voxel_ml=0.01, min_ml=1.0)
    before, after = lab.region_volumes_ml(labels, 0.01), lab.region_volumes_ml(out, 0.01)
    assert after["ET"] == 0
    assert after["TC"] == pytest.approx(before["TC"]) and after["WT"] == pytest.approx(before["WT"])


def test_postprocess_record_and_off():
    labels = _labels()
    out, record = pp.postprocess(labels, 0.001, pp.PostProcessing(min_component_ml=0.005, et_min_ml=1.0))
    assert record == {"min_component_ml": 0.005, "et_min_ml": 1.0, "components_removed": 1, "removed_ml": 0.001,
                      "et_relabelled_ml": 0.064}
    assert not (out == lab.ENHANCING).any()
    same, record = pp.postprocess(labels, 0.001, pp.OFF)
    assert np.array_equal(same, labels) and record["components_removed"] == 0 and record["et_relabelled_ml"] == 0
    assert not pp.OFF.enabled
    empty, record = pp.postprocess(np.zeros((4, 4, 4), np.uint8), 1.0, pp.PostProcessing(1.0, 1.0))
    assert not empty.any() and record["components_removed"] == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "1"])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match=">= 0"):
        pp.PostProcessing(min_component_ml=bad)
    with pytest.raises(ValueError, match=">= 0"):
        pp.PostProcessing(et_min_ml=bad)


def test_pipeline_records_the_postprocessing(tmp_path):
    from braingui.case import load_case
    from braingui.inference.manifest import read_bundle
    from braingui.inference.pipeline import analyse, run_to_completion
    from braingui.inference.predictor import Predictor
    from inference_helpers import make_tiny_segmentation_bundle, write_tiny_case

    case = load_case(write_tiny_case(tmp_path / "case"))
    bundle = read_bundle(make_tiny_segmentation_bundle(tmp_path / "seg"))
    predictor = Predictor("cpu")
    off = run_to_completion(analyse(case, predictor, bundle, None, tta=1, postprocess=pp.OFF))
    big = pp.PostProcessing(min_component_ml=0.0, et_min_ml=1e6)  # any enhancing tumour is "small"
    on = run_to_completion(analyse(case, predictor, bundle, None, tta=1, postprocess=big))
    assert off.volumes_ml["ET"] > 0 and on.volumes_ml["ET"] == 0
    assert on.volumes_ml["TC"] == pytest.approx(off.volumes_ml["TC"])
    summary = on.summary()["segmentation"]["postprocessing"]
    assert summary["et_min_ml"] == 1e6 and summary["et_relabelled_ml"] == pytest.approx(off.volumes_ml["ET"], abs=1e-3)
    default = run_to_completion(analyse(case, predictor, bundle, None, tta=1))
    assert default.postprocessing["min_component_ml"] == pp.DEFAULT.min_component_ml
    assert default.postprocessing["et_min_ml"] == pp.DEFAULT.et_min_ml
