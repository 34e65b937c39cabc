"""One of each: the network names come from the registry, a manifest's spec is the preprocessing
policy (no mirror dataclass), MODALITIES is defined once, and training resolves devices like the app."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from braingui import discovery, phantom
from braingui.inference import manifest, networks
from braingui.inference.manifest import ClassificationSpec, SegmentationSpec, parse_manifest
from braingui.inference.predictor import DeviceError, resolve_device
from braingui.preprocess import ClassificationPrep, SegmentationPrep, prepare_classification
from inference_helpers import classification_manifest, segmentation_manifest


def test_network_names_and_the_manifest_checks_come_from_the_registry(monkeypatch):
    assert networks.NETWORK_NAMES == tuple(networks.NETWORKS)
    assert set(manifest.SEG_NETWORKS) | set(manifest.CLS_NETWORKS) == set(networks.NETWORKS)
    assert not set(manifest.SEG_NETWORKS) & set(manifest.CLS_NETWORKS)
    from monai.networks import nets

    for name in networks.NETWORK_NAMES:  # every registered name is a MONAI network class
        assert isinstance(getattr(nets, name), type) and issubclass(getattr(nets, name), torch.nn.Module)
    with pytest.raises(KeyError, match="unknown network 'UNet'"):
        networks.build_network("UNet", {})


def test_the_registry_and_the_manifest_checks_stay_torch_free():
    code = ("import sys; import braingui.inference.manifest, braingui.inference.networks; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'monai'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_manifest_spec_is_the_preprocessing_policy():
    seg_data = segmentation_manifest("s", "SegResNet", {"in_channels": 4, "out_channels": 3}, crop=[16, 16, 16])
    seg_data["weights"] = {"file": "w.pt", "sha256": "0" * 64}
    seg = parse_manifest(seg_data).segmentation
    assert isinstance(seg, SegmentationPrep)
    prep_fields = [f.name for f in dataclasses.fields(SegmentationPrep)]
    assert [f.name for f in dataclasses.fields(SegmentationSpec)][:len(prep_fields)] == prep_fields  # declared once
    assert seg.crop == (16, 16, 16) and seg.regions == ("TC", "WT", "ET")
    cls_data = classification_manifest("c", shape=(10, 12, 8))
    cls_data["weights"] = {"file": "w.pt", "sha256": "0" * 64}
    cls = parse_manifest(cls_data).classification
    assert isinstance(cls, ClassificationPrep) and isinstance(cls, ClassificationSpec)
    stack = torch.rand(4, 14, 16, 12).numpy()
    direct = prepare_classification(stack, ClassificationPrep(shape=(10, 12, 8)))
    via_spec = prepare_classification(stack, cls)
    assert (via_spec.array == direct.array).all() and via_spec.grid_map == direct.grid_map


def test_modalities_are_defined_once():
    assert phantom.MODALITIES is discovery.MODALITIES


def test_training_resolves_devices_with_the_app_resolver(monkeypatch):
    from training import common

    assert common.pick_device("cpu") == resolve_device("cpu") == torch.device("cpu")
    assert common.pick_device("auto") == resolve_device("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError):
        resolve_device("cuda")
    with pytest.raises(SystemExit, match="CUDA is not available"):  # one line for the script, no traceback
        common.pick_device("cuda")
