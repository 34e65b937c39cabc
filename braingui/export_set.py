"""An export set: the files of one export, put into their output folder as one step, never over a file
the app did not write (stdlib only).

**Ownership.** Each output folder holds a marker, ``braingui-export.json`` (:data:`MARKER`), listing
every file braingui wrote there with its sha256 and size. An existing file is replaced only when the
marker lists it *and* its content still matches; anything else (the user's own ``segmentation.nii.gz``
or ``results.json``, a file edited since) is refused by name (:class:`ExportRefused`) and nothing is
written. An output folder equal to or inside a case folder (the folder of any input file) is refused
(:class:`OutputInCaseError`) unless the caller forces it (``--force-output-in-case``, a confirmation in
the window); even then no file is overwritten that the app did not write.

**Atomicity.** The files are written into a private staging folder on the same file system, flushed
to disk (``fsync``), and then:

* the output folder does not exist yet: the marker (``"complete": true``) is written into the staging
  folder, which is then *renamed* to the output folder: one atomic step, so a reader sees no folder
  or the whole set;
* the output folder exists (it may hold other files): the marker is first rewritten as
  ``"complete": false`` (listing the new files, and the old ones as ``"previous"``), then each file is
  moved in with an atomic rename, files of the old set that the new one lacks are removed (or, with
  ``keep_others``, kept and listed as ``"earlier"``: the window keeps the PNG of each view exported),
  and last the marker is rewritten as ``"complete": true``. A reader (:func:`read_state`) therefore sees either
  a complete set (marker complete, every listed file matching) or a set marked incomplete; a kill -9
  in between leaves the marker saying so, and the next export recognises both the old and the new
  files as the app's own.

On any failure before the move (a full disk, an exception, ``KeyboardInterrupt``) the staging folder
is removed and the output folder is as it was. A staging folder left by a killed process
(``.braingui-tmp-<pid>-<token>``) is removed by the next export to that folder once its process is gone.

Test hook: with ``BRAINGUI_EXPORT_PAUSE_AT`` set to a step (``staged``, ``rename``, ``marker-pending``,
``moved <name>``, ``marker-final``), the export prints ``braingui-export: paused at <step>`` to stderr
there and sleeps two minutes, so a test can kill it at that point.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from braingui import __version__, atomic
from braingui.errors import BrainguiError

MARKER = "braingui-export.json"
MARKER_FORMAT = "braingui-export"
TMP_PREFIX = ".braingui-tmp-"
PAUSE_ENV = "BRAINGUI_EXPORT_PAUSE_AT"
_STALE_AGE_S = 3600.0  # where a process cannot be asked whether it lives (not POSIX)


class ExportRefused(BrainguiError):
    """The export would replace a file the app did not write, or cannot use the output folder."""


class OutputInCaseError(ExportRefused):
    """The output folder is a case folder or inside one (refused unless forced).

    Attributes:
        out: the output folder; case_folder: the case folder it is in.
    """

    def __init__(self, out: Path, case_folder: Path):
        self.out, self.case_folder = out, case_folder
        where = "is the case folder" if out.resolve() == case_folder.resolve() else f"is inside the case folder {case_folder}"
        super().__init__(f"{out}: the output folder {where}; braingui does not write into a case folder")


@dataclass
class ExportState:
    """What a folder's marker says (:func:`read_state`).

    Attributes:
        status: ``"none"`` (no marker), ``"complete"`` (marker complete and every listed file matches),
            ``"incomplete"`` (an export was interrupted: the files may be a mix of two sets), or
            ``"changed"`` (marker complete but a listed file is missing or differs).
        files: name -> ``{"sha256", "size"}`` of the newest set.
        previous: name -> entry of the set being replaced (incomplete markers only).
        earlier: name -> entry of files kept from earlier exports (``keep_others``), not of the newest set.
        problems: the listed files that are missing or differ.
    """

    status: str
    files: dict[str, dict] = field(default_factory=dict)
    previous: dict[str, dict] = field(default_factory=dict)
    earlier: dict[str, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def listed(self, name: str) -> bool:
        """True when the marker lists ``name`` at all."""
        return any(name in d for d in (self.files, self.previous, self.earlier))

    def owns(self, name: str, entry: dict) -> bool:
        """True when ``name`` with this content (``entry``) is a file the app wrote."""
        return any(d.get(name) == entry for d in (self.files, self.previous, self.earlier))


def file_entry(path: Path) -> dict:
    """``{"sha256": hex, "size": bytes}`` of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "size": path.stat().st_size}


