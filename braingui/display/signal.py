"""A small synchronous signal for the Qt-free display model (the same ``connect`` / ``emit`` API as Qt's).

The display state lives on the GUI thread and is changed only there, so callbacks run at once, in the
order they were connected, with no queue and no thread hop. Bound methods are held weakly, so a view
that was deleted does not keep receiving (nor keep its widget alive); plain functions and lambdas are
held strongly. A callback that raises does not stop the others: the first error is re-raised after
every callback ran. A Qt view whose C++ object was deleted (PySide raises "already deleted") is
dropped, as a Qt connection would be.

Why not psygnal: this is all the display model needs (about 40 lines), and it adds nothing to the
frozen app that PyInstaller would have to learn.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable


class Signal:
    """``signal.connect(callback)``, ``signal.disconnect(callback)``, ``signal.emit(*args)``."""

    def __init__(self) -> None:
        self._slots: list[Callable[[], Callable | None]] = []

    def connect(self, callback: Callable[..., Any]) -> None:
        """Call ``callback(*args)`` on every :meth:`emit` (once, however often it is connected)."""
        if self._find(callback) is not None:
            return
        if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
            ref = weakref.WeakMethod(callback)
        else:
            ref = (lambda cb=callback: cb)
        self._slots.append(ref)

    def disconnect(self, callback: Callable[..., Any] | None = None) -> None:
        """Stop calling ``callback`` (every callback when ``None``)."""
        if callback is None:
            self._slots.clear()
            return
        ref = self._find(callback)
        if ref is not None:
            self._slots.remove(ref)

    def emit(self, *args: Any) -> None:
        """Call every live callback with ``args``; dead weak references are dropped."""
        error: BaseException | None = None
        for ref in list(self._slots):
            callback = ref()
            if callback is None:
                self._slots.remove(ref)
                continue
            try:
                callback(*args)
            except RuntimeError as exc:
                if "already deleted" in str(exc):  # a Qt view whose C++ side is gone: it no longer listens
                    self._slots.remove(ref)
                    continue
                error = error or exc
            except Exception as exc:  # noqa: BLE001 - every view gets the change; the first error is raised after
                error = error or exc
        if error is not None:
            raise error

    def _find(self, callback: Callable[..., Any]):
        for ref in self._slots:
            if ref() == callback:
                return ref
        return None

    def __len__(self) -> int:
        return sum(1 for ref in self._slots if ref() is not None)
