"""The user log folder: tracebacks the user is not shown go there, and the message names the file.

``PlatformDirs("braingui", appauthor=False).user_log_dir`` (``$XDG_STATE_HOME/braingui/log`` or
``~/.local/state/braingui/log`` on Linux, ``~/Library/Logs/braingui`` on macOS,
``%LOCALAPPDATA%\\braingui\\Logs`` on Windows).
"""

from __future__ import annotations

from pathlib import Path


def log_dir() -> Path:
    """The folder that holds the log files (not created here)."""
    from platformdirs import PlatformDirs

    return Path(PlatformDirs("braingui", appauthor=False).user_log_dir)


def log_traceback(text: str, name: str) -> Path | None:
    """Append ``text`` (a formatted traceback) and a blank line to the log file ``name``.

    Args:
        text: what to keep, e.g. ``traceback.format_exc()``.
        name: the file in :func:`log_dir`, e.g. ``"crash.log"``.

    Returns:
        The log file, or ``None`` when it could not be written (logging never masks the error being
        reported).
    """
    try:
        path = log_dir() / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
        return path
    except Exception:  # noqa: BLE001 - logging must never mask the original error
        return None
