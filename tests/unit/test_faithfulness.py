"""Faithfulness checks (braingui.inference.faithfulness) on hand-built networks with known answers, and the
model-randomisation sanity check on a map that ignores the weights and on a trained toy network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from braingui.explanation import brain_mask
from braingui.inference.cam_methods import compute_cam, upsample
from braingui.inference.faithfulness import (DELETION_FRACTIONS, classify, deletion_curve, deletion_order,
                                             model_randomisation, quick_checks, randomisation_check,
                                             randomisation_layers, randomised_copy, reinitialise,
                                             sequence_ablation, tumour_occlusion)
from inference_helpers import DENSENET_KWARGS, single_torch_thread  # noqa: F401 - autouse fixture

CHANNELS = ("flair", "t1", "t1ce", "t2")
SHAPE = (16, 16, 16)


def _softmax(*logits: float) -> np.ndarray:
    e = np.exp(np.array(logits) - max(logits))
    return e / e.sum()


def _case():
    """A 16^3 input: brain = the inner 12^3 (1728 voxels), WT = a 4^3 cube (64 voxels).

    Channel 0 is 3.0 in WT and 0.5 in the rest of the brain; channel 2 is 2.0 in a separate 2^3 cube and -0.5
    elsewhere in the brain; channels 1 and 3 are 0.1 in the brain. The background is 0 everywhere.
    """
    brain = np.zeros(SHAPE, bool)
    brain[2:14, 2:14, 2:14] = True
    wt = np.zeros(SHAPE, bool)
    wt[4:8, 4:8, 4:8] = True
    spot = np.zeros(SHAPE, bool)
    spot[10:12, 10:12, 10:12] = True
    x = np.zeros((4,) + SHAPE, np.float32)
    x[0][brain] = 0.5
    x[0][wt] = 3.0
    x[2][brain] = -0.5
    x[2][spot] = 2.0
    x[[1, 3]] = np.where(brain, 0.1, 0.0)
    return torch.from_numpy(x)[None], wt, brain


class RegionNet(nn.Module):
    """Logits ``[1.5, 2 * mean of channel 0 over WT]``: the call rests on the tumour region of one channel."""

    def __init__(self, wt: np.ndarray):
        super().__init__()
        self.register_buffer("r", torch.from_numpy(wt).float())

    def forward(self, x):
        region = (x[:, 0] * self.r).sum(dim=(1, 2, 3)) / self.r.sum()
        return torch.stack([torch.full_like(region, 1.5), 2.0 * region], dim=1)


class ChannelNet(nn.Module):
    """Logits ``[0.2, 0.5 * sum ReLU(channel 2 - 1)]``: the call rests on bright voxels of channel 2 only."""

    def forward(self, x):
        s = F.relu(x[:, 2] - 1.0).sum(dim=(1, 2, 3))
        return torch.stack([torch.full_like(s, 0.2), 0.5 * s], dim=1)


def test_brain_mask_of_the_input_is_the_brain():
    x, _, brain = _case()
    np.testing.assert_array_equal(brain_mask(x[0].numpy()), brain)


def test_tumour_occlusion_changes_the_call_of_a_network_that_reads_the_tumour():
    x, wt, brain = _case()
    net = RegionNet(wt)
    np.testing.assert_allclose(classify(net, x)[0], _softmax(1.5, 6.0))  # class 1 with the tumour
    occ = tumour_occlusion(net, x, wt, brain)
    # WT of channel 0 becomes the mean of the other brain voxels of channel 0: 0.5 -> logits [1.5, 1.0]
    assert occ.class_index == 0
    np.testing.assert_allclose(occ.probabilities, _softmax(1.5, 1.0), rtol=1e-6)
    with pytest.raises(ValueError, match="mask shape"):
        tumour_occlusion(net, x, wt[:8], brain)


def test_sequence_ablation_finds_the_one_sequence_the_network_uses():
    x, wt, brain = _case()
    net = ChannelNet()
    base = _softmax(0.2, 0.5 * 8)[1]  # 8 voxels of channel 2 at 2.0
    abl = sequence_ablation(net, x, brain, CHANNELS, class_index=1)
    assert abl.baseline == pytest.approx(base)
    changes = abl.changes
    # channel 2's brain voxels become its brain mean, (8 * 2 - 1720 * 0.5) / 1728 < 1: the evidence is gone
    assert changes["t1ce"] == pytest.approx(_softmax(0.2, 0.0)[1] - base)
    for name in ("flair", "t1", "t2"):
        assert changes[name] == pytest.approx(0.0, abs=1e-9)
    # the region network: only channel 0 (flair) matters; its brain mean is (64 * 3 + 1664 * 0.5) / 1728
    region = RegionNet(wt)
    abl = sequence_ablation(region, x, brain, CHANNELS, class_index=1, baseline=_softmax(1.5, 6.0)[1])
    mean0 = (64 * 3.0 + 1664 * 0.5) / 1728
    assert abl.changes["flair"] == pytest.approx(_softmax(1.5, 2 * mean0)[1] - _softmax(1.5, 6.0)[1], rel=1e-5)
    assert max(abs(abl.changes[k]) for k in ("t1", "t1ce", "t2")) < 1e-6
    with pytest.raises(ValueError, match="channel names"):
        sequence_ablation(net, x, brain, CHANNELS[:3], 1)


def test_quick_checks_in_one_batch_equal_the_single_checks_on_a_densenet():
    from monai.networks.nets import DenseNet

    torch.manual_seed(0)
    net = DenseNet(**DENSENET_KWARGS).eval()
    x, wt, brain = _case()
    x = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * torch.from_numpy(brain)
    p = classify(net, x)[0]
    c = int(np.argmax(p))
    occ, abl = quick_checks(net, x, wt, brain, CHANNELS, c, baseline=float(p[c]), batch_size=3)
    single_occ = tumour_occlusion(net, x, wt, brain)
    single_abl = sequence_ablation(net, x, brain, CHANNELS, c)
    assert occ.class_index == single_occ.class_index
    np.testing.assert_allclose(occ.probabilities, single_occ.probabilities, atol=1e-5)
    for name in CHANNELS:
        assert abl.changes[name] == pytest.approx(single_abl.changes[name], abs=1e-5)
    assert abl.baseline == pytest.approx(single_abl.baseline, abs=1e-6)


def test_deletion_curve_of_a_map_on_the_evidence_beats_random_voxels():
    x, wt, brain = _case()
    net = RegionNet(wt)
    base = _softmax(1.5, 6.0)[1]
    good = np.where(wt, 1.0, 0.0).astype(np.float32)
    curve = deletion_curve(net, x, good, brain, class_index=1, fractions=DELETION_FRACTIONS, n_random=3)
    np.testing.assert_allclose(curve.fractions, (0, 0.05, 0.1, 0.2, 0.4))
    assert curve.map_probs[0] == pytest.approx(base) and curve.random_probs.shape == (3, 5)
    # 5 % of the brain = 86 voxels >= the 64 WT voxels: all of WT (channel 0) becomes the brain mean
    mean0 = (64 * 3.0 + 1664 * 0.5) / 1728
    np.testing.assert_allclose(curve.map_probs[1:], _softmax(1.5, 2 * mean0)[1], rtol=1e-5)
    # random voxels hit the tumour in proportion: at 40 % about 40 % of WT is replaced, far less drop
    assert np.all(curve.random_probs[:, 1] > curve.map_probs[1] + 0.3)
    areas = curve.areas()
    assert areas.gain > 0.2 and areas.map_auc < areas.random_auc
    # a map that points away from the evidence: deleting it leaves the call as it was (gain < 0)
    away = deletion_curve(net, x, np.where(wt, 0.0, 1.0).astype(np.float32), brain, 1, baseline=base)
    assert np.all(away.map_probs[1:] > base - 1e-3)
    assert away.areas().gain < 0


def test_deletion_breaks_ties_at_random_and_counts_forwards():
    _, _, brain = _case()
    order = deletion_order(np.zeros(SHAPE), brain, np.random.default_rng(0))
    assert sorted(order.tolist()) == np.flatnonzero(brain).tolist()
    assert not np.all(np.diff(order) > 0)  # not the spatial order
    heat = np.zeros(SHAPE)
    heat[5, 5, 5], heat[6, 6, 6] = 1.0, 0.5
    order = deletion_order(heat, brain, np.random.default_rng(0))
    assert order[:2].tolist() == [np.ravel_multi_index((5, 5, 5), SHAPE), np.ravel_multi_index((6, 6, 6), SHAPE)]

    calls = []

    class Counting(ChannelNet):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    x, _, _ = _case()
    deletion_curve(Counting(), x, heat.astype(np.float32), brain, 1, baseline=0.5, n_random=1, batch_size=3)
    assert sum(calls) == 8 and max(calls) == 3  # 4 fractions x (map + 1 random draw), batches of 3


def test_randomised_copy_reinitialises_only_the_named_layers_and_is_seeded():
    from monai.networks.nets import DenseNet

    torch.manual_seed(0)
    net = DenseNet(**DENSENET_KWARGS).eval()
    assert randomisation_layers(net) == ("features.denseblock2", "class_layers.out")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a = randomised_copy(net, randomisation_layers(net), seed=1)
    b = randomised_copy(net, randomisation_layers(net), seed=1)
    c = randomised_copy(net, randomisation_layers(net), seed=2)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
        changed = not torch.equal(a.state_dict()[k], v)
        inside = k.startswith(("features.denseblock2.", "class_layers.out."))
        if k.endswith(("weight", "bias")) and "norm" not in k and inside:
            assert changed, k
        if not inside:
            assert not changed, k
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])
    assert not torch.equal(a.class_layers.out.weight, c.class_layers.out.weight)
    reinitialise(c, randomisation_layers(net), seed=1)  # re-drawing in place gives the fresh copy's weights
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in c.state_dict().items())
    with pytest.raises(ValueError, match="no module"):
        randomised_copy(net, ["features.nothing"])


def test_the_randomisation_flag_fires_for_a_map_that_ignores_the_weights():
    x, wt, brain = _case()
    x = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3)) * torch.from_numpy(brain)
    net = nn.Sequential(nn.Conv3d(4, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                        nn.Linear(2, 2))

    def intensity(_network):  # an "explanation" that is the image itself, whatever the weights
        return x[0].abs().sum(0).numpy()

    r = randomisation_check(net, brain, intensity(net), intensity, layers=["0", "4"], n_draws=2)
    assert r.spearman == pytest.approx(1.0) and r.flag and len(r.draws) == 2
    # and a constant real map makes the check undefined, not passed or failed
    r = randomisation_check(net, brain, np.ones(SHAPE), intensity, layers=["4"])
    assert math.isnan(r.spearman) and not r.flag


class Toy(nn.Module):
    """A tiny 3D conv net: stem, two blocks, global max pooling, a linear layer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv3d(8, 8, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv3d(8, 8, 3, padding=1, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.pool(self.block2(self.block1(self.stem(x)))).flatten(1))


def _blobs(rng: np.random.Generator, n: int):
    """Noise (sd 1); class 1 has a 5^3 cube raised by 1.5 at a random place: the class depends on a region."""
    x = rng.normal(0, 1.0, (n, 1) + SHAPE).astype(np.float32)
    y = rng.integers(0, 2, n)
    masks = np.zeros((n,) + SHAPE, bool)
    for i in range(n):
        c = rng.integers(2, 9, 3)
        masks[i, c[0]:c[0] + 5, c[1]:c[1] + 5, c[2]:c[2] + 5] = True
        x[i, 0][masks[i]] += 1.5 * y[i]
    return torch.from_numpy(x), torch.from_numpy(y), masks


def test_the_randomisation_flag_stays_down_for_a_trained_toy_network():
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    net = Toy()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(60):
        xb, yb, _ = _blobs(rng, 8)
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    xt, yt, masks = _blobs(np.random.default_rng(100), 16)
    with torch.no_grad():
        assert (net(xt).argmax(1) == yt).float().mean() >= 0.9  # it learnt the task
    brain = np.ones(SHAPE, bool)
    i = int(np.flatnonzero(yt.numpy() == 1)[0])
    x = xt[i:i + 1]
    cam = upsample(compute_cam(net, x, "gradcam", "block2", 1)[1], SHAPE)
    assert cam[masks[i]].mean() > 5 * cam[~masks[i]].mean()  # the trained map finds the cube
    r = model_randomisation(net, x, brain, cam, class_index=1, method="gradcam", layer="block2",
                            layers=("block2", "fc"), n_draws=3)
    assert not r.flag and r.spearman < 0.35, r
