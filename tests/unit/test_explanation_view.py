"""What the Explanation panel says (:mod:`braingui.display.explanation_view`), without Qt: wording, severity,
the key numbers and the "computing..." line of a quick explanation."""

from __future__ import annotations

import copy

import pytest

from braingui.display import explanation_view as xv

TITLES = {"A": "astrocytoma", "O": "oligodendroglioma", "G": "glioblastoma"}
GOOD = {"method": "gradcam", "layer": "features.denseblock1", "class": "G", "mass_in_wt": 0.38,
        "wt_fraction_of_brain": 0.06, "enrichment": 6.333, "mass_outside_brain": 0.02, "peak_in_wt": True,
        "peak_in_brain": True,
        "reference": {"mass_in_wt": 0.41, "wt_fraction_of_brain": 0.055, "enrichment": 7.4545,
                      "mass_outside_brain": 0.02, "peak_in_wt": True, "peak_in_brain": True},
        "tumour_occlusion": {"class": "A", "probabilities": {"A": 0.81, "O": 0.09, "G": 0.1}},
        "modality_ablation": {"flair": -0.38, "t1": 0.01, "t1ce": -0.12, "t2": -0.05},
        "deletion": {"map_auc": 0.412, "random_auc": 0.655}, "randomisation": {"spearman": 0.21, "flag": False},
        "level": "full"}
POOR = {"method": "hirescam", "layer": "features.transition2", "class": "A", "mass_in_wt": 0.09,
        "wt_fraction_of_brain": 0.12, "enrichment": 0.75, "mass_outside_brain": 0.88, "peak_in_wt": False,
        "peak_in_brain": False, "reference": None,
        "tumour_occlusion": {"class": "A", "probabilities": {"A": 0.7, "O": 0.2, "G": 0.1}},
        "modality_ablation": {"flair": 0.01, "t1": -0.02, "t1ce": 0.0, "t2": 0.03},
        "deletion": None, "randomisation": None, "level": "quick"}


def cells(view: xv.ExplanationView) -> dict[str, tuple[str, str | None]]:
    return {name: (m.text, r.text if r else None) for name, m, r in view.localisation}


def checks(view: xv.ExplanationView) -> dict[str, xv.Cell]:
    return dict(view.checks)


def test_a_good_map_says_so_in_words_and_shows_its_numbers():
    v = xv.build_view(GOOD, TITLES, "G")
    assert v.severity == "good" and v.heading is None and v.pending is None
    assert v.title == "Grad-CAM at dense block 1, glioblastoma (G)"
    assert v.verdict.startswith("38 % of the heat lies in the tumour, which is 6 % of the brain: 6x better than chance.")
    assert "Without the tumour the model says astrocytoma (81 %)." in v.verdict
    assert "FLAIR moved the call most (-38 %)." in v.verdict and v.verdict.endswith("Sanity check passed.")
    assert v.header == ("", "model", "reference")
    c = cells(v)
    assert c["Heat in the tumour"] == ("38.0 %", "41.0 %")
    assert c["Tumour's share of brain"] == ("6.0 %", "5.5 %")
    assert c["Enrichment (1 = chance)"] == ("6.33x", "7.45x")
    assert c["Heat outside the brain"] == ("2.0 %", "2.0 %")
    assert c["Hottest point in tumour"] == ("yes", "yes")
    k = checks(v)
    assert k["Without the tumour"].text == "astrocytoma (81 %)"
    assert k["Sequence that moved the call most"].text == "FLAIR (-38 %)"
    assert k["Deletion gain"] == xv.Cell("+0.243", "good")  # 0.655 - 0.412
    assert k["Sanity check"] == xv.Cell("passed (Spearman 0.21)", "good")


def test_a_poor_map_gets_a_plain_red_heading_and_a_quick_one_says_what_is_still_computing():
    v = xv.build_view(POOR, TITLES, "G")
    assert v.severity == "poor" and v.colour == xv.COLOURS["poor"]
    assert v.heading == ("This map is poor: most of its heat lies outside the brain; it is worse than a uniform "
                         "map at the tumour; its hottest point lies outside the brain.")
    assert not v.verdict.startswith("This map is poor")
    assert "Without the tumour the model still says astrocytoma (70 %)" in v.verdict
    assert v.title.endswith("astrocytoma (A) \u2014 not the predicted class")
    assert v.title.startswith("HiResCAM at transition 2")
    contrastive = xv.build_view({**POOR, "method": "hirescam-contrastive"}, TITLES, "G")
    assert contrastive.title == ("Contrastive HiResCAM at transition 2, astrocytoma (A) against the other classes"
                                 " \u2014 not the predicted class")
    assert "against" not in v.title and "other classes" in xv.method_hint("hirescam-contrastive")
    assert v.header == ("", "model")  # no reference labels: no third column
    assert all(r is None for _, _, r in v.localisation)
    tones = {name: m.tone for name, m, _ in v.localisation}
    assert tones["Enrichment (1 = chance)"] == "poor" and tones["Heat outside the brain"] == "poor"
    assert tones["Hottest point in tumour"] == "poor"
    assert v.pending == xv.PENDING_TEXT
    k = checks(v)
    assert k["Deletion gain"].text == xv.COMPUTING
    assert k["Sanity check"].text == xv.COMPUTING
    assert k["Sequence that moved the call most"].text == "none by 5 % or more"
    assert k["Without the tumour"].tone == "doubtful"  # the call survives the tumour's removal


