"""Maps from the network's tail (the front run once): the same maps as whole passes, for other classes and for
the randomised copies of the sanity check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from braingui.inference.cam_methods import CamError, cam_layers, compute_cam, prefix, split_index, tail_cams, upsample
from braingui.inference.faithfulness import model_randomisation, randomisation_check, randomisation_layers
from inference_helpers import CLS_SHAPE, single_torch_thread, tiny_densenet  # noqa: F401 - autouse fixture


@pytest.fixture(scope="module")
def net_x():
    torch.manual_seed(1)
    return tiny_densenet(seed=3), torch.randn((1, 4) + CLS_SHAPE)


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "hirescam-contrastive", "layercam"])
def test_tail_maps_equal_whole_passes_at_every_layer(net_x, method):
    net, x = net_x
    for layer in cam_layers(net):
        start = split_index(net, layer)
        assert start == list(net.features._modules).index(layer.split(".")[1])
        logits, maps = tail_cams(net, prefix(net, x, start), start, layer, method, [0, 1, 2])
        for c, got in enumerate(maps):
            whole_logits, whole = compute_cam(net, x, method, layer, c)
            assert got.shape == whole.shape and got.dtype == np.float32
            np.testing.assert_allclose(got, whole, atol=1e-5)
            torch.testing.assert_close(logits, whole_logits, atol=1e-5, rtol=1e-5)
    assert any(p.grad is not None for p in net.parameters()) is False  # no weight gradients left behind


def test_split_index_cuts_before_what_changes_and_refuses_what_it_cannot_reason_about(net_x):
    net, _ = net_x
    names = list(net.features._modules)
    changed = randomisation_layers(net)
    assert changed == ("features.denseblock2", "class_layers.out")
    assert split_index(net, "features.denseblock1", changed) == names.index("denseblock1")
    assert split_index(net, "features.denseblock2", ("features.denseblock1",)) == names.index("denseblock1")
    assert split_index(net, "features.denseblock1", ("somewhere.else",)) is None
    assert split_index(net, "class_layers", ()) is None
    assert split_index(nn.Sequential(nn.Conv3d(4, 2, 1)), "0", ()) is None  # not a DenseNet
    with pytest.raises(CamError, match="no tail form"):
        tail_cams(net, prefix(net, torch.zeros((1, 4) + CLS_SHAPE), 4), 4, "features.denseblock1", "gradcam++", [0])
    with pytest.raises(CamError, match="not in the tail"):
        tail_cams(net, prefix(net, torch.zeros((1, 4) + CLS_SHAPE), 6), 6, "features.denseblock1", "gradcam", [0])


@pytest.mark.parametrize("method,layer", [("gradcam", "features.denseblock1"), ("layercam", "features.transition1"),
                                          ("hirescam-contrastive", "features.denseblock1")])
def test_the_sanity_check_from_the_tail_equals_whole_passes(net_x, method, layer):
    net, x = net_x
    brain = np.zeros(CLS_SHAPE, bool)
    brain[2:-2, 2:-2, 2:-2] = True
    reference = upsample(compute_cam(net, x, method, layer, 1)[1], CLS_SHAPE)
    assert np.ptp(reference[brain]) > 0
    fast = model_randomisation(net, x, brain, reference, 1, method, layer, seed=5, n_draws=2)
    slow = randomisation_check(net, brain, reference,
                               lambda n: upsample(compute_cam(n, x, method, layer, 1)[1], CLS_SHAPE), seed=5, n_draws=2)
    assert len(fast.draws) == 2
    np.testing.assert_allclose(fast.draws, slow.draws, atol=1e-4)
    assert fast.flag == slow.flag
    # a front shared from an earlier cut gives the same answer
    shared = model_randomisation(net, x, brain, reference, 1, method, layer, seed=5, n_draws=2,
                                 front=(4, prefix(net, x, 4)))
    np.testing.assert_allclose(shared.draws, fast.draws, atol=1e-5)
