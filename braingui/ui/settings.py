"""User settings and recent cases, kept as JSON in the platformdirs config folder.

``PlatformDirs("braingui", appauthor=False).user_config_dir`` honours ``XDG_CONFIG_HOME`` on Linux, so
tests redirect it by setting that variable. Writes are atomic (:mod:`braingui.atomic`); a corrupt
or unreadable file gives the defaults instead of an error.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from braingui.atomic import write_json

MAX_RECENT = 10


def config_dir() -> Path:
    """The folder that holds ``settings.json``."""
    from platformdirs import PlatformDirs

    return Path(PlatformDirs("braingui", appauthor=False).user_config_dir)


@dataclass
class Settings:
    """What the app remembers between sessions.

    Attributes:
        recent_cases: most recent first, at most :data:`MAX_RECENT` folders.
        auto_analyse: start the analysis as soon as a case is open.
        convention: ``radiological`` or ``neurological``.
        colormap: heat-map colormap name.
        export_dir: the last folder exported to (``""``: none yet).
        arrangement: pane arrangement, ``grid`` or ``row``.
        tta: test-time augmentation with the pipeline's default number of flipped views (and so the
            uncertainty map); ``False`` for a single pass (faster, no uncertainty).
        read_only: never written back (``--screenshot`` runs and tests); not stored.
    """

    recent_cases: list[str] = field(default_factory=list)
    auto_analyse: bool = True
    convention: str = "radiological"
    colormap: str = "jet"
    export_dir: str = ""
    arrangement: str = "grid"
    tta: bool = True
    read_only: bool = field(default=False, compare=False)

    @classmethod
    def load(cls, path: Path | None = None) -> "Settings":
        """Read the settings; defaults for anything missing, unreadable or of the wrong type."""
        path = path or config_dir() / "settings.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        out = cls()
        if isinstance(raw, dict):
            for f in fields(cls):
                if f.name == "read_only":
                    continue
                value = raw.get(f.name)
                if isinstance(value, type(getattr(out, f.name))):
                    setattr(out, f.name, value)
        out.recent_cases = [str(p) for p in out.recent_cases if isinstance(p, str)][:MAX_RECENT]
        return out

    def save(self, path: Path | None = None) -> None:
        """Write the settings atomically; failures are ignored (settings are a convenience)."""
        if self.read_only:
            return
        path = path or config_dir() / "settings.json"
        data = asdict(self)
        data.pop("read_only")
        try:
            write_json(data, path)
        except OSError:
            pass

    def add_recent(self, case_path: str | os.PathLike) -> None:
        """Put ``case_path`` (absolute) first in the recent list."""
        p = str(Path(case_path).resolve())
        self.recent_cases = [p] + [r for r in self.recent_cases if r != p]
        del self.recent_cases[MAX_RECENT:]
