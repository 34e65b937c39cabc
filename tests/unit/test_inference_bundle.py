"""Model bundles: manifest validation, checked weight loading, fp16, SegResNetVAE -> SegResNet, the MONAI
model-zoo manifest of docs/model-bundles.md."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import sys
from pathlib import Path

import pytest
import torch

from braingui.errors import BrainguiError
from braingui.inference.bundle import load_network, load_state_dict, sha256_file, write_bundle
from braingui.inference.manifest import BundleError, read_bundle
from braingui.inference.networks import build_network
from inference_helpers import (RANDOM_KWARGS, make_tiny_classification_bundle, make_tiny_segmentation_bundle,  # noqa: F401
                               segmentation_manifest, single_torch_thread)

REPO = Path(__file__).resolve().parents[2]


def _replace_weights(folder: Path, data: bytes) -> None:
    """Put ``data`` in place of the weights file and update the manifest's sha256 to match (as an
    attacker or a careless exporter would)."""
    (folder / "weights.pt").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["weights"]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _load_error(folder: Path) -> str:
    with pytest.raises(BundleError) as info:
        load_network(read_bundle(folder))
    message = str(info.value)
    assert str(folder) in message, message  # names the bundle
    assert "\n" not in message
    return message


@pytest.fixture
def seg_bundle(tmp_path):
    return make_tiny_segmentation_bundle(tmp_path / "seg", rule="random", seed=3)


def test_write_bundle_round_trip(seg_bundle):
    bundle = read_bundle(seg_bundle)
    assert bundle.manifest.sha256 == sha256_file(seg_bundle / "weights.pt")
    assert bundle.manifest.weights_dtype == "float32"
    torch.manual_seed(3)
    reference = build_network("SegResNet", RANDOM_KWARGS).state_dict()
    loaded = load_network(bundle).state_dict()
    assert set(loaded) == set(reference)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    assert not [p for p in seg_bundle.iterdir() if p.name.startswith(".")]  # no temp files left


def test_bad_sha256(seg_bundle):
    with open(seg_bundle / "weights.pt", "ab") as fh:
        fh.write(b"\0")
    assert "sha256" in _load_error(seg_bundle)


def test_missing_weights_file(seg_bundle):
    (seg_bundle / "weights.pt").unlink()
    assert "not found" in _load_error(seg_bundle)


def test_missing_keys(seg_bundle):
    state = torch.load(seg_bundle / "weights.pt", weights_only=True)
    dropped = sorted(state)[:2]
    for k in dropped:
        del state[k]
    _replace_weights(seg_bundle, _saved(state))
    message = _load_error(seg_bundle)
    assert "2 missing key(s)" in message and dropped[0] in message


def test_unexpected_keys(seg_bundle):
    state = torch.load(seg_bundle / "weights.pt", weights_only=True)
    state["extra_head.weight"] = torch.zeros(3)
    _replace_weights(seg_bundle, _saved(state))
    message = _load_error(seg_bundle)
    assert "unexpected key" in message and "extra_head.weight" in message


def test_wrong_shapes(seg_bundle):
    state = torch.load(seg_bundle / "weights.pt", weights_only=True)
    state["convInit.conv.weight"] = torch.zeros(8, 4, 1, 1, 1)
    _replace_weights(seg_bundle, _saved(state))
    message = _load_error(seg_bundle)
    assert "wrong shape" in message and "convInit.conv.weight" in message


@pytest.mark.parametrize("payload, words", [
    ([torch.zeros(2)], "not a state dict"),
    (torch.zeros(2), "not a state dict"),
    ({"model": {"a": torch.zeros(1)}, "step": 3}, "training checkpoint"),
])
def test_not_a_state_dict(seg_bundle, payload, words):
    _replace_weights(seg_bundle, _saved(payload))
    assert words in _load_error(seg_bundle)


def test_not_a_torch_file(seg_bundle):
    _replace_weights(seg_bundle, b"this is not a weights file at all" * 10)
    message = _load_error(seg_bundle)
    assert "cannot be read" in message or "not a PyTorch" in message


class _Evil:
    """Pickles to a call of os.system that creates ``marker`` (with this Python, so it is portable)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'"{sys.executable}" -c "open(r\'{self.marker}\', \'w\').close()"',)


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_malicious_pickle_is_refused_and_does_not_run(seg_bundle, tmp_path, container):
    # The payload is real: plain pickle runs it.
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Evil(proof)))
    assert proof.exists()
    marker = tmp_path / "pwned"
    evil = {"convInit.conv.weight": _Evil(marker)}
    data = _saved(evil) if container == "torch.save" else pickle.dumps(evil, protocol=2)
    _replace_weights(seg_bundle, data)
    assert "refused" in _load_error(seg_bundle)
    assert not marker.exists()


