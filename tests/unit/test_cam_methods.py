"""CAM methods and layers (braingui.inference.cam_methods) against MONAI and against maps worked out by hand."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from braingui.inference.cam_methods import (METHODS, CamError, cam_layers, check_method, compute_cam, normalise,
                                            upsample)
from inference_helpers import DENSENET_KWARGS, single_torch_thread  # noqa: F401 - autouse fixture


def _densenet(block_config=(2, 2, 2), seed=0) -> nn.Module:
    from monai.networks.nets import DenseNet

    torch.manual_seed(seed)
    kwargs = {**DENSENET_KWARGS, "block_config": block_config}
    return DenseNet(**kwargs).eval()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


class Masked(nn.Module):
    """``y = fc(mean_v(M_v * A_v))`` with ``A = block(x)``: the logit's gradient at ``block`` is ``W_c M_v / N``.

    So Grad-CAM ~ ReLU(sum_k W_ck A_k) (spatially averaged weights), HiResCAM ~ ReLU(M * sum_k W_ck A_k),
    LayerCAM ~ ReLU(M * sum_k ReLU(W_ck) A_k): three different maps, each computable from ``A`` by hand.
    """

    def __init__(self, shape=(8, 8, 8)):
        super().__init__()
        torch.manual_seed(3)
        self.block = nn.Conv3d(4, 5, 3, padding=1)
        self.fc = nn.Linear(5, 2)
        m = torch.zeros(shape)
        m[: shape[0] // 2] = 1.0
        m[shape[0] // 2:, :, : shape[2] // 2] = 0.25
        self.register_buffer("m", m)

    def forward(self, x):
        return self.fc((self.block(x) * self.m).mean(dim=(2, 3, 4)))


def test_cam_layers_are_every_dense_block_and_transition_in_order():
    from monai.networks.nets import DenseNet169

    net = DenseNet169(spatial_dims=3, in_channels=4, out_channels=3)
    assert cam_layers(net) == ("features.denseblock1", "features.transition1", "features.denseblock2",
                               "features.transition2", "features.denseblock3", "features.transition3",
                               "features.denseblock4")
    assert cam_layers(Masked()) == ("block", "fc")  # another network: its top-level children


def test_bad_method_and_layer_names_list_the_valid_ones():
    net = _densenet((2, 2))
    x = torch.randn(1, 4, 16, 16, 16)
    with pytest.raises(CamError, match=r"unknown CAM method 'gradcam\+\+\+' \(choose one of: gradcam, "
                                       r"gradcam\+\+, hirescam, hirescam-contrastive, layercam\)"):
        compute_cam(net, x, "gradcam+++", "features.denseblock1")
    with pytest.raises(CamError, match=r"unknown CAM layer 'features.denseblock3' \(choose one of: "
                                       r"features.denseblock1, features.transition1, features.denseblock2\)"):
        compute_cam(net, x, "gradcam", "features.denseblock3")
    assert check_method("layercam") == "layercam"
    with pytest.raises(CamError, match="no 3D feature map"):
        compute_cam(Masked(), torch.randn(1, 4, 8, 8, 8), "hirescam", "fc")
    with pytest.raises(CamError, match="out of range"):
        compute_cam(net, x, "hirescam", "features.denseblock1", class_index=3)
    with pytest.raises(CamError, match="out of range"):
        compute_cam(net, x, "gradcam", "features.denseblock1", class_index=-1)
    with pytest.raises(CamError, match=r"\(1, C, X, Y, Z\)"):
        compute_cam(net, x[0], "gradcam", "features.denseblock1")


@pytest.mark.parametrize("layer", ["features.denseblock1", "features.transition1", "features.denseblock2"])
def test_gradcam_and_gradcampp_agree_with_monai(layer):
    from monai.visualize import GradCAM, GradCAMpp

    net = _densenet()
    x = torch.randn(1, 4, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    for method, monai_cls in (("gradcam", GradCAM), ("gradcam++", GradCAMpp)):
        logits, cam = compute_cam(net, x, method, layer, class_index=2)
        # MONAI's hooks stay on the module: give it its own copy; its default post-processing inverts
        ref = monai_cls(copy.deepcopy(net), layer, postprocessing=lambda a: a).compute_map(x, class_idx=2)
        ref = ref[0, 0].detach().numpy()
        assert cam.shape == ref.shape and cam.dtype == np.float32
        assert cam.min() == 0.0 and cam.max() == pytest.approx(1.0)
        assert _corr(cam, ref) > 0.99, method
        with torch.no_grad():
            assert torch.allclose(logits, net(x), atol=1e-5)


def test_hirescam_and_layercam_against_hand_computed_maps_and_gradcam_where_they_differ():
    net = Masked().eval()
    x = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        act = net.block(x)[0]
    w = net.fc.weight[1].detach()
    s = (w[:, None, None, None] * act).sum(0)
    expected = {"gradcam": normalise(s), "hirescam": normalise(net.m * s),
                "layercam": normalise(net.m * (w.clamp(min=0)[:, None, None, None] * act).sum(0))}
    maps = {m: compute_cam(net, x, m, "block", class_index=1)[1] for m in ("gradcam", "hirescam", "layercam")}
    for method, cam in maps.items():
        np.testing.assert_allclose(cam, expected[method], atol=1e-5, err_msg=method)
    # where the gradient varies in space, HiResCAM is not Grad-CAM: the zero-weighted half shows no heat
    assert np.all(maps["hirescam"][4:, :, 4:] == 0) and maps["gradcam"][4:, :, 4:].max() > 0.2
    assert _corr(maps["hirescam"], maps["gradcam"]) < 0.9


def test_contrastive_hirescam_weighs_the_activation_by_the_log_softmax_gradient():
    """HiResCAM of ``log p_c``: the gradient at the layer is ``M (W_c - sum_j p_j W_j) / N``, worked out by hand."""
    net = Masked().eval()
    x = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        act = net.block(x)[0]
        p = torch.softmax(net(x).double(), 1)[0].float()
    w = net.fc.weight.detach()
    for c in (0, 1):
        wc = w[c] - (p[:, None] * w).sum(0)
        expected = normalise(net.m * (wc[:, None, None, None] * act).sum(0))
        _, cam = compute_cam(net, x, "hirescam-contrastive", "block", class_index=c)
        np.testing.assert_allclose(cam, expected, atol=1e-5, err_msg=str(c))
        assert _corr(cam, compute_cam(net, x, "hirescam", "block", class_index=c)[1]) < 0.99


def test_contrastive_hirescam_cancels_evidence_that_every_class_shares():
    """Features that raise every logit alike explain no class against another: the contrastive map is empty
    where the plain HiResCAM is not; and a confident call (p near 1 in float32) still gets a map."""
    net = Masked().eval()
    with torch.no_grad():
        net.fc.weight[1] = net.fc.weight[0]
    x = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(6))
    assert compute_cam(net, x, "hirescam", "block", class_index=0)[1].max() == pytest.approx(1.0)
    assert compute_cam(net, x, "hirescam-contrastive", "block", class_index=0)[1].max() == 0.0
    with torch.no_grad():
        net.fc.weight[1] = -net.fc.weight[0]
        net.fc.bias[0] += 200.0  # logits 200 apart: p = 1 and log p = 0 in floating point, its gradient 0
        p = torch.softmax(net(x), 1)[0]
        assert float(p[0]) == 1.0 and float(p[1]) == 0.0
    _, cam = compute_cam(net, x, "hirescam-contrastive", "block", class_index=0)
    np.testing.assert_allclose(cam, compute_cam(net, x, "hirescam", "block", class_index=0)[1], atol=1e-5)


def test_hirescam_equals_gradcam_when_the_gradient_is_spatially_constant():
    net = Masked().eval()
    net.m.fill_(1.0)  # now y = fc(GAP(A)): dy/dA is the same at every voxel
    x = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(4))
    _, grad_cam = compute_cam(net, x, "gradcam", "block", 0)
    _, hires = compute_cam(net, x, "hirescam", "block", 0)
    np.testing.assert_allclose(hires, grad_cam, atol=1e-5)


def test_every_method_on_every_layer_gives_a_map_on_the_layers_grid():
    net = _densenet((2, 2))
    x = torch.randn(1, 4, 16, 16, 16, generator=torch.Generator().manual_seed(5))
    grids = {"features.denseblock1": (4, 4, 4), "features.transition1": (2, 2, 2), "features.denseblock2": (2, 2, 2)}
    for layer in cam_layers(net):
        for method in METHODS:
            _, cam = compute_cam(net, x, method, layer)
            assert cam.shape == grids[layer] and cam.dtype == np.float32, (method, layer)
            assert 0.0 <= cam.min() and cam.max() <= 1.0


def test_gradients_frozen_weights_no_grad_inference_mode_and_the_networks_state():
    net = _densenet((2, 2))
    x = torch.randn(1, 4, 16, 16, 16, generator=torch.Generator().manual_seed(6))
    _, ref = compute_cam(net, x, "gradcam", "features.denseblock1", 1)
    with torch.no_grad():  # medcam switches grad on itself; so does the own code
        for method in METHODS:
            _, cam = compute_cam(net, x, method, "features.denseblock1", 1)
            assert cam.shape == ref.shape
    with torch.inference_mode(), pytest.raises(CamError, match="inference_mode"):
        compute_cam(net, x, "hirescam", "features.denseblock1", 1)
    frozen = copy.deepcopy(net)
    for p in frozen.parameters():
        p.requires_grad_(False)
    for method in ("gradcam", "hirescam"):
        np.testing.assert_allclose(compute_cam(frozen, x, method, "features.denseblock1", 1)[1],
                                   compute_cam(net, x, method, "features.denseblock1", 1)[1], atol=1e-5)
    np.testing.assert_allclose(compute_cam(frozen, x, "gradcam", "features.denseblock1", 1)[1], ref, atol=1e-5)
    net.train()
    compute_cam(net, x, "gradcam", "features.denseblock1", 1)
    assert net.training and all(m.training for m in net.modules())  # mode restored
    assert all(p.grad is None for p in net.parameters())  # medcam's weight gradients cleared
    assert not x.requires_grad
    with pytest.raises(CamError, match="medcam could not compute a map"):  # the forward fails (3 channels) ...
        compute_cam(net, x[:, :3], "gradcam", "features.denseblock1")
    assert not any(m._forward_hooks or m._backward_hooks for m in net.modules())  # ... and leaves no hook


def test_upsample_is_trilinear_like_medcam_and_keeps_the_range():
    from medcam import medcam_utils

    rng = np.random.default_rng(0)
    cam = rng.random((3, 4, 3)).astype(np.float32)
    up = upsample(cam, (12, 16, 12))
    assert up.shape == (12, 16, 12) and up.dtype == np.float32
    np.testing.assert_allclose(up, medcam_utils.interpolate(cam, (12, 16, 12), squeeze=True), atol=1e-6)
    assert up.min() >= cam.min() - 1e-6 and up.max() <= cam.max() + 1e-6
    np.testing.assert_array_equal(upsample(cam, (3, 4, 3)), cam)
    np.testing.assert_allclose(upsample(np.full((2, 2, 2), 0.3, np.float32), (5, 7, 3)), 0.3, atol=1e-6)
    hot = np.zeros((4, 4, 4), np.float32)
    hot[0, 0, 0] = 1.0
    big = upsample(hot, (16, 16, 16))
    assert np.unravel_index(np.argmax(big), big.shape) == (0, 0, 0) and big[8:, 8:, 8:].max() == 0
    with pytest.raises(ValueError, match="3D"):
        upsample(cam[0], (4, 4))