def read_state(folder: str | os.PathLike, verify: bool = True) -> ExportState:
    """Read a folder's marker; with ``verify``, also check a complete set's files against it.

    Raises:
        ExportRefused: a ``braingui-export.json`` that is not a braingui marker (never overwritten).
    """
    path = Path(folder) / MARKER
    if not path.exists() and not path.is_symlink():
        return ExportState("none")
    try:
        if path.is_symlink() or not path.is_file():
            raise ValueError("not a plain file")
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
            raise ValueError("not a braingui export marker")
        lists = [data.get(key, {}) for key in ("files", "previous", "earlier")]
        if not all(isinstance(d, dict) and all(isinstance(v, dict) for v in d.values()) for d in lists):
            raise ValueError("malformed file list")
    except (OSError, ValueError, RecursionError) as exc:
        raise ExportRefused(f"{path}: cannot be read as braingui's export marker ({exc}); "
                            "not overwritten - choose another output folder") from None
    state = ExportState("complete" if data.get("complete") is True else "incomplete", *lists)
    if verify and state.status == "complete":
        for name, entry in state.files.items():
            target = Path(folder) / name
            if not target.is_file() or target.is_symlink() or file_entry(target) != entry:
                state.problems.append(name)
        if state.problems:
            state.status = "changed"
    return state


def case_folders(inputs: Iterable[str | os.PathLike], case_folder: str | os.PathLike | None = None) -> list[Path]:
    """The folders an output must stay out of: the case folder and the folder of each input file."""
    folders = [Path(case_folder)] if case_folder else []
    folders += [Path(p).parent for p in inputs]
    return list(dict.fromkeys(f.resolve() for f in folders))


def case_folder_of(out: str | os.PathLike, folders: Iterable[Path]) -> Path | None:
    """The case folder that ``out`` equals or lies inside, else ``None``."""
    target = Path(out).expanduser().resolve()
    for folder in folders:
        if target == folder or folder in target.parents:
            return folder
    return None


def _conflict(out: Path, name: str, state: ExportState) -> str | None:
    target = out / name
    if not target.exists() and not target.is_symlink():
        return None
    if target.is_symlink() or not target.is_file():
        return f"{target}: exists and is not a plain file; not overwritten"
    if not state.listed(name):
        return f"{target}: exists and was not written by braingui; not overwritten (choose another output folder)"
    if not state.owns(name, file_entry(target)):
        return f"{target}: was changed since braingui wrote it; not overwritten (choose another output folder)"
    return None


def check_output(out: str | os.PathLike, names: Iterable[str] = (), folders: Iterable[Path] = (),
                 force_in_case: bool = False) -> None:
    """Pre-flight check of an output folder, before any work (the export checks again).

    Args:
        out: the output folder (it need not exist).
        names: the files the export will write.
        folders: the case folders (:func:`case_folders`).
        force_in_case: allow ``out`` inside a case folder.

    Raises:
        OutputInCaseError, ExportRefused: see the module docstring; also a folder that is a file or
            cannot be created or written.
    """
    out = Path(out).expanduser()
    case = case_folder_of(out, folders)
    if case is not None and not force_in_case:
        raise OutputInCaseError(out, case)
    if out.exists() and not out.is_dir():
        raise ExportRefused(f"{out}: exists and is not a folder")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ExportRefused(f"{existing}: not a writable folder, so {out} cannot be written")
    if out.is_dir():
        state = read_state(out, verify=False)
        for name in names:
            problem = _conflict(out, name, state)
            if problem:
                raise ExportRefused(problem)


def _pause(step: str) -> None:
    if os.environ.get(PAUSE_ENV) == step:
        print(f"braingui-export: paused at {step}", file=sys.stderr, flush=True)
        time.sleep(120)


