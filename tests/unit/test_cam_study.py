"""The CAM table (training.cam_study --table, training.cam_table): its numbers are the app's modules' numbers,
one row per method x layer, and the default-selection rule picks what a hand-made table says it should."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from braingui import labels as lab
from braingui.explanation import brain_mask, localisation
from braingui.inference.cam_methods import METHODS, cam_layers, compute_cam, upsample
from braingui.inference.faithfulness import deletion_curve, model_randomisation
from inference_helpers import CLS_SHAPE, make_tiny_classification_bundle, single_torch_thread, tiny_densenet  # noqa: F401
from inference_helpers import write_tiny_case
from training.cam_table import (all_maps, choose_default, deletion_all, format_table, pairs_of, randomisation_all,
                                summarise)


@pytest.fixture(scope="module")
def net_and_input():
    """The tiny DenseNet and a 'brain' input with a bright 'tumour' block on its 24x28x24 grid."""
    net = tiny_densenet(seed=1)
    rng = np.random.default_rng(0)
    x = np.zeros((4, *CLS_SHAPE), dtype=np.float32)
    brain = np.zeros(CLS_SHAPE, dtype=bool)
    brain[3:-3, 3:-3, 3:-3] = True
    x[:, brain] = rng.normal(size=(4, int(brain.sum())))
    wt = np.zeros(CLS_SHAPE, dtype=bool)
    wt[6:12, 8:14, 6:12] = True
    x[:, wt] += 2.5
    return net, torch.from_numpy(x)[None], brain, wt


def test_all_maps_equal_compute_cam_for_every_method_and_layer(net_and_input):
    net, x, _, _ = net_and_input
    pairs = pairs_of(net)
    assert len(pairs) == len(METHODS) * len(cam_layers(net)) == 15
    logits, c, maps = all_maps(net, x, pairs)
    assert c == int(logits.argmax())
    for method, layer in pairs:
        ref_logits, ref = compute_cam(net, x, method, layer)
        assert torch.allclose(logits, ref_logits, atol=1e-6)
        np.testing.assert_allclose(maps[(method, layer)], ref, atol=1e-6, err_msg=f"{method} @ {layer}")
    # the methods differ somewhere, so equality above is not trivially one map compared with itself
    assert not np.allclose(maps[("gradcam", "features.denseblock1")], maps[("hirescam", "features.denseblock1")])
    assert not np.allclose(maps[("hirescam-contrastive", "features.denseblock1")],
                           maps[("hirescam", "features.denseblock1")])


def test_shared_deletion_and_randomisation_equal_the_faithfulness_module(net_and_input):
    net, x, brain, _ = net_and_input
    pairs = [("gradcam", "features.denseblock1"), ("layercam", "features.denseblock1"),
             ("hirescam", "features.denseblock2")]
    logits, c, maps = all_maps(net, x, pairs)
    prob = float(torch.softmax(logits.double(), dim=1)[0, c])
    heats = {p: upsample(m, x.shape[2:]) for p, m in maps.items()}
    dele = deletion_all(net, x, heats, brain, c, prob, n_random=2)
    rand = randomisation_all(net, x, brain, heats, c, n_draws=2)
    for p in pairs:
        ref = deletion_curve(net, x, heats[p], brain, c, baseline=prob, n_random=2)
        np.testing.assert_allclose(dele[p].map_probs, ref.map_probs, atol=1e-9)
        np.testing.assert_allclose(dele[p].random_probs, ref.random_probs, atol=1e-9)
        assert dele[p].areas().gain == pytest.approx(ref.areas().gain, abs=1e-9)
        r = model_randomisation(net, x, brain, heats[p], c, *p, n_draws=2)
        assert rand[p].spearman == pytest.approx(r.spearman, abs=1e-9) and rand[p].flag == r.flag


def _line(method, layer, enrichment, pointing, rho, set_name="real"):
    return {"set": set_name, "method": method, "layer": layer, "enrichment": enrichment, "pointing_game": pointing,
            "randomisation_spearman": rho}


def test_the_rule_picks_the_most_enriched_sane_pair_with_a_good_pointing_game():
    table = [_line("gradcam", "b1", 5.0, 0.9, 0.8),      # best enrichment, fails the sanity check
             _line("hirescam", "b1", 4.0, 0.2, 0.1),     # sane, pointing game below the median
             _line("layercam", "b1", 3.0, 0.9, 0.2),     # sane, pointing game at the median: the choice
             _line("gradcam++", "b1", 2.0, 0.95, 0.3),   # sane, better pointing, less enrichment
             _line("hirescam", "b2", 9.0, 1.0, 0.0, "synthetic")]  # another set: ignored
    choice = choose_default(table)
    assert (choice["method"], choice["layer"]) == ("layercam", "b1")
    assert choice["median_pointing_game"] == pytest.approx(0.9) and choice["passed"] == 2 and choice["relaxed"] is None


def test_the_rule_breaks_ties_by_pointing_game_and_relaxes_when_nothing_passes():
    tie = [_line("gradcam", "b1", 3.0, 0.6, 0.1), _line("hirescam", "b1", 3.0, 0.8, 0.1), _line("x", "b1", 1.0, 0.8, 0.1)]
    assert choose_default(tie)["method"] == "hirescam"
    insane = [_line("gradcam", "b1", 3.0, 0.6, 0.9), _line("hirescam", "b1", 2.0, 0.8, math.nan)]
    choice = choose_default(insane)
    assert choice["method"] == "gradcam" and choice["relaxed"] == "pointing game and randomisation"
    only_sane = [_line("gradcam", "b1", 3.0, 0.9, 0.9), _line("hirescam", "b1", 2.0, 0.1, 0.2)]
    choice = choose_default(only_sane)
    assert choice["method"] == "hirescam" and choice["relaxed"] == "pointing game"
    with pytest.raises(ValueError):
        choose_default(tie, "synthetic")


def test_summary_means_sds_and_pointing_game_by_hand():
    def row(case, e, peak, gain=math.nan, faith=False):
        return {"set": "real", "case": case, "method": "gradcam", "layer": "b1", "mass_in_wt": e / 10,
                "enrichment": e, "mass_outside_brain": 0.0, "peak_in_wt": peak, "peak_in_brain": True,
                "faith": faith, "deletion_gain": gain, "randomisation_spearman": 0.6 if faith else math.nan,
                "randomisation_flag": faith}

    rows = [row("a", 1.0, True, 0.1, True), row("b", 3.0, False), row("c", math.nan, True)]
    (s,) = summarise(rows, [("gradcam", "b1"), ("hirescam", "b1")])  # no rows for hirescam: no line
    assert s["n"] == 3 and s["enrichment"] == 2.0 and s["enrichment_n"] == 2
    assert s["enrichment_sd"] == pytest.approx(math.sqrt(2.0))
    assert s["pointing_game"] == pytest.approx(2 / 3)
    assert s["deletion_gain"] == pytest.approx(0.1) and s["deletion_gain_n"] == 1 and s["randomisation_flag_rate"] == 1.0
    text = format_table([s], "real")
    assert "gradcam" in text and "67 %" in text and "2.00 ± 1.41" in text


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A --table run of a tiny bundle on 3 tiny synthetic phantoms and 2 tiny 'real' cases."""
    from training.cam_study import main
    from training.synthetic_types import generate

    root = tmp_path_factory.mktemp("cam_table")
    bundle = make_tiny_classification_bundle(root / "tiny-densenet", seed=2)
    generate(root / "heldout", per_class=1, seed=5, shape=(32, 36, 28), spacing=(6.0, 6.0, 6.0),
             prefix="SYNTHETIC_HELDOUT", progress=False)
    for i in range(2):
        write_tiny_case(root / "brats" / f"SYNTHETIC_real_{i}", seed=10 + i, case_id=f"SYNTHETIC_real_{i}")
    (root / "brats" / "grades.csv").write_text("case_id,grade\nSYNTHETIC_real_0,HGG\nSYNTHETIC_real_1,LGG\n")
    argv = ["--table", "--cls-bundle", str(bundle), "--heldout", str(root / "heldout"), "--brats", str(root / "brats"),
            "--faith-per-class", "1", "--faith-real", "1", "--draws", "2", "--random-draws", "1",
            "--out", str(root / "out")]
    assert main(argv) == 0
    return root, bundle, argv


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_table_has_one_row_per_case_and_pair_and_one_line_per_set_and_pair(table_run, capsys):
    root, _, _ = table_run
    rows = _csv(root / "out" / "cam_table_per_case.csv")
    pairs = {(m, layer) for m in METHODS for layer in ("features.denseblock1", "features.transition1",
                                                       "features.denseblock2")}
    cases = {(r["set"], r["case"]) for r in rows}
    assert len(cases) == 5 and len(rows) == 5 * len(pairs)
    for c in cases:
        assert {(r["method"], r["layer"]) for r in rows if (r["set"], r["case"]) == c} == pairs
    summary = _csv(root / "out" / "cam_table_summary.csv")
    assert sorted((s["set"], s["method"], s["layer"]) for s in summary) == sorted(
        (s, m, layer) for s in ("real", "synthetic") for m, layer in pairs)
    faith = {(r["set"], r["case"]) for r in rows if r["faith"] == "True"}
    assert len([c for c in faith if c[0] == "real"]) == 1  # --faith-real 1
    faith_classes = sorted(r["true"] for r in rows if r["faith"] == "True" and r["set"] == "synthetic"
                           and (r["method"], r["layer"]) == ("gradcam", "features.denseblock1"))
    assert faith_classes == ["A", "G", "O"]  # --faith-per-class 1
    assert all(r["deletion_gain"] == "" for r in rows if r["faith"] == "False")
    assert {r["grade"] for r in rows if r["set"] == "real"} == {"HGG", "LGG"}
    report = json.loads((root / "out" / "cam_table.json").read_text())
    assert (report["default"]["method"], report["default"]["layer"]) in pairs and report["default"]["set"] == "real"


