"""MONAI imported without the optional packages its networks do not need (issue 15: fixed costs)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_CHILD = r"""
import json, os, sys
import numpy as np
sys.path.insert(0, %r)
from braingui.inference.networks import LEAN_IMPORT_SKIPS, build_network, import_network_modules
import_network_modules()
skipped = [n for n in LEAN_IMPORT_SKIPS if n in sys.modules]
import torch
seg = build_network("SegResNet", {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "init_filters": 8})
cls = build_network("DenseNet", {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "init_features": 4,
                                 "growth_rate": 4, "block_config": [1, 1, 1, 1]}).eval()
with torch.no_grad():
    shapes = [list(seg(torch.zeros(1, 4, 16, 16, 16)).shape), list(cls(torch.zeros(1, 4, 32, 32, 32)).shape)]
from monai.data.utils import dense_patch_slices
import matplotlib.pyplot, pandas, skimage.morphology, scipy.signal  # still importable afterwards
print(json.dumps({"loaded_during": skipped, "shapes": shapes, "later": all(
    n in sys.modules for n in ("matplotlib.pyplot", "pandas", "skimage.morphology", "scipy.signal"))}))
"""


def _run(env_extra: dict) -> dict:
    import json
    import os

    env = {**os.environ, **env_extra}
    done = subprocess.run([sys.executable, "-c", _CHILD % str(ROOT)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_networks_build_and_run_without_the_left_out_packages_which_stay_importable():
    lean = _run({"BRAINGUI_FULL_MONAI_IMPORT": "0"})
    assert lean["loaded_during"] == []
    assert lean["shapes"] == [[1, 3, 16, 16, 16], [1, 3]]
    assert lean["later"]
    full = _run({"BRAINGUI_FULL_MONAI_IMPORT": "1"})  # MONAI as it is loads them (what the lean import saves)
    assert set(full["loaded_during"]) >= {"matplotlib", "scipy.signal"}
    assert full["shapes"] == lean["shapes"]


def test_the_skip_applies_to_the_importing_thread_only():
    from braingui.inference.networks import _SkipInThread

    finder = _SkipInThread(("matplotlib", "scipy.signal"), threading.get_ident())
    with pytest.raises(ModuleNotFoundError, match="left out"):
        finder.find_spec("matplotlib.pyplot")
    with pytest.raises(ModuleNotFoundError):
        finder.find_spec("scipy.signal")
    assert finder.find_spec("scipy.ndimage") is None  # not listed
    assert finder.find_spec("matplotlibx") is None  # a prefix only, not the package
    seen = []
    other = threading.Thread(target=lambda: seen.append(finder.find_spec("matplotlib.pyplot")))
    other.start()
    other.join()
    assert seen == [None]  # another thread imports it as usual


def test_the_selftest_fails_an_app_whose_monai_import_was_not_lean():
    """``--selftest``'s import check (also in the frozen app) names the packages a whole MONAI import loaded."""
    import json
    import os

    code = ("import json, sys; sys.path.insert(0, %r)\n"
            "from braingui.app.selftest import SelftestFailure, check_imports\n"
            "try:\n    d = check_imports({}); print(json.dumps(['passed', d['monai_lean_import']]))\n"
            "except SelftestFailure as exc:\n    print(json.dumps(['failed', str(exc)]))\n") % str(ROOT)
    said = {}
    for full in ("0", "1"):
        env = {**os.environ, "BRAINGUI_FULL_MONAI_IMPORT": full, "QT_QPA_PLATFORM": "offscreen"}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        said[full] = json.loads(done.stdout.strip().splitlines()[-1])
    assert said["0"] == ["passed", "ok"]
    assert said["1"][0] == "failed" and "lean import loaded" in said["1"][1] and "matplotlib" in said["1"][1]
