"""Shared pytest set-up: the repository root and ``tests/`` on ``sys.path`` (for ``import helpers``)."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _p in (_TESTS.parent, _TESTS):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
