"""Test-time augmentation (braingui.inference.tta), the uncertainty numbers (braingui.uncertainty) and
what the pipeline, results.json, the exporter and the CLI make of them, on tiny phantoms.

The flip-equivariant toy is the hand-set ``intensity`` SegResNet of tests/inference_helpers.py: every
convolution but the centre tap and the 1x1 output is zero, so it is a per-voxel function and a mirrored
input gives the mirrored output. The seeded ``random`` SegResNet has 3x3x3 kernels of random weights and
is not equivariant.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from braingui import labels as lab
from braingui import postprocess as pp
from braingui import uncertainty as unc
from braingui.app import cli
from braingui.case import load_case
from braingui.errors import BrainguiError
from braingui.export import RESULTS_FILE, UNCERTAINTY_FILE, export_result
from braingui.inference import tta
from braingui.inference.manifest import read_bundle
from braingui.inference.pipeline import analyse, run_to_completion
from braingui.inference.predictor import Predictor
from braingui.preprocess import prepare_segmentation
from inference_helpers import make_tiny_segmentation_bundle, single_torch_thread, write_tiny_case  # noqa: F401


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tta")
    case = load_case(write_tiny_case(root / "case"))
    predictor = Predictor("cpu")
    equi = read_bundle(make_tiny_segmentation_bundle(root / "equi", rule="intensity"))
    rand = read_bundle(make_tiny_segmentation_bundle(root / "rand", rule="random", seed=3))
    models = {"equivariant": predictor.load(equi), "random": predictor.load(rand)}
    inp = prepare_segmentation(case.stack(models["random"].prep.channels), models["random"].prep)
    return {"root": root, "case": case, "predictor": predictor, "bundles": {"equivariant": equi, "random": rand},
            "models": models, "array": inp.array}


def _members_by_hand(model, array, flips):
    """Each member computed here: flip the input with numpy, one plain pass, flip the output back."""
    out = []
    for axes in flips:
        ax = tuple(a + 1 for a in axes)
        probs = model.probabilities(np.ascontiguousarray(np.flip(array, ax)) if axes else array)
        out.append(np.flip(probs, ax) if axes else probs)
    return np.stack(out)


def test_flips_are_the_first_n_of_all_eight_distinct_mirrorings():
    assert len(set(tta.FLIPS)) == 8 and tta.FLIPS[0] == ()
    assert {tuple(sorted(f)) for f in tta.FLIPS} == {(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)}
    for n in tta.CHOICES:
        assert tta.flips_for(n) == tta.FLIPS[:n]
    for bad in (0, 3, 5, 16, True, "8"):
        with pytest.raises(ValueError, match="1, 2, 4 or 8"):
            tta.flips_for(bad)


def test_equivariant_network_tta_equals_one_pass(world):
    model, array = world["models"]["equivariant"], world["array"]
    single = model.probabilities(array)
    out = tta.run_tta(model, array, 8)
    assert out.members == 8
    np.testing.assert_allclose(out.mean, single, atol=1e-5)
    assert float(out.std.max()) < 1e-4
    assert (out.member_voxels == out.member_voxels[0]).all()  # every view gives the same regions
    assert single.max() > 0.9 and single.min() < 0.1  # not trivially constant


def test_non_equivariant_network_tta_differs_and_is_the_mean_of_flipped_members(world):
    model, array = world["models"]["random"], world["array"]
    single = model.probabilities(array)
    out = tta.run_tta(model, array, 4)
    by_hand = _members_by_hand(model, array, tta.FLIPS[:4])
    assert float(np.abs(out.mean - single).max()) > 1e-3
    np.testing.assert_allclose(out.mean, by_hand.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(out.std, by_hand.std(axis=0), atol=1e-5)
    assert float(out.std.max()) > 1e-3


def test_one_member_is_the_single_pass_bit_for_bit(world):
    model, array = world["models"]["random"], world["array"]
    out = tta.run_tta(model, array, 1)
    assert np.array_equal(out.mean, model.probabilities(array))
    assert not out.std.any() and out.member_voxels.shape == (1, 3)


class _ThreeWindowModel:
    """A stand-in segmentation model whose every pass takes three windows (probabilities: x position)."""

    spec = SimpleNamespace(threshold=0.5, regions=("TC", "WT", "ET"))

    def windows(self, shape):
        return [None] * 3

    def iter_probabilities(self, array):
        for k in range(3):
            yield k + 1, 3
        x = np.linspace(0.0, 1.0, array.shape[1], dtype=np.float32)[:, None, None]
        return np.broadcast_to(x, (3,) + array.shape[1:]).astype(np.float32)


def test_progress_counts_every_window_of_every_view():
    gen, seen = tta.iter_tta(_ThreeWindowModel(), np.zeros((4, 5, 2, 2), dtype=np.float32), 2), []
    while True:
        try:
            seen.append(next(gen))
        except StopIteration as stop:
            out = stop.value
            break
    assert seen == [(k, 6) for k in range(1, 7)]
    # the x-mirrored member is flipped back: x ramp + its mirror average to 0.5 everywhere
    np.testing.assert_allclose(out.mean, 0.5, atol=1e-6)
    np.testing.assert_allclose(out.std[:, :, 0, 0], np.abs(np.linspace(0, 1, 5) - 0.5)[None].repeat(3, 0), atol=1e-6)


def test_nested_counts_follow_the_label_map_nesting():
    above = np.zeros((3, 4, 4, 4), dtype=bool)  # TC, WT, ET
    above[1, :2] = True          # WT: 32 voxels
    above[0, 3, 0, :2] = True    # TC outside WT: 2 voxels
    above[2, 3, 3, 3] = True     # ET outside both: 1 voxel
    counts = tta.nested_counts(above, ("TC", "WT", "ET"))
    labels = lab.from_region_channels(above, ("TC", "WT", "ET"))
    vols = lab.region_volumes_ml(labels, 1.0)
    assert counts.tolist() == [3, 35, 1]
    assert counts.tolist() == [vols["TC"], vols["WT"], vols["ET"]]


def test_region_summary_on_hand_made_members():
    # two members on a 1x10 strip: member A says WT on 4 voxels, member B on 6
    a = np.zeros((3, 10, 1, 1))
    b = np.zeros((3, 10, 1, 1))
    a[1, :4], b[1, :6] = 1.0, 1.0
    members = np.stack([a, b])
    mean, std = members.mean(axis=0), members.std(axis=0)
    counts = np.stack([tta.nested_counts(m > 0.5, ("TC", "WT", "ET")) for m in members])
    s = unc.region_summary(mean, std, counts, ("TC", "WT", "ET"), 0.5, voxel_ml=2.0)
    # mean 1 on voxels 0-3 (std 0), 0.5 on 4-5 (not > 0.5): the predicted WT is voxels 0-3, all agreed
    assert s["WT"] == {"mean": 0.0, "volume_ml_range": [8.0, 12.0]}
    assert s["ET"] == {"mean": 0.0, "volume_ml_range": [0.0, 0.0]}
    vm = unc.voxel_map(std)
    assert vm.shape == (10, 1, 1) and vm[4, 0, 0] == pytest.approx(0.5) and vm[0, 0, 0] == 0


def test_volume_text():
    s = {"ET": {"mean": 0.1, "volume_ml_range": [29.4, 35.2]}, "TC": {"mean": 0.0, "volume_ml_range": [0.4, 0.9]},
         "WT": {"mean": 0.0, "volume_ml_range": [3.04, 4.46]}}
    assert unc.volume_text("ET", 32.94, s, 8) == "ET 32.9 mL (29-35 across 8 views)"
    assert unc.volume_text("TC", 0.62, s, 8) == "TC 0.6 mL (0.40-0.90 across 8 views)"
    assert unc.volume_text("WT", 3.5, s, 4) == "WT 3.5 mL (3.0-4.5 across 4 views)"
    tight = {"TC": {"mean": 0.0, "volume_ml_range": [50.525, 51.015]}}  # narrow: decimals, not "51-51"
    assert unc.volume_text("TC", 50.69, tight, 4) == "TC 50.7 mL (50.5-51.0 across 4 views)"
    assert unc.range_text("TC", tight, 4) == "50.5-51.0 across 4 views" and unc.range_text("TC", None, 1) == ""
    assert unc.volume_text("ET", 32.94) == "ET 32.9 mL"
    assert unc.volume_text("ET", 32.94, s, 1) == "ET 32.9 mL"


def test_display_values_span_the_legend():
    lo, hi = unc.LEGEND["range"]
    v = unc.display_values(np.array([lo, (lo + hi) / 2, hi, 2 * hi]))
    np.testing.assert_allclose(v, [0.0, 0.5, 1.0, 1.0])


@pytest.fixture(scope="module")
def analysed(world):
    case, bundle = world["case"], world["bundles"]["random"]
    return {n: run_to_completion(analyse(case, world["predictor"], bundle, None, tta=n)) for n in (1, 4)}


def test_pipeline_uncertainty_on_the_case_grid(world, analysed):
    case, r = world["case"], analysed[4]
    assert r.tta_views == 4
    assert r.uncertainty.shape == case.grid.shape and r.uncertainty.dtype == np.float32
    assert 0.0 <= float(r.uncertainty.min()) and float(r.uncertainty.max()) <= 0.5
    assert float(r.uncertainty.max()) > 1e-3
    for region in ("WT", "TC", "ET"):
        entry = r.uncertainty_regions[region]
        lo, hi = entry["volume_ml_range"]
        assert 0.0 <= lo <= hi and 0.0 <= entry["mean"] <= 0.5
    one = analysed[1]
    assert one.tta_views == 1 and one.uncertainty is None and not one.uncertainty_regions


def test_pipeline_labels_follow_the_tta_mean(world, analysed):
    model, case = world["models"]["random"], world["case"]
    inp = prepare_segmentation(case.stack(model.prep.channels), model.prep)
    mean = _members_by_hand(model, inp.array, tta.FLIPS[:4]).mean(axis=0)
    expected = lab.from_region_channels(inp.grid_map.inverse(mean, fill=0.0) > 0.5, model.spec.regions)
    expected, _ = pp.postprocess(expected, case.grid.voxel_ml, pp.DEFAULT)
    assert np.array_equal(analysed[4].labels, expected)


def test_results_json_and_uncertainty_file(tmp_path, world, analysed):
    case = world["case"]
    written = export_result(analysed[4], case.grid, tmp_path / "out4")
    data = json.loads((tmp_path / "out4" / RESULTS_FILE).read_text())
    assert set(data["uncertainty"]) == {"WT", "TC", "ET"}
    for v in data["uncertainty"].values():
        assert set(v) == {"mean", "volume_ml_range"} and len(v["volume_ml_range"]) == 2
    assert data["segmentation"]["tta_views"] == 4
    assert isinstance(data["quality"]["flags"], list)
    assert all(set(f) == {"code", "message"} for f in data["quality"]["flags"])
    img = nib.load(written["uncertainty"])
    assert written["uncertainty"].name == UNCERTAINTY_FILE
    np.testing.assert_allclose(np.asarray(img.dataobj), case.grid.to_original(analysed[4].uncertainty))
    np.testing.assert_allclose(img.affine, case.grid.original_affine)
    written1 = export_result(analysed[1], case.grid, tmp_path / "out1")
    assert "uncertainty" not in written1 and not (tmp_path / "out1" / UNCERTAINTY_FILE).exists()
    assert json.loads((tmp_path / "out1" / RESULTS_FILE).read_text())["uncertainty"] is None


def test_pipeline_refuses_an_unknown_view_count(world):
    with pytest.raises(BrainguiError, match="1, 2, 4 or 8"):
        run_to_completion(analyse(world["case"], world["predictor"], world["bundles"]["random"], None, tta=3))


def test_cli_options_match_the_inference_constants():
    assert cli.TTA_CHOICES == tta.CHOICES
    assert cli.TTA_DEFAULT_TEXT == str(tta.DEFAULT_TTA)
    args = cli.build_parser().parse_args(["--tta", "2", "--postprocess", "off"])
    assert args.tta == 2 and cli._postprocessing(args).enabled is False
    assert cli.build_parser().parse_args([]).tta is None
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--tta", "3"])
