"""Cancel inside a network pass, and one run computing at a time (braingui.inference.interrupt)."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from braingui.inference.interrupt import compute_slot, interruptible, slot_busy


class Stop(Exception):
    pass


class Slow(torch.nn.Module):
    """Ten layers, each sleeping; sets ``at_layer`` so a test can cancel mid-pass."""

    def __init__(self, on_layer=None):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(10))
        self.on_layer, self.ran = on_layer, 0

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            self.ran = i + 1
            if self.on_layer:
                self.on_layer(i)
            x = layer(x)
        return x


def test_a_set_event_stops_the_pass_at_the_next_layer_and_the_hooks_go_afterwards():
    cancel = threading.Event()
    net = Slow(on_layer=lambda i: cancel.set() if i == 3 else None)
    with pytest.raises(Stop), interruptible([net], cancel, Stop):
        net(torch.zeros(1, 4))
    assert net.ran == 4  # layer 4 (index 3) set the event; layer 5's pre-hook raised before it ran
    assert all(not m._forward_pre_hooks for m in net.modules())
    net.on_layer = None
    net(torch.zeros(1, 4))  # the cached network carries nothing into the next run
    assert net.ran == 10


def test_without_a_set_event_the_output_is_unchanged():
    net = Slow()
    x = torch.randn(2, 4)
    expect = net(x)
    with interruptible([net], threading.Event(), Stop):
        assert torch.equal(net(x), expect)


def test_a_second_run_waits_until_the_first_lets_go_and_a_cancelled_waiter_gives_up():
    class Owner:
        pass

    owner = Owner()
    order = []
    release = threading.Event()

    def first():
        with compute_slot(owner, None, Stop):
            order.append("first in")
            release.wait(5)
            order.append("first out")

    t = threading.Thread(target=first)
    t.start()
    while not slot_busy(owner):
        time.sleep(0.005)
    cancel = threading.Event()
    cancel.set()
    t0 = time.perf_counter()
    with pytest.raises(Stop):
        with compute_slot(owner, cancel, Stop, poll_s=0.01):
            pass
    assert time.perf_counter() - t0 < 1.0
    def second():
        with compute_slot(owner, None, Stop):
            order.append("second in")

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.1)
    assert order == ["first in"]  # the second run is still waiting
    release.set()
    t.join(5)
    waiter.join(5)
    assert order == ["first in", "first out", "second in"] and not slot_busy(owner)
