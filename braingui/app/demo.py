"""The built-in demo case: a deterministic synthetic phantom (never a patient), generated on demand.

The full-size case is written once into the user cache folder (platformdirs) and reused.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

DEMO_CASE_ID = "SYNTHETIC_braingui_demo"
FULL = {"shape": (240, 240, 155), "spacing": (1.0, 1.0, 1.0)}
SMALL = {"shape": (96, 96, 64), "spacing": (2.5, 2.5, 2.5)}


def write_demo_case(folder: Path, small: bool = False, seed: int = 0) -> Path:
    """Write the demo case (BraTS 2018 names, LPS like real BraTS files) into ``folder``."""
    from braingui.phantom import write_case

    size = SMALL if small else FULL
    write_case(folder, case_id=DEMO_CASE_ID, shape=size["shape"], spacing=size["spacing"], seed=seed)
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
