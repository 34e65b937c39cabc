"""The built-in demo case: a deterministic synthetic phantom (never a patient), generated on demand.

The full-size case is written once into the user cache folder (platformdirs) and reused.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
from pathlib import Path

from braingui.errors import BrainguiError

DEMO_CASE_ID = "SYNTHETIC_braingui_demo"
FULL = {"shape": (240, 240, 155), "spacing": (1.0, 1.0, 1.0)}
SMALL = {"shape": (96, 96, 64), "spacing": (2.5, 2.5, 2.5)}


def write_demo_case(folder: Path, small: bool = False, seed: int = 0) -> Path:
    """Write the demo case (BraTS 2018 names, LPS like real BraTS files) into ``folder``.

    Args:
        folder: a new or empty folder (created with its parents when missing).
        small: 96x96x64 at 2.5 mm instead of 240x240x155 at 1 mm.
        seed: the phantom's seed.

    Returns:
        ``folder``.

    Raises:
        BrainguiError: ``folder`` is a file or a folder that is not empty (nothing is overwritten), or
            the case cannot be written (a full disk, permissions: nothing of it stays behind).
    """
    from braingui.phantom import write_case

    folder = Path(folder).expanduser()
    try:
        if folder.exists() and not folder.is_dir():
            raise BrainguiError(f"{folder}: exists and is not a folder; give a new or empty folder for the demo case")
        if folder.is_dir() and any(folder.iterdir()):
            raise BrainguiError(f"{folder}: the folder is not empty; give a new or empty folder for the demo case "
                                "(nothing is overwritten)")
        created = not folder.exists()
        size = SMALL if small else FULL
        try:
            write_case(folder, case_id=DEMO_CASE_ID, shape=size["shape"], spacing=size["spacing"], seed=seed)
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # empty again: write_case removes what it wrote
            raise
    except OSError as exc:
        hint = "; free some space or choose another folder" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise BrainguiError(f"cannot write the demo case to {folder}: {exc.strerror or exc}{hint}") from None
    return folder


def demo_case_folder() -> Path:
    """The cached full-size demo case, generated on first use (atomically: temp folder + rename)."""
    from platformdirs import PlatformDirs

    from braingui import __version__

    cache = Path(PlatformDirs("braingui", appauthor=False).user_cache_dir)
    folder = cache / f"demo-case-{__version__}"
    if (folder / f"{DEMO_CASE_ID}_flair.nii.gz").exists():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=cache))
    try:
        write_demo_case(tmp / "case")
        if not folder.exists():
            (tmp / "case").rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
