"""Hostile inputs: every broken file is refused, or loaded with a warning, in one line that names it.

The inputs come from :mod:`hostile_inputs` (a generator of broken case folders and of fuzzed NIfTI
headers over a fixed seed). Each one goes through :func:`braingui.case.load_case` and through
``braingui check`` run in-process (:func:`braingui.app.cli.main`): never an "internal error", never a
traceback, never a bare line on stderr.
"""

from __future__ import annotations

import builtins
import gzip
import logging
import os
import re
import stat
import tracemalloc

import nibabel as nib
import numpy as np
import pytest

import braingui.nifti
from braingui.app.cli import main
from braingui.case import load_case
from braingui.errors import CaseError
from braingui.nifti import open_header
from braingui.report import case_summary
from helpers import LPS_AFFINE, MODS, make_case_folder, write_nifti
from hostile_inputs import BROKEN, header_mutations, set_header, write_with_header

FUZZ_SEED = 14
FUZZ_COUNT = 200


@pytest.fixture
def no_read_for_mode_000(monkeypatch):
    """Make ``open`` refuse files with no read permission even for root (who reads them anyway)."""
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.isfile(file):
            if stat.S_IMODE(os.stat(file).st_mode) & 0o444 == 0:
                raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)


@pytest.mark.parametrize("broken", BROKEN, ids=[b.name for b in BROKEN])
def test_each_broken_input_is_refused_or_warned_in_one_line_naming_the_file(tmp_path, broken, capsys,
                                                                          no_read_for_mode_000):
    folder, named = broken.make(tmp_path)
    if broken.outcome == "refuse":
        with pytest.raises(CaseError) as info:
            load_case(folder)
        assert info.value.path == str(named), str(info.value)
        assert re.search(broken.pattern, info.value.problem, re.IGNORECASE), str(info.value)
    else:
        case = load_case(folder)
        hits = [w for w in case.warnings if w.startswith(f"{named}: ") and re.search(broken.pattern, w, re.I)]
        assert len(hits) == 1, case.warnings
    capsys.readouterr()

    rc = main(["check", str(folder)])
    out, err = capsys.readouterr()
    assert "internal error" not in err and "Traceback" not in err + out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if broken.outcome == "refuse":
        assert rc == 1
        assert len(lines) == 1 and lines[0].startswith(f"braingui: error: {named}: "), err
    else:
        assert rc == 0 and lines == [], err
        assert str(named) in out and re.search(broken.pattern, out, re.IGNORECASE), out