def _fsync(path: Path, directory: bool = False) -> None:
    if directory and os.name != "posix":
        return
    fd = os.open(path, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if directory else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's process
        return True
    return True


def _remove_stale(folder: Path, prefix: str) -> None:
    """Remove staging folders ``<prefix><pid>-<token>`` in ``folder`` whose process has ended."""
    try:
        entries = [p for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for path in entries:
        if path.is_symlink() or not path.is_dir():
            continue
        pid = path.name[len(prefix):].split("-", 1)[0]
        if os.name == "posix" and pid.isdigit():
            if _alive(int(pid)):
                continue
        elif time.time() - path.stat().st_mtime < _STALE_AGE_S:
            continue
        shutil.rmtree(path, ignore_errors=True)


def _remove_marker_temps(folder: Path, min_age_s: float = 60.0) -> None:
    """Remove temporary marker files (``.braingui-export.json.*``) left by a killed export."""
    try:
        entries = [p for p in folder.iterdir() if p.name.startswith(f".{MARKER}.")]
    except OSError:
        return
    for path in entries:
        try:
            if path.is_file() and not path.is_symlink() and time.time() - path.stat().st_mtime > min_age_s:
                path.unlink()
        except OSError:
            pass


def _make_staging(parent: Path, prefix: str) -> Path:
    while True:
        path = parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o777)  # less the umask, like any new folder
            return path
        except FileExistsError:
            continue


class ExportSet:
    """Write one export set atomically (see the module docstring).

    ``with ExportSet(out, folders) as staging:`` yields the staging folder to write the files into
    (plain names, sub-folders allowed); when the block ends without error the set is put in place,
    and :attr:`paths` maps each relative name to its final path.

    Args:
        out: the output folder (created, with its parents, when missing).
        folders: the case folders the output must stay out of (:func:`case_folders`).
        force_in_case: allow an output folder inside a case folder.
        keep_others: keep the app's files of earlier exports that this set lacks (default: remove them,
            so the folder holds one set).

    Raises:
        OutputInCaseError, ExportRefused: on entry (the folder) or on commit (a file the app did not
            write); OSError: a write failed (the output folder is then unchanged).
    """

    def __init__(self, out: str | os.PathLike, folders: Iterable[Path] = (), force_in_case: bool = False,
                 keep_others: bool = False):
        self.out = Path(out).expanduser()
        self.folders = list(folders)
        self.force_in_case = force_in_case
        self.keep_others = keep_others
        self.staging: Path | None = None
        self.paths: dict[str, Path] = {}

    def __enter__(self) -> Path:
        check_output(self.out, (), self.folders, self.force_in_case)
        if self.out.is_dir():
            _remove_stale(self.out, TMP_PREFIX)
            _remove_marker_temps(self.out)
            self.staging = _make_staging(self.out, TMP_PREFIX)
        else:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            prefix = f".{self.out.name}{TMP_PREFIX}"
            _remove_stale(self.out.parent, prefix)
            self.staging = _make_staging(self.out.parent, prefix)
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._commit()
        finally:
            if self.staging is not None and self.staging.exists():
                shutil.rmtree(self.staging, ignore_errors=True)
        return False

    def _staged(self) -> dict[str, dict]:
        entries = {}
        for path in sorted(self.staging.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise ExportRefused(f"{path}: the export made something that is not a file")
            if path.is_dir():
                continue
            name = path.relative_to(self.staging).as_posix()
            if name == MARKER:
                raise ExportRefused(f"{MARKER} is the export marker's name; no exported file may have it")
            _fsync(path)
            entries[name] = file_entry(path)
        for folder in sorted({p.parent for p in self.staging.rglob("*")} | {self.staging}, reverse=True):
            _fsync(folder, directory=True)
        return entries

    def _marker(self, files: dict, complete: bool, previous: dict | None = None, earlier: dict | None = None) -> dict:
        data = {"format": MARKER_FORMAT, "version": 1, "complete": complete, "software_version": __version__,
                "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "note": "files: the last export braingui wrote in this folder (complete=false: it was interrupted "
                        "and the files may mix two exports); earlier: files of earlier exports kept here",
                "files": files}
        if previous:
            data["previous"] = previous
        if earlier:
            data["earlier"] = earlier
        return data

    def _commit(self) -> None:
        files = self._staged()
        _pause("staged")
        if self.staging.parent != self.out:  # a new folder: one rename
            atomic.write_json(self._marker(files, True), self.staging / MARKER)
            _fsync(self.staging, directory=True)
            _pause("rename")
            try:
                os.rename(self.staging, self.out)
            except OSError:
                if not self.out.is_dir():
                    raise
                self._move_in(files)  # the folder appeared meanwhile
            else:
                _fsync(self.out.parent, directory=True)
                self.staging = None
        else:
            self._move_in(files)
        self.paths = {name: self.out / name for name in files}

    def _move_in(self, files: dict[str, dict]) -> None:
        state = read_state(self.out, verify=False)
        for name in files:
            problem = _conflict(self.out, name, state)
            if problem:
                raise ExportRefused(problem)
        old: dict[str, dict] = {}
        for name in {**state.earlier, **state.previous, **state.files}:
            target = self.out / name
            if target.is_file() and not target.is_symlink():
                entry = file_entry(target)
                if state.owns(name, entry):
                    old[name] = entry
        earlier = {n: e for n, e in old.items() if n not in files} if self.keep_others else {}
        atomic.write_json(self._marker(files, False, old, earlier), self.out / MARKER)
        _pause("marker-pending")
        for name in files:
            target = self.out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.staging / name, target)
            _pause(f"moved {name}")
        for name in sorted(set(old) - set(files) - set(earlier)):
            (self.out / name).unlink(missing_ok=True)  # the old set's files that the new one lacks
        _fsync(self.out, directory=True)
        _pause("marker-final")
        atomic.write_json(self._marker(files, True, None, earlier), self.out / MARKER)