def test_table_numbers_equal_what_the_modules_compute_for_one_pair(table_run):
    from braingui.inference.manifest import read_bundle
    from braingui.inference.pipeline import cam_to_case
    from braingui.inference.predictor import Predictor
    from braingui.preprocess import prepare_classification
    from training.data import CaseRef, load_ref

    root, bundle_dir, _ = table_run
    rows = _csv(root / "out" / "cam_table_per_case.csv")
    model = Predictor("cpu").load(read_bundle(bundle_dir))
    method, layer = "hirescam", "features.denseblock1"
    for row in (r for r in rows if r["set"] == "real" and (r["method"], r["layer"]) == (method, layer)):
        case = load_ref(CaseRef(row["case"], str(root / "brats" / row["case"])))
        stack = case.stack(model.prep.channels)
        inp = prepare_classification(stack, model.prep)
        brain, x = brain_mask(inp.array), model.tensor(inp.array)
        logits, cam = compute_cam(model.network, x, method, layer)
        c = int(logits.argmax())
        heat = upsample(cam, x.shape[2:])  # deletion and randomisation: on the input grid
        # localisation: on the case grid, as the app's panel (the layer map resampled once)
        loc = localisation(cam_to_case(cam, inp.grid_map), lab.regions(case.labels)["WT"], brain_mask(stack))
        assert row["predicted"] == ["A", "O", "G"][c]
        for k in ("mass_in_wt", "enrichment", "wt_fraction_of_brain"):
            assert float(row[k]) == pytest.approx(getattr(loc, k), abs=1e-5), k
        assert row["peak_in_wt"] == str(loc.peak_in_wt)
        if row["faith"] == "True":
            prob = float(torch.softmax(logits.double(), dim=1)[0, c])
            gain = deletion_curve(model.network, x, heat, brain, c, baseline=prob, n_random=1).areas().gain
            rho = model_randomisation(model.network, x, brain, heat, c, method, layer, n_draws=2).spearman
            assert float(row["deletion_gain"]) == pytest.approx(gain, abs=1e-5)
            assert float(row["randomisation_spearman"]) == pytest.approx(rho, abs=1e-5)


