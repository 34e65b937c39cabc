"""The one atomic writer (braingui.atomic): complete content, untouched old file on failure, no temp file
left, the umask's mode, fsync of the file and of its folder."""

from __future__ import annotations

import os
import stat

import nibabel as nib
import numpy as np
import pytest

from braingui import atomic
from braingui.nifti import save_atomic


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_content_lands_complete_through_every_entry_point(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    assert atomic.write_bytes(data, tmp_path / "sub" / "blob.bin") == tmp_path / "sub" / "blob.bin"  # folder made
    assert (tmp_path / "sub" / "blob.bin").read_bytes() == data
    atomic.write_text("grüße\n", tmp_path / "t.txt")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "grüße\n"
    atomic.write_json({"a": [1, 2.5], "b": None}, tmp_path / "d.json")
    assert (tmp_path / "d.json").read_text() == '{\n  "a": [\n    1,\n    2.5\n  ],\n  "b": null\n}\n'
    # writers that take a file name: numpy (it appends .npz unless the name ends so) and nibabel (.nii.gz by name)
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    atomic.write_atomic(tmp_path / "a.npz", lambda tmp: np.savez(tmp, x=arr))
    with np.load(tmp_path / "a.npz") as z:
        np.testing.assert_array_equal(z["x"], arr)
    save_atomic(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "v.nii.gz")
    assert (tmp_path / "v.nii.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip, as the name says
    np.testing.assert_array_equal(nib.load(tmp_path / "v.nii.gz").get_fdata(), arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "d.json", "sub", "t.txt", "v.nii.gz"]


def test_the_temporary_file_sits_in_the_target_folder_with_the_asked_ending(tmp_path):
    with atomic.atomic_path(tmp_path / "x.nii.gz", suffix=".nii.gz") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.nii.gz.") and tmp.name.endswith(".nii.gz")
        assert tmp.exists() and not (tmp_path / "x.nii.gz").exists()  # nothing at the target before the end
        tmp.write_bytes(b"done")
    assert (tmp_path / "x.nii.gz").read_bytes() == b"done" and not tmp.exists()


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary_file(tmp_path, error):
    target = tmp_path / "results.json"
    target.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("new but cut")
        raise error

    with pytest.raises(type(error)):
        atomic.write_atomic(target, half_then_fail)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]


def test_refused_json_writes_nothing(tmp_path):
    with pytest.raises(ValueError):
        atomic.write_json({"x": float("nan")}, tmp_path / "r.json", allow_nan=False)
    assert os.listdir(tmp_path) == []


def test_no_overwrite_keeps_an_existing_file(tmp_path):
    target = tmp_path / "case_flair.nii.gz"
    target.write_bytes(b"first")
    with pytest.raises(FileExistsError, match="already exists, not overwritten"):
        atomic.write_bytes(b"second", target, overwrite=False)
    assert target.read_bytes() == b"first" and os.listdir(tmp_path) == ["case_flair.nii.gz"]
    atomic.write_bytes(b"other", tmp_path / "new.bin", overwrite=False)
    assert (tmp_path / "new.bin").read_bytes() == b"other" and len(os.listdir(tmp_path)) == 2


def test_mode_follows_the_umask(tmp_path, monkeypatch):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # what open() gives under this process's umask
    atomic.write_bytes(b"x", tmp_path / "a")
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~_current_umask()
    monkeypatch.setattr(atomic, "_UMASK", 0o027)
    atomic.write_bytes(b"x", tmp_path / "b")
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o640  # not mkstemp's 0600


@pytest.mark.skipif(os.name != "posix", reason="folders are synced on POSIX only")
def test_it_fsyncs_the_file_and_then_its_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def record(fd):
        st = os.fstat(fd)
        synced.append((st.st_ino, stat.S_ISDIR(st.st_mode), st.st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    target = atomic.write_bytes(b"12345", tmp_path / "f.bin")
    file_ino, dir_ino = target.stat().st_ino, tmp_path.stat().st_ino
    # the file with its full content (same inode: os.replace renames it), then the folder after the rename
    assert synced == [(file_ino, False, 5), (dir_ino, True, synced[1][2])]


def test_the_phantom_writes_through_it_without_overwriting(tmp_path, monkeypatch):
    """A former copy: the phantom's case files go through braingui.atomic, with ``overwrite=False``."""
    from braingui.phantom import make_phantom, save_phantom

    calls = []
    real = atomic.atomic_path

    def spy(path, **kw):
        calls.append((os.path.basename(path), kw.get("overwrite", True)))
        return real(path, **kw)

    monkeypatch.setattr(atomic, "atomic_path", spy)
    phantom = make_phantom(shape=(12, 12, 10))
    paths = save_phantom(phantom, tmp_path / "case", case_id="SYNTHETIC_t", with_labels=False)
    assert sorted(calls) == sorted((p.name, False) for p in paths.values())
    with pytest.raises(FileExistsError):
        save_phantom(phantom, tmp_path / "case", case_id="SYNTHETIC_t", with_labels=False)
    assert not [p for p in os.listdir(tmp_path / "case") if p.startswith(".")]