def test_header_fuzz_loads_or_refuses_naming_the_file(tmp_path, capfd):
    """200 mutations of the header (fixed seed), in .nii and .nii.gz: a Case or a CaseError, nothing else."""
    folder = tmp_path / "case"
    paths = make_case_folder(folder, labels=False)
    paths["flair"].unlink()
    outcomes = {"loaded": 0, "refused": 0}
    failures = []
    for k, what, header in header_mutations(FUZZ_COUNT, FUZZ_SEED):
        for old in folder.glob("Case01_flair.*"):
            old.unlink()
        target = write_with_header(folder / ("Case01_flair.nii.gz" if k % 2 else "Case01_flair.nii"), header,
                                   compress=bool(k % 2))
        try:
            case = load_case(folder)
            case_summary(case)  # the pre-flight report of what loaded works too
            outcomes["loaded"] += 1
        except CaseError as exc:
            outcomes["refused"] += 1
            if exc.path != str(target) or "\n" in str(exc):
                failures.append(f"{k} {what}: names {exc.path}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the point of the test
            failures.append(f"{k} {what}: {type(exc).__name__}: {exc}")
    assert failures == []
    # the fuzz bites both ways: a good share of headers is refused, a good share still loads
    assert outcomes["refused"] >= 40 and outcomes["loaded"] >= 40, outcomes
    out, err = capfd.readouterr()
    assert err == "", err  # nibabel's log lines went into the warnings, not to stderr


def test_header_fuzz_is_reproducible():
    assert [w for _, w, _ in header_mutations(20, FUZZ_SEED)] == [w for _, w, _ in header_mutations(20, FUZZ_SEED)]
    assert header_mutations(20, FUZZ_SEED) != header_mutations(20, FUZZ_SEED + 1)


def _refused_with_peak(path, match: str):
    """``open_header(path)`` refused with a CaseError matching ``match``; returns (the error info, peak bytes of
    Python allocations meanwhile)."""
    tracemalloc.start()
    try:
        with pytest.raises(CaseError, match=match) as info:
            open_header(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return info, peak


@pytest.mark.parametrize("name", ["huge-claim", "huge-claim-gz"])
def test_a_1mb_file_claiming_1024x1024x500_is_refused_without_allocating_it(tmp_path, monkeypatch, name):
    broken = next(b for b in BROKEN if b.name == name)
    folder, named = broken.make(tmp_path)

    def no_read(*args, **kwargs):
        raise AssertionError("voxel data were converted for a header that lies about its size")

    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", no_read)
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "get_unscaled", no_read)
    info, peak = _refused_with_peak(named, "2097152352 bytes")
    assert info.value.path == str(named)
    assert peak < 40 * 1024**2, f"peak Python allocation {peak / 1024**2:.0f} MiB"


def test_a_gzip_length_field_out_of_line_is_checked_within_a_memory_bound(tmp_path):
    """A valid header and an ISIZE trailer of ~4 GB: decompressed with a bound, refused as corrupt."""
    rng = np.random.default_rng(0)
    path = write_nifti(tmp_path / "t1.nii.gz", rng.normal(size=(40, 40, 30)).astype(np.float32), LPS_AFFINE)
    raw = path.read_bytes()
    path.write_bytes(raw[:-4] + (0xFFFF0000).to_bytes(4, "little"))
    info, peak = _refused_with_peak(path, r"^.*: corrupt: the gzip length field does not match")
    assert info.value.path == str(path) and peak < 20 * 1024**2


def test_a_decompression_bomb_stops_at_the_bound(tmp_path, monkeypatch):
    """8 MB of zeros after a 40x40x30 volume, with the length field telling: stopped at need + margin."""
    monkeypatch.setattr(braingui.nifti, "_TRAILING_SLACK", 1024**2)
    body = nib.Nifti1Image(np.ones((40, 40, 30), np.float32), LPS_AFFINE).to_bytes()
    path = tmp_path / "t1.nii.gz"
    path.write_bytes(gzip.compress(body + bytes(8 * 1024**2), compresslevel=1))
    info, peak = _refused_with_peak(path, "far more than the header describes")
    assert info.value.path == str(path) and peak < 6 * 1024**2


def test_nibabel_log_lines_become_warnings_naming_the_file(tmp_path, capfd):
    paths = make_case_folder(tmp_path / "case", labels=False)
    set_header(paths["t1"], pixdim=[1.0, -1.0, 1.0, 1.0])  # nibabel: "pixdim[1,2,3] should be positive ..."
    case = load_case(tmp_path / "case")  # (the sform holds the geometry, so the case still loads)
    notes = [w for w in case.warnings if "should be positive" in w]
    assert len(notes) == 1 and notes[0].startswith(f"{paths['t1']}: the header needed a fix when read ("), notes
    assert capfd.readouterr().err == ""


def test_nibabel_log_lines_outside_a_load_are_prefixed(capfd):
    logging.getLogger("nibabel.global").warning("something about a header")
    err = capfd.readouterr().err
    assert err == "braingui: warning: nibabel: something about a header\n"


def test_the_odd_modality_out_is_named_not_the_first_compared(tmp_path):
    folder = tmp_path / "case"
    paths = make_case_folder(folder, labels=False)
    data = np.asarray(nib.load(paths["flair"]).dataobj)
    write_nifti(paths["flair"], data, LPS_AFFINE @ np.diag([2.0, 1.0, 1.0, 1.0]))  # FLAIR alone at 2 mm
    with pytest.raises(CaseError, match="affine differs from Case01_t1") as info:
        load_case(folder)
    assert info.value.path == str(paths["flair"])


def test_a_case_path_that_is_a_pipe_or_a_link_loop_is_named(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.nii.gz")
    os.symlink("loop", tmp_path / "loop")
    for name, words in (("pipe.nii.gz", "named pipe"), ("loop", "symbolic link loop")):
        assert main(["check", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"braingui: error: {tmp_path / name}: ") and words in err and err.count("\n") == 1


def test_explicit_files_of_every_kind_of_wrong_are_named(tmp_path, capsys):
    paths = make_case_folder(tmp_path / "case", labels=False)
    os.mkfifo(tmp_path / "pipe.nii.gz")
    os.symlink("self.nii.gz", tmp_path / "self.nii.gz")
    for wrong, words in ((tmp_path / "pipe.nii.gz", "named pipe"), (tmp_path / "self.nii.gz", "link loop"),
                         (tmp_path, "is a folder")):
        args = [a for m in MODS for a in (f"--{m}", str(wrong if m == "t1" else paths[m]))]
        assert main(["check", *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"braingui: error: {wrong}: ") and words in err, err