def test_the_full_explanation_replaces_the_computing_line():
    quick = dict(GOOD, level="quick", deletion=None, randomisation=None)
    assert xv.build_view(quick, TITLES, "G").pending == xv.PENDING_TEXT
    full = xv.build_view(GOOD, TITLES, "G")
    assert full.pending is None and xv.COMPUTING not in [c.text for _, c in full.checks]
    headless_quick = dict(quick, level="full")  # --explain quick: nothing follows
    assert checks(xv.build_view(headless_quick, TITLES, "G"))["Deletion gain"].text == "not computed"


@pytest.mark.parametrize("change, severity, problem", [
    ({"enrichment": 1.2, "mass_in_wt": 0.072}, "doubtful", "it is hardly better than chance at the tumour"),
    ({"peak_in_wt": False}, "doubtful", "its hottest point lies outside the tumour"),
    ({"randomisation": {"spearman": 0.83, "flag": True}}, "poor", "it fails the sanity check"),
    ({"deletion": {"map_auc": 0.7, "random_auc": 0.6}}, "doubtful",
     "deleting its hottest voxels matters no more than deleting random ones"),
])
def test_each_problem_alone_sets_the_severity_and_is_named_in_the_heading(change, severity, problem):
    e = dict(copy.deepcopy(GOOD), **change)
    v = xv.build_view(e, TITLES, "G")
    assert v.severity == severity
    assert v.heading == f"This map is poor: {problem}."


def test_a_stored_verdict_is_shown_as_it_is():
    e = dict(GOOD, verdict="This map is poor: a reason from the pipeline. Something else.")
    v = xv.build_view(e, TITLES, "G")
    assert v.heading == "This map is poor: a reason from the pipeline." and v.verdict == "Something else."
    assert v.severity == "doubtful"  # the pipeline says poor although these numbers find nothing


def test_no_explanation_and_names():
    v = xv.build_view(None, TITLES, "G")
    assert v.severity == "none" and v.verdict == xv.NO_EXPLANATION and not v.localisation
    assert xv.layer_title("features.transition3") == "transition 3" and xv.layer_title("fc") == "fc"
    assert xv.method_title("gradcam++") == "Grad-CAM++"
    assert xv.pct(0.3821) == "38.2 %" and xv.pct(None) == xv.NONE_TEXT and xv.times(float("nan")) == xv.NONE_TEXT


def test_methods_and_layers_match_the_inference_side():
    torch = pytest.importorskip("torch")
    from monai.networks.nets import DenseNet

    from braingui.inference.cam_methods import METHODS, cam_layers

    assert xv.CAM_METHODS == METHODS
    torch.manual_seed(0)  # DenseNet169's layout (four blocks, three transitions), tiny so it builds at once
    tiny = DenseNet(spatial_dims=3, in_channels=4, out_channels=3, init_features=4, growth_rate=2, bn_size=1,
                    block_config=(1, 1, 1, 1))
    assert xv.DENSENET_LAYERS == cam_layers(tiny)


def test_the_classes_side_by_side():
    other = dict(POOR, level="full", deletion={"map_auc": 0.5, "random_auc": 0.45},
                 randomisation={"spearman": 0.7, "flag": True})
    cmp = xv.build_comparison({"A": other, "G": GOOD}, TITLES, "G")
    assert cmp.header == ("", "glioblastoma (predicted)", "astrocytoma") and cmp.codes == ("G", "A")
    rows = {name: tuple(c.text for c in cells) for name, cells in cmp.rows}
    assert rows["Heat in the tumour"] == ("38.0 %", "9.0 %") and rows["Enrichment"] == ("6.33x", "0.75x")
    assert rows["Heat outside the brain"] == ("2.0 %", "88.0 %")
    assert rows["Deletion gain"] == ("+0.243", "-0.050") and rows["Sanity check"] == ("passed", "flagged")
    assert [c.tone for c in dict(cmp.rows)["Sanity check"]] == ["good", "poor"]
    assert xv.build_comparison({"G": GOOD}, TITLES, "G") is None  # one class: nothing to compare
