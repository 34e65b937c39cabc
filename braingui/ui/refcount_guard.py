"""Work-around for a reference-count bug of PySide6 6.12 on CPython 3.11: make ``None``, ``True`` and
``False`` effectively immortal, as CPython 3.12+ does itself (PEP 683).

Measured here (PySide6-Essentials 6.12.0, Python 3.11.7): every call of a Qt method that returns
``void`` takes one reference from ``None`` without giving it back, and every ``Signal.emit()`` one from
``True`` (``tests/test_gui_refcount.py`` measures it). One slider step of this app costs ~300 references
of ``None``, so after a few hundred steps (or a long pytest-qt run, or interpreter exit) CPython
aborts with ``Fatal Python error: none_dealloc`` / ``bool_dealloc``.

These three objects are static singletons that are never freed, so raising their reference counts is
harmless: :func:`install` adds 2**40 to each, which no session can use up. It does nothing on CPython
3.12+ (immortal objects), on other Pythons, or when the object layout is not the expected one.
Remove this module when the pinned PySide6 is fixed (re-run the test above).
"""

from __future__ import annotations

import ctypes
import platform
import sys

BOOST = 1 << 40
_installed = False


def needed() -> bool:
    """True where the work-around applies: CPython before 3.12."""
    return platform.python_implementation() == "CPython" and sys.version_info < (3, 12)


def install() -> bool:
    """Raise the reference counts of ``None``, ``True``, ``False`` once; returns True if it did."""
    global _installed
    if _installed or not needed():
        return False
    for obj in (None, True, False):
        cell = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt is the first field of a PyObject
        if abs(cell.value - (sys.getrefcount(obj) - 1)) > 16:  # not the layout we expect: leave it alone
            return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += BOOST
    _installed = True
    return True
