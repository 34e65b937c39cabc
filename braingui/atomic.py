"""Atomic file writes: the one writer every file the app and the training scripts save goes through.

A write goes to a temporary file in the target's own folder (so the final rename never crosses file
systems), is flushed to disk (``fsync``), given the permission bits a plain ``open()`` would give
(``0666`` less the umask; ``mkstemp`` creates files ``0600``), and renamed over the target with
``os.replace``; then the folder itself is synced (POSIX), so the rename survives a power cut. A reader
never sees a half-written file, an existing file is replaced only once the new one is complete, and
on any failure (an exception, ``KeyboardInterrupt``) the old file stays as it was and the temporary
file is removed.

* :func:`atomic_path` — a context manager yielding the temporary path, for writers that take a file
  name (``nibabel.save``, ``torch.save``, ``numpy.savez``);
* :func:`write_atomic` — the same for a ``write(path)`` callable;
* :func:`write_bytes`, :func:`write_text`, :func:`write_json` — the common cases.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and not thread-safe


def default_mode() -> int:
    """The permission bits a plain ``open()`` would give a new file (``0o666`` less the umask)."""
    return 0o666 & ~_UMASK


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Sync a folder's entries (POSIX); skipped where folders cannot be opened or synced."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic, and refuses to replace an existing file
    except FileExistsError:
        raise FileExistsError(f"{target}: already exists, not overwritten") from None
    except OSError:  # a file system without hard links
        if target.exists():
            raise FileExistsError(f"{target}: already exists, not overwritten") from None
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error, it becomes ``path``.

    Args:
        path: the file to write; its folder is created when missing.
        suffix: the temporary file's ending (default: that of ``path``). Writers that choose the format
            by the name need the real one, e.g. ``".nii.gz"`` for ``nibabel.save``.
        overwrite: ``False`` refuses to replace an existing ``path`` (:class:`FileExistsError`).

    Yields:
        The temporary file's path (an empty file that the block fills).

    Raises:
        FileExistsError: ``overwrite=False`` and ``path`` exists.
        OSError: the folder cannot be created or written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix if suffix is None else suffix,
                                dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, default_mode())
        _commit(tmp, target, overwrite)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # gone after os.replace; left after a failure or a hard link


def write_atomic(path: str | os.PathLike, write: Callable[[Path], Any], *, suffix: str | None = None,
                 overwrite: bool = True) -> Path:
    """Write ``path`` atomically with ``write(tmp_path)`` (see :func:`atomic_path`); returns ``path``."""
    with atomic_path(path, suffix=suffix, overwrite=overwrite) as tmp:
        write(tmp)
    return Path(path)


def write_bytes(data: bytes, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


def write_text(text: str, path: str | os.PathLike, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    return write_bytes(text.encode(encoding), path)


def write_json(data: Any, path: str | os.PathLike, *, allow_nan: bool = True) -> Path:
    """Write ``data`` as JSON indented by two spaces, with a final newline, atomically; returns ``path``.

    Args:
        data: JSON-serialisable data.
        path: the file.
        allow_nan: ``False`` refuses NaN and infinities (:class:`ValueError`) instead of writing the
            non-standard ``NaN`` / ``Infinity``.
    """
    return write_text(json.dumps(data, indent=2, allow_nan=allow_nan) + "\n", path)
