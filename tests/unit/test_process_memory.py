"""braingui.process_memory: freed heap memory of a finished worker thread goes back to the system."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = r"""
import threading
from braingui import process_memory

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

keep = []
def work():  # ~300 MB of small blocks in a thread's own arena; every 200th stays alive (fragmentation)
    blocks = [bytes(2000) for _ in range(150_000)]
    keep.extend(blocks[::200])
    del blocks

thread = threading.Thread(target=work)
thread.start(); thread.join()
before = rss_mb()
done = process_memory.trim()
print(before, rss_mb(), done, process_memory.limit_arenas(2))
"""


def _run(env_extra: dict[str, str]) -> tuple[float, float, bool, bool]:
    env = {k: v for k, v in os.environ.items() if k != "BRAINGUI_NO_MALLOC_TRIM"}
    env.update(PYTHONPATH=str(ROOT), **env_extra)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True,
                         timeout=120).stdout.split()
    return float(out[0]), float(out[1]), out[2] == "True", out[3] == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists("/proc/self/status"),
                    reason="glibc / procfs only")
def test_trim_returns_a_finished_threads_free_memory():
    before, after, done, limited = _run({})
    if not done:
        pytest.skip("this C library has no malloc_trim (not glibc)")
    assert limited
    assert before > 200 and after < before - 200  # the ~300 MB freed in the thread left the process


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_switch_off():
    before, after, done, limited = _run({"BRAINGUI_NO_MALLOC_TRIM": "1"})
    assert not done and not limited and after > before - 50
