"""The model cards name their training data by data set and public source, never by a local path, and the
shipped manifests say what a re-export from ``training/cards`` would write."""

from __future__ import annotations

import json

import pytest

from braingui.inference.locate import PACKAGE_MODELS
from braingui.inference.manifest import read_bundle
from helpers import REPO_ROOT

CARDS = REPO_ROOT / "training" / "cards"
BRATS_URL = "https://www.med.upenn.edu/sbia/brats2018.html"
SHOWN = ("summary", "training_data", "training_data_short", "metrics", "intended_use", "limitations")
"""Card keys the results panel shows."""


@pytest.mark.parametrize("name", ["demo-segresnet", "demo-densenet169"])
def test_shipped_card_text_is_the_card_source_and_names_no_local_path(name):
    card = read_bundle(PACKAGE_MODELS / name).manifest.model_card
    source = json.loads((CARDS / f"{name}.json").read_text())
    for key in ("training_data", "training_data_short"):
        assert card[key] == source[key], key  # export_bundle --card merges the source last
    shown = json.dumps({k: card.get(k) for k in SHOWN})
    assert "shared/data" not in shown and "../" not in shown
    assert len(card["training_data_short"]) <= 60


def test_the_segmentation_card_names_brats_2018_and_its_source():
    card = read_bundle(PACKAGE_MODELS / "demo-segresnet").manifest.model_card
    text = card["training_data"]
    assert "BraTS 2018" in text and BRATS_URL in text and "Menze et al. 2015" in text and "Bakas et al. 2017, 2018" in text
    assert card["training_data_short"].startswith("BraTS 2018 (12 cases)")


def test_the_classifier_card_names_its_synthetic_generator():
    card = read_bundle(PACKAGE_MODELS / "demo-densenet169").manifest.model_card
    assert "training/synthetic_types.py" in card["training_data"] and "SYNTHETIC" in card["training_data"]
    assert "synthetic" in card["training_data_short"] and card["synthetic_training_data"] is True


def test_export_bundle_default_cards_name_the_data_set_not_a_path():
    from training.export_bundle import BRATS_SOURCE, model_card

    seg = {"network": "SegResNet", "kwargs": {"init_filters": 8}, "prep": {"zoom": 0.5},
           "train_cases": ["Brats18_A_1", "Brats18_B_1", "Brats18_C_1", "SYNTHETIC_seg_000"], "val_cases": ["Brats18_D_1"]}
    card = model_card(seg, "segmentation", None, None, None, None)
    assert BRATS_URL in BRATS_SOURCE and BRATS_SOURCE in card["training_data"]
    assert card["training_data_short"] == "BraTS 2018 (3 cases) + synthetic phantoms"
    real_only = dict(seg, train_cases=["Brats18_A_1"])
    assert model_card(real_only, "segmentation", None, None, None, None)["training_data_short"] == "BraTS 2018 (1 case)"
    cls = {"network": "DenseNet169", "kwargs": {}, "prep": {"shape": [8, 8, 8]}, "classes": ["A", "O", "G"],
           "train_cases": ["SYNTHETIC_CPM_0001", "SYNTHETIC_CPM_0002"], "data": {"synthetic": True, "note": "stand-in"}}
    card = model_card(cls, "classification", None, None, None, None)
    assert card["training_data_short"] == "synthetic tumour-type phantoms (2 training, no patients)"
    assert card["synthetic_training_data"] is True
