"""Cancel inside a network pass, and one analysis computing at a time.

A network pass (a whole-volume SegResNet forward, a DenseNet backward) takes seconds on a CPU, longer
than a user waits for Cancel or for closing the window. :func:`interruptible` installs a forward
pre-hook on every module of the networks that raises the caller's exception as soon as the cancel
event is set, so a run stops within one layer's time (tens of milliseconds here) instead of at the end
of the pass. The hooks live only while the run computes and are removed afterwards, so the cached
networks of a :class:`~braingui.inference.predictor.Predictor` carry nothing between runs.

:func:`compute_slot` serialises runs that share a predictor: a new analysis waits (checking its own
cancel event) until a cancelled one has let go, so at most one computes at a time.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Callable, Iterable, Iterator

import torch

_SLOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""owner (a predictor) -> its lock; an owner that is garbage-collected takes its lock with it."""
_SLOTS_LOCK = threading.Lock()


@contextlib.contextmanager
def interruptible(networks: Iterable[torch.nn.Module], cancel: threading.Event | None,
                  error: Callable[[], BaseException]) -> Iterator[None]:
    """While inside, any module's forward raises ``error()`` once ``cancel`` is set.

    Args:
        networks: the networks the run uses (every submodule gets the hook).
        cancel: the run's cancel event; ``None`` installs nothing.
        error: makes the exception to raise (e.g. the pipeline's ``Cancelled``).
    """
    if cancel is None:
        yield
        return

    def hook(_module, _inputs):
        if cancel.is_set():
            raise error()

    handles = [m.register_forward_pre_hook(hook) for net in networks for m in net.modules()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def compute_slot(owner: object, cancel: threading.Event | None, error: Callable[[], BaseException],
                 poll_s: float = 0.05) -> Iterator[None]:
    """Hold the one compute slot of ``owner`` (a predictor; any object that takes weak references) while inside.

    Waits while another run holds it, checking ``cancel`` every ``poll_s`` seconds (raising ``error()``
    when it is set), so a new analysis starts only once the previous one has stopped.
    """
    with _SLOTS_LOCK:
        lock = _SLOTS.setdefault(owner, threading.Lock())
    while not lock.acquire(timeout=poll_s):
        if cancel is not None and cancel.is_set():
            raise error()
    try:
        yield
    finally:
        lock.release()


def slot_busy(owner: object) -> bool:
    """True while some run holds ``owner``'s compute slot."""
    with _SLOTS_LOCK:
        lock = _SLOTS.get(owner)
    return lock is not None and lock.locked()