def test_a_rerun_resumes_and_other_settings_are_refused(table_run):
    from training.cam_study import main

    root, _, argv = table_run
    before = (root / "out" / "cam_table_per_case.csv").read_text()
    assert main(argv) == 0  # every case already there: nothing recomputed
    assert (root / "out" / "cam_table_per_case.csv").read_text() == before
    assert "0 to do" in (root / "out" / "cam_table.log").read_text()
    with pytest.raises(SystemExit, match="other settings"):
        main([a if a != "2" else "3" for a in argv])  # --draws 3


def test_per_class_scores_every_class_map_as_the_app_does(table_run, capsys):
    """``--per-class``: one map per class and case (not only the predicted class's), each scored with the app's
    localisation against the case's own whole tumour on the classifier's grid."""
    from braingui.explanation import brain_mask, localisation
    from braingui.inference.manifest import read_bundle
    from braingui.inference.predictor import Predictor
    from braingui.preprocess import prepare_classification
    from training.cam_study import main
    from training.data import brats_cases, load_ref

    root, bundle_dir, _ = table_run
    out = root / "per_class"
    capsys.readouterr()
    assert main(["--per-class", "--cls-bundle", str(bundle_dir), "--brats", str(root / "brats"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "per_class.json").read_text())
    assert [c["case"] for c in report["cases"]] == ["SYNTHETIC_real_0", "SYNTHETIC_real_1"]
    model = Predictor("cpu").load(read_bundle(bundle_dir))
    case = load_ref(next(r for r in brats_cases(root / "brats") if r.name == "SYNTHETIC_real_1"))
    inp = prepare_classification(case.stack(model.prep.channels), model.prep)
    wt = inp.grid_map.forward(lab.regions(case.labels)["WT"].astype(np.float32)) > 0.5
    for k, code in enumerate(("A", "O", "G")):
        _, cam = model.explain(inp.array, class_index=k)
        loc = localisation(cam, wt, brain_mask(inp.array))
        got = report["cases"][1]["maps"][code]
        assert got["enrichment"] == pytest.approx(loc.enrichment, rel=1e-5) and got["peak_in_wt"] == loc.peak_in_wt
        hits = sum(c["maps"][code]["peak_in_wt"] for c in report["cases"])
        assert report["summary"][code]["peak_in_wt"] == hits
        assert f"map of class {code} " in printed and f"hottest voxel in WT {hits}/2" in printed
    maps = report["cases"][1]["maps"]
    assert len({round(m["enrichment"], 6) for m in maps.values()}) > 1  # three different maps, not one three times


def test_per_class_contrastive_hirescam_explains_the_probability_not_the_logit(table_run):
    """``--per-class --methods hirescam-contrastive``: HiResCAM of ``log_softmax(y)[c]``; it equals a map computed
    by hand and differs from HiResCAM of the logit."""
    import torch.nn.functional as F

    from braingui.explanation import brain_mask, localisation
    from braingui.inference.manifest import read_bundle
    from braingui.inference.predictor import Predictor
    from braingui.preprocess import prepare_classification
    from training.cam_study import main
    from training.data import brats_cases, load_ref

    root, bundle_dir, _ = table_run
    argv = ["--per-class", "--cls-bundle", str(bundle_dir), "--brats", str(root / "brats"), "--methods"]
    assert main(argv + ["hirescam-contrastive", "--out", str(root / "lp")]) == 0
    assert main(argv + ["hirescam", "--out", str(root / "logit")]) == 0
    lp = json.loads((root / "lp" / "per_class.json").read_text())
    logit = json.loads((root / "logit" / "per_class.json").read_text())
    assert lp["method"] == "hirescam-contrastive" and logit["method"] == "hirescam"
    model = Predictor("cpu").load(read_bundle(bundle_dir))
    case = load_ref(next(r for r in brats_cases(root / "brats") if r.name == "SYNTHETIC_real_0"))
    inp = prepare_classification(case.stack(model.prep.channels), model.prep)
    wt = inp.grid_map.forward(lab.regions(case.labels)["WT"].astype(np.float32)) > 0.5
    x = model.tensor(inp.array)
    net = model.network.eval()
    acts = {}
    handle = dict(net.named_modules())["features.denseblock1"].register_forward_hook(
        lambda _m, _i, out: acts.__setitem__("a", out))
    with torch.enable_grad():
        logits = net(x)
        (g,) = torch.autograd.grad(torch.log_softmax(logits, 1)[0, 0], acts["a"])
    handle.remove()
    raw = F.relu((g * acts["a"]).sum(1, keepdim=True)).detach()
    raw = (raw - raw.min()) / (raw.max() - raw.min())
    cam = F.interpolate(raw, size=tuple(x.shape[2:]), mode="trilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
    expect = localisation(cam, wt, brain_mask(inp.array)).enrichment
    assert lp["cases"][0]["maps"]["A"]["enrichment"] == pytest.approx(expect, rel=1e-4)
    assert any(abs(lp["cases"][i]["maps"][c]["enrichment"] - logit["cases"][i]["maps"][c]["enrichment"]) > 1e-3
               for i in range(2) for c in ("A", "O", "G"))
