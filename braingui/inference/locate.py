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

A bundle that cannot be used (a broken or hostile manifest, a missing weights file, weights whose
sha256 differs from the manifest's) is skipped with a warning (:attr:`BundleSearch.skipped`, also in
``notes``, which the analysis carries into its warnings) and never spoils the others. Two exceptions,
where the user named the place: ``--models`` naming a bundle folder that is broken is an error, and
``--models`` holding no usable bundle at all ends the search there (nothing found, with the reason)
instead of falling back silently to the other locations.
"""

from __future__ import annotations

import hashlib
import os
import threading
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
        notes: remarks for the user (skipped locations and bundles, several candidates).
        skipped: one line per bundle that could not be used (naming the bundle and the problem).
        models_empty: why ``--models`` gave no bundle (the search then stopped), else ``None``.
    """

    segmentation: Bundle | None = None
    classification: Bundle | None = None
    locations: list[Location] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    models_empty: str | None = None

    def get(self, task: str) -> Bundle | None:
        return self.segmentation if task == "segmentation" else self.classification

    def looked_in(self) -> str:
        """One line listing the locations, for messages."""
        return "; ".join(loc.describe() for loc in self.locations)

    def missing(self) -> list[str]:
        return [t for t in TASKS if self.get(t) is None]

    def none_found_message(self) -> str:
        """Why no bundle was found, in one line: where the search looked and what it skipped."""
        if self.models_empty is not None:
            others = "; ".join(loc.describe() for loc in self.locations[1:])
            text = (f"no model bundle found in --models {self.locations[0].path}: {self.models_empty}; the other "
                    f"locations ({others}) are not searched in its place")
        else:
            text = (f"no model bundle found (looked in: {self.looked_in()}); put bundle folders there, pass "
                    f"--models DIR or set {ENV_MODELS}")
        if self.skipped:
            text += "; skipped: " + " | ".join(self.skipped)
        return text

    def require_any(self) -> None:
        """Raise :class:`BundleError` when no bundle was found for any task."""
        if self.segmentation is None and self.classification is None:
            raise BundleError(self.none_found_message())


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


def _read(folder: Path) -> Bundle:
    """:func:`read_bundle`, with anything unforeseen in a hostile manifest also a :class:`BundleError`."""
    try:
        return read_bundle(folder)
    except BundleError:
        raise
    except Exception as exc:  # noqa: BLE001 - a manifest must never crash the search
        raise BundleError(f"{MANIFEST_NAME} cannot be used ({type(exc).__name__}: {str(exc)[:120]})", folder) from None


def bundles_in(folder: Path, skipped: list[str] | None = None) -> list[Bundle]:
    """Every bundle in a location folder, in name order (the folder itself if it is a bundle).

    Args:
        folder: the location.
        skipped: where to put one line per broken bundle, which is then left out; ``None`` raises
            instead (a user who put a bundle there should hear why it is not used).

    Sub-folders without ``manifest.json`` are ignored.

    Raises:
        BundleError: the folder cannot be listed, the folder itself is a broken bundle, or (without
            ``skipped``) a broken bundle inside.
    """
    if (folder / MANIFEST_NAME).is_file():
        return [_read(folder)]
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise BundleError(f"cannot list the models folder ({exc.strerror or exc})", folder) from exc
    found = []
    for p in entries:
        if not (p / MANIFEST_NAME).is_file():
            continue
        try:
            found.append(_read(p))
        except BundleError as exc:
            if skipped is None:
                raise
            skipped.append(str(exc))
    return found


_VERIFIED: dict[tuple[str, int, int], str] = {}
"""``(weights path, size, mtime_ns) -> sha256`` of weights already hashed in this process."""
_VERIFIED_LOCK = threading.Lock()


def weights_problem(bundle: Bundle) -> str | None:
    """Why a bundle's weights file cannot be used (missing, or not the manifest's sha256), else ``None``.

    The hash is kept per file (path, size, modification time), so a second search costs nothing;
    :func:`braingui.inference.bundle.load_state_dict` checks it again when it loads the weights.
    """
    path = bundle.weights_path
    try:
        st = path.stat()
    except OSError:
        return f"weights file {bundle.manifest.weights_file} not found"
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _VERIFIED_LOCK:
        digest = _VERIFIED.get(key)
    if digest is None:
        sha = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    sha.update(block)
        except OSError as exc:
            return f"cannot read the weights file {path.name} ({exc.strerror or exc})"
        digest = sha.hexdigest()
        with _VERIFIED_LOCK:
            _VERIFIED[key] = digest
    if digest != bundle.manifest.sha256:
        return (f"weights file {path.name} does not match 'weights.sha256' of the manifest (expected "
                f"{bundle.manifest.sha256[:12]}..., file has {digest[:12]}...)")
    return None


def find_bundles(models_dir: str | os.PathLike | None = None, environ: dict[str, str] | None = None,
                 package_dir: str | os.PathLike | None = None) -> BundleSearch:
    """Choose a segmentation and a classification bundle.

    Args:
        models_dir: the ``--models`` folder, if given.
        environ: environment to read (default ``os.environ``).
        package_dir: replaces the bundled-models folder (default ``braingui/models``).

    Raises:
        BundleError: ``--models`` does not exist, cannot be listed or is itself a broken bundle (a broken
            bundle anywhere else is skipped: :attr:`BundleSearch.skipped`).
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
        try:
            found = bundles_in(loc.path, search.skipped)  # a broken bundle inside is skipped, not fatal
        except BundleError as exc:  # the location is unreadable, or is itself a broken bundle
            if loc.source == "--models":
                raise
            search.skipped.append(str(exc))
            continue
        if not _choose(search, loc, found) and loc.source == "--models":
            search.models_empty = ("its bundles cannot be used" if found or search.skipped else
                                   f"no folder in it holds a {MANIFEST_NAME}, and it is not a bundle itself")
            break
    search.notes.extend(f"model bundle skipped: {line}" for line in search.skipped)
    return search


def _choose(search: BundleSearch, loc: Location, found: list[Bundle]) -> int:
    """For each missing task, take the first bundle of ``found`` whose weights check out (those before it
    are skipped with a warning); returns how many bundles were taken."""
    taken = 0
    for task in search.missing():
        candidates = [b for b in found if b.task == task]
        for i, bundle in enumerate(candidates):
            problem = weights_problem(bundle)
            if problem is not None:
                search.skipped.append(str(BundleError(problem, bundle.folder)))
                continue
            setattr(search, task, bundle)
            taken += 1
            if len(candidates) > i + 1:
                others = ", ".join(b.name for b in candidates[i + 1:])
                search.notes.append(f"several {task} bundles in {loc.path}; using {bundle.name} (not {others})")
            break
    return taken
