"""``python -m training.evaluate --reproduce`` re-computes the shipped model cards' numbers.

The classification card is checked on the first cases of its synthetic held-out set (regenerated from the
generator settings the card records); the segmentation card on its held-out real BraTS cases, which
skips when ``../shared/data/brats2018`` is absent. The full re-evaluation (all 60 synthetic cases, both
real cases, means included) is the command in each card: ``python -m training.evaluate --reproduce
braingui/models --out DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from braingui.inference.locate import PACKAGE_MODELS
from braingui.inference.manifest import read_bundle
from helpers import shared_data_dir

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _reproduce(tmp_path: Path, models: Path, *extra: str) -> tuple[int, dict]:
    from training.evaluate import main

    out = tmp_path / "eval"
    rc = main(["--reproduce", str(models), "--out", str(out), "--threads", "2", *extra])
    return rc, json.loads((out / "reproduce.json").read_text())


def test_classification_card_reproduces_on_heldout_cases(tmp_path):
    bundle = read_bundle(PACKAGE_MODELS / "demo-densenet169")
    card = bundle.manifest.model_card
    assert card["synthetic_training_data"] is True and "not for clinical use" in card["intended_use"]
    rc, report = _reproduce(tmp_path, PACKAGE_MODELS / "demo-densenet169", "--max-cases", "3")
    checks = report["demo-densenet169"]["checks"]
    # 3 cases x (predicted class, p_A, p_O, p_G, Grad-CAM mass in WT), each against the card's per-case row
    assert len(checks) == 15
    assert all(c["model_card"] is not None for c in checks)
    assert [c["metric"] for c in checks if not c["agree"]] == []
    assert rc == 0


@pytest.mark.realdata
def test_segmentation_card_reproduces_on_heldout_brats(tmp_path):
    data = shared_data_dir()
    card = read_bundle(PACKAGE_MODELS / "demo-segresnet").manifest.model_card
    rc, report = _reproduce(tmp_path, PACKAGE_MODELS / "demo-segresnet", "--data-root", str(data))
    seg = report["demo-segresnet"]
    if not data.is_dir():
        assert "absent" in seg["skipped"] and rc == 0
        pytest.skip(f"{data} absent: the real-data part of the model card cannot be re-evaluated")
    checks = {c["metric"]: c for c in seg["checks"]}
    held_out = card["held_out_cases"]
    assert {m.split(".")[0] for m in checks if "." in m} == set(held_out)
    assert {"mean dice WT", "mean dice TC", "mean dice ET"} <= set(checks)
    assert [m for m, c in checks.items() if not c["agree"]] == []
    assert rc == 0
