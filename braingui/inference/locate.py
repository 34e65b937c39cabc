"""Where model bundles are found (torch-free).

Locations, searched in this order; each is a folder of bundle folders (a folder that itself holds a
``manifest.json`` counts as a location with that one bundle):

1. ``--models DIR`` (command line; an error when the folder does not exist);
2. the ``BRAINGUI_MODELS`` environment variable;
3. the user data folder, ``PlatformDirs("braingui", appauthor=False).user_data_dir + "/models"``
   (``$XDG_DATA_HOME/braingui/models`` on Linux);
4. the bundles shipped inside the package, ``braingui/models/<bundle>/``
   (``BRAINGUI_BUNDLED_MODELS`` replaces this folder; tests and packaging use it).

Segmentation and classification are chosen independently: for each task the first location that holds
a bundle for it wins; inside one location bundles are taken in name order (a note says when there was
a choice). Locations after the point where both tasks are found are not read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from braingui.inference.manifest import MANIFEST_NAME, TASKS, Bundle, BundleError, read_bundle

ENV_MODELS = "BRAINGUI_MODELS"
ENV_BUNDLED = "BRAINGUI_BUNDLED_MODELS"
PACKAGE_MODELS = Path(__file__).resolve().parents[1] / "models"


@dataclass(frozen=True)
class Location:
    """One place searched: where it came from (``--models``, ``BRAINGUI_MODELS``, ...) and its folder."""

    source: str
    path: Path | None

    def describe(self) -> str:
        if self.path is None:
            return f"{self.source} (not set)"
        state = "" if self.path.is_dir() else " (missing)"
        return f"{self.source} {self.path}{state}"


@dataclass
class BundleSearch:
    """The outcome of a search: the chosen bundle per task and what was looked at.

    Attributes:
        segmentation, classification: the chosen bundles (``None`` when none was found).
        locations: every location considered, in order.
        notes: remarks for the user (skipped locations, several candidates).
    """

    segmentation: Bundle | None = None
    classification: Bundle | None = None
    locations: list[Location] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def get(self, task: str) -> Bundle | None:
        return self.segmentation if task == "segmentation" else self.classification

    def looked_in(self) -> str:
        """One line listing the locations, for messages."""
        return "; ".join(loc.describe() for loc in self.locations)

    def missing(self) -> list[str]:
        return [t for t in TASKS if self.get(t) is None]

    def require_any(self) -> None:
        """Raise :class:`BundleError` when no bundle was found for any task."""
        if self.segmentation is None and self.classification is None:
            raise BundleError(f"no model bundle found (looked in: {self.looked_in()}); put bundle folders "
                              f"there, pass --models DIR or set {ENV_MODELS}")


def user_models_dir() -> Path:
    """``<user data dir>/models`` (honours ``XDG_DATA_HOME`` on Linux)."""
    from platformdirs import PlatformDirs

    return Path(PlatformDirs("braingui", appauthor=False).user_data_dir) / "models"


def search_locations(models_dir: str | os.PathLike | None = None, environ: dict[str, str] | None = None,
                     package_dir: str | os.PathLike | None = None) -> list[Location]:
    """The locations in search order (see the module docstring)."""
    env = os.environ if environ is None else environ
    bundled = package_dir if package_dir is not None else env.get(ENV_BUNDLED) or PACKAGE_MODELS
    return [
        Location("--models", Path(models_dir).expanduser() if models_dir else None),
        Location(ENV_MODELS, Path(env[ENV_MODELS]).expanduser() if env.get(ENV_MODELS) else None),
        Location("user data folder", user_models_dir()),
        Location("bundled models", Path(bundled)),
    ]


def bundles_in(folder: Path) -> list[Bundle]:
    """Every bundle in a location folder, in name order (the folder itself if it is a bundle).

    Sub-folders without ``manifest.json`` are ignored; a broken manifest raises :class:`BundleError`
    (a user who put a bundle there should hear why it is not used).
    """
    if (folder / MANIFEST_NAME).is_file():
        return [read_bundle(folder)]
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise BundleError(f"cannot list the models folder ({exc.strerror or exc})", folder) from exc
    return [read_bundle(p) for p in entries if (p / MANIFEST_NAME).is_file()]


def find_bundles(models_dir: str | os.PathLike | None = None, environ: dict[str, str] | None = None,
                 package_dir: str | os.PathLike | None = None) -> BundleSearch:
    """Choose a segmentation and a classification bundle.

    Args:
        models_dir: the ``--models`` folder, if given.
        environ: environment to read (default ``os.environ``).
        package_dir: replaces the bundled-models folder (default ``braingui/models``).

    Raises:
        BundleError: ``--models`` does not exist, or a manifest in a searched location is broken.
    """
    locations = search_locations(models_dir, environ, package_dir)
    search = BundleSearch(locations=locations)
    if models_dir and not locations[0].path.is_dir():
        what = "is not a folder" if locations[0].path.exists() else "folder not found"
        raise BundleError(f"--models {what}", locations[0].path)
    for loc in locations:
        if not search.missing():
            break
        if loc.path is None:
            continue
        if not loc.path.is_dir():
            if loc.source == ENV_MODELS:
                search.notes.append(f"{ENV_MODELS} names a folder that does not exist: {loc.path}")
            continue
        found = bundles_in(loc.path)
        for task in search.missing():
            candidates = [b for b in found if b.task == task]
            if not candidates:
                continue
            chosen = candidates[0]
            setattr(search, task, chosen)
            if len(candidates) > 1:
                others = ", ".join(b.name for b in candidates[1:])
                search.notes.append(f"several {task} bundles in {loc.path}; using {chosen.name} (not {others})")
    return search
