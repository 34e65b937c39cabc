"""Give freed heap memory back to the operating system (glibc), so that RSS follows what is in use.

Each analysis runs in a new worker thread. glibc's allocator gives every thread that allocates its own
heap *arena* (up to 8 per core) and keeps the memory freed in an arena for reuse instead of returning
it: after an analysis has let go of its hundreds of megabytes of arrays, the process's resident size
stays where the peak was, and the next case in another thread's arena adds its own peak on top
(issue 14: about 150 MB more per case in one window while the headless pipeline, one thread, stayed
flat). Two calls of the C library, through :mod:`ctypes` (no dependency):

* :func:`limit_arenas` (``mallopt(M_ARENA_MAX, n)``), at start-up, bounds the number of arenas, so
  successive worker threads share and reuse the same memory;
* :func:`trim` (``malloc_trim(0)``), after a job has finished and its thread has been joined, returns
  the free pages of every arena to the system.

Both are no-ops that return ``False`` where the C library has no such function (macOS, Windows, musl).
``BRAINGUI_NO_MALLOC_TRIM=1`` switches both off (to measure what they change: bench/bench_gui_memory.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number of ``M_ARENA_MAX`` (malloc.h)."""
_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if sys.platform.startswith("linux") and os.environ.get("BRAINGUI_NO_MALLOC_TRIM") != "1":
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt"):
                    lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                    lib.mallopt.argtypes, lib.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                    _LIBC = lib
            except OSError:
                pass
    return _LIBC or None


def trim() -> bool:
    """Return the free memory of every heap arena to the system; True when the C library did it."""
    lib = _libc()
    return bool(lib is not None and lib.malloc_trim(0) >= 0)


def limit_arenas(n: int = 2) -> bool:
    """At most ``n`` heap arenas for this process's threads (call early, before the worker threads)."""
    lib = _libc()
    return bool(lib is not None and lib.mallopt(M_ARENA_MAX, int(n)) == 1)
