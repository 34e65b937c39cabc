"""Errors and warnings the user sees.

Every refusal raises :class:`CaseError` (or another :class:`BrainguiError`) with a message that names
the file and the problem; the CLI and the GUI show ``str(error)`` and never a traceback.
"""

from __future__ import annotations

import os


class BrainguiError(Exception):
    """An error with a message meant for the user (no traceback shown)."""


class CaseError(BrainguiError):
    """A case folder or file cannot be used.

    Args:
        problem: what is wrong, in plain words.
        path: the file or folder concerned (named in the message).
    """

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        self.problem = problem
        self.path = os.fspath(path) if path is not None else None
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
