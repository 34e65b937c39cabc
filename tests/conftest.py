"""Shared pytest set-up.

* ``tests/`` and ``tests/gui/`` on ``sys.path`` (for ``import helpers``, ``import gui_helpers``);
* ``BRAINGUI_BACKEND=torch`` and a throw-away ``BRAINGUI_CACHE_DIR`` for the whole run;
* markers by folder: every test under ``tests/unit/`` is marked ``unit`` (no Qt, no display), every
  test under ``tests/gui/`` ``gui`` (pytest-qt, ``QT_QPA_PLATFORM=offscreen``), so ``-m unit`` or
  ``-m "not gui"`` selects them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for _p in (_TESTS.parent, _TESTS, _TESTS / "gui"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

_FOLDER_MARKS = {"unit": pytest.mark.unit, "gui": pytest.mark.gui}


@pytest.fixture(autouse=True, scope="session")
def _torch_backend_and_own_cache(tmp_path_factory):
    """The suite runs the segmentation on torch (the OpenVINO backend has its own tests, which choose it)
    and keeps every cache (OpenVINO conversions, DICOM conversions) out of the user's cache folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BRAINGUI_BACKEND", "torch")
    mp.setenv("BRAINGUI_CACHE_DIR", str(tmp_path_factory.mktemp("braingui-cache")))
    yield
    mp.undo()


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            folder = Path(str(item.fspath)).resolve().relative_to(_TESTS).parts[0]
        except ValueError:
            continue
        mark = _FOLDER_MARKS.get(folder)
        if mark is not None:
            item.add_marker(mark)