def test_fp16_weights_load_as_fp32_with_equal_outputs(tmp_path):
    b32 = make_tiny_segmentation_bundle(tmp_path / "fp32", rule="random", seed=5)
    b16 = make_tiny_segmentation_bundle(tmp_path / "fp16", rule="random", seed=5, fp16=True)
    assert read_bundle(b16).manifest.weights_dtype == "float16"
    raw = torch.load(b16 / "weights.pt", weights_only=True)
    assert raw["convInit.conv.weight"].dtype == torch.float16
    assert (b16 / "weights.pt").stat().st_size < 0.7 * (b32 / "weights.pt").stat().st_size
    n32, n16 = load_network(read_bundle(b32)), load_network(read_bundle(b16))
    assert all(p.dtype == torch.float32 for p in n16.parameters())
    x = torch.randn(1, 4, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y32, y16 = torch.sigmoid(n32(x)), torch.sigmoid(n16(x))
    assert float((y32 - y16).abs().max()) < 1e-3
    assert not torch.equal(y32, y16)  # the weights really were rounded


def test_fp16_classifier_bundle(tmp_path):
    b = make_tiny_classification_bundle(tmp_path / "cls", fp16=True)
    net = load_network(read_bundle(b))
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_segresnetvae_loads_into_segresnet(tmp_path):
    folder = make_tiny_segmentation_bundle(tmp_path / "vae", rule="random", network="SegResNetVAE", seed=2)
    saved = torch.load(folder / "weights.pt", weights_only=True)
    assert any(k.startswith("vae_") for k in saved)
    net = load_network(read_bundle(folder))
    assert type(net).__name__ == "SegResNet"
    kwargs = dict(RANDOM_KWARGS, input_image_size=[16, 16, 16], vae_nz=8)
    vae = build_network("SegResNetVAE", kwargs)
    vae.load_state_dict(saved)
    vae.eval()
    x = torch.randn(1, 4, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, _ = vae(x)
        assert torch.allclose(net(x), expected, atol=1e-5)
    # A non-VAE leftover key is still refused.
    saved["not_vae.weight"] = torch.zeros(1)
    _replace_weights(folder, _saved(saved))
    assert "not_vae.weight" in _load_error(folder)


def test_write_bundle_refuses_weights_that_do_not_fit(tmp_path):
    manifest = segmentation_manifest("x", "SegResNet", RANDOM_KWARGS)
    state = build_network("SegResNet", dict(RANDOM_KWARGS, init_filters=16)).state_dict()
    with pytest.raises(BundleError, match="wrong shape"):
        write_bundle(tmp_path / "x", manifest, state)
    assert not (tmp_path / "x" / "manifest.json").exists()


@pytest.mark.parametrize("edit, words", [
    (lambda m: m.update(format_version=99), "newer"),
    (lambda m: m.update(colour="red"), "unknown key"),
    (lambda m: m["input"].update(channels=["flair", "t1", "t1ce", "pd"]), "unknown modality"),
    (lambda m: m["input"].update(channels=["flair", "t1", "t2"]), "in_channels"),
    (lambda m: m["output"].update(channels=["TC", "WT", "XX"]), "regions"),
    (lambda m: m["input"].update(crop=[30, 32, 32]), "multiple"),
    (lambda m: m["input"].update(sw_overlap=1.0), "sw_overlap"),
    (lambda m: m["network"].update(name="ResNet50"), "network.name"),
    (lambda m: m["weights"].update(sha256="abc"), "sha256"),
    (lambda m: m["weights"].update(file="../elsewhere.pt"), "plain file name"),
    (lambda m: m.update(task="detection"), "task"),
])
def test_invalid_manifest(seg_bundle, edit, words):
    manifest = json.loads((seg_bundle / "manifest.json").read_text())
    edit(manifest)
    (seg_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as info:
        read_bundle(seg_bundle)
    assert words in str(info.value) and str(seg_bundle) in str(info.value)
    assert isinstance(info.value, BrainguiError)


def test_manifest_not_json(seg_bundle):
    (seg_bundle / "manifest.json").write_text("{ not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_bundle(seg_bundle)


def test_monai_zoo_manifest_loads_and_runs(tmp_path):
    """The example manifest of docs/model-bundles.md + a plain ``model.pt`` of that exact architecture."""
    text = (REPO / "docs" / "model-bundles.md").read_text()
    block = re.search(r"```json\n(.*?)```", text, re.S).group(1)
    manifest = json.loads(block)
    assert manifest["input"]["channels"] == ["t1ce", "t1", "t2", "flair"]
    from monai.networks.nets import SegResNet

    torch.manual_seed(0)
    zoo = SegResNet(blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), init_filters=16, in_channels=4,
                    out_channels=3, dropout_prob=0.2)
    assert 4.5e6 < sum(p.numel() for p in zoo.parameters()) < 4.9e6  # the zoo's 4.7 M parameters
    folder = tmp_path / "monai-brats"
    folder.mkdir()
    torch.save(zoo.state_dict(), folder / "model.pt")  # what the zoo ships: a plain state dict
    manifest["weights"]["sha256"] = sha256_file(folder / "model.pt")  # what the user does: sha256sum
    (folder / "manifest.json").write_text(json.dumps(manifest))
    bundle = read_bundle(folder)
    assert bundle.manifest.segmentation.channels == ("t1ce", "t1", "t2", "flair")
    net = load_network(bundle)
    zoo.eval()
    x = torch.randn(1, 4, 32, 32, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(net(x), zoo(x), atol=1e-5)
    assert len(load_state_dict(bundle)) == len(zoo.state_dict())


def test_update_card_merges_into_the_card_and_leaves_the_weights(seg_bundle, tmp_path):
    """``python -m training.export_bundle --update-card BUNDLE --card CARD`` (the checkpoint may be gone)."""
    from training.export_bundle import main as export_main

    weights = (seg_bundle / "weights.pt").read_bytes()
    before = read_bundle(seg_bundle).manifest.model_card
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"comparison": {"WT": 0.5}, "limitations": "new text"}))
    assert export_main(["--update-card", str(seg_bundle), "--card", str(card)]) == 0
    after = read_bundle(seg_bundle).manifest.model_card
    assert after["comparison"] == {"WT": 0.5} and after["limitations"] == "new text"
    assert {k: v for k, v in after.items() if k not in ("comparison", "limitations")} == \
        {k: v for k, v in before.items() if k != "limitations"}
    assert (seg_bundle / "weights.pt").read_bytes() == weights
    load_network(read_bundle(seg_bundle))  # still loads, sha256 and all
    (seg_bundle / "weights.pt").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(SystemExit, match="do not match"):
        export_main(["--update-card", str(seg_bundle), "--card", str(card)])


def test_update_card_sets_the_default_heat_map_of_a_classifier_only(tmp_path, seg_bundle):
    """``--update-card BUNDLE --cam-method M``: the app's default map changes, the weights and the card stay;
    a segmentation bundle has no map to set; an unknown method is refused by the parser."""
    from training.export_bundle import main as export_main

    cls = make_tiny_classification_bundle(tmp_path / "cls")
    before = read_bundle(cls).manifest
    weights = (cls / "weights.pt").read_bytes()
    assert before.classification.cam_method != "hirescam-contrastive"
    assert export_main(["--update-card", str(cls), "--cam-method", "hirescam-contrastive"]) == 0
    after = read_bundle(cls).manifest
    assert after.classification.cam_method == "hirescam-contrastive"
    assert after.classification.cam_layer == before.classification.cam_layer
    assert after.model_card == before.model_card and (cls / "weights.pt").read_bytes() == weights
    with pytest.raises(SystemExit, match="segmentation bundle has no heat-map"):
        export_main(["--update-card", str(seg_bundle), "--cam-method", "hirescam"])
    with pytest.raises(SystemExit):
        export_main(["--update-card", str(cls), "--cam-method", "guided"])
    with pytest.raises(SystemExit):
        export_main(["--update-card", str(cls)])  # nothing to update
