"""DICOM in: detection, dcm2niix conversion into the cache, series roles, one grid, privacy, skull check.

The study is written here with pydicom (tests/dicom_helpers.py): six small series whose voxels sample one
analytic 'patient', so what each voxel of any grid should hold is known without the code under test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("pydicom")
pytest.importorskip("dcm2niix")

from dicom_helpers import MARKER_LPS, PATIENT_ID, PATIENT_NAME, anatomy, write_series, write_study  # noqa: E402
from helpers import MODS, make_case_folder, shared_data_dir  # noqa: E402

from braingui import dicom, skull  # noqa: E402
from braingui.app.cli import main  # noqa: E402
from braingui.case import load_case  # noqa: E402
from braingui.errors import CaseError  # noqa: E402
from braingui.resampling import resample_to  # noqa: E402
from braingui.series import OTHER, Series, guess_role, parse_series_map, propose  # noqa: E402


def _listing(folder: Path) -> str:
    """A hash of every file's path, size, mtime and content under ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        h.update(f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}".encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINGUI_CACHE_DIR", str(folder))
        mp.delenv("BRAINGUI_KEEP_PATIENT_ID", raising=False)
        yield folder


@pytest.fixture(scope="module")
def study(tmp_path_factory, cache):
    folder = tmp_path_factory.mktemp("study") / "DOE_JANE_PID-4711"  # PACS exports often name folders so
    numbers = write_study(folder)
    before = _listing(folder)
    converted = dicom.open_study(folder)
    return {"folder": folder, "numbers": numbers, "before": before, "study": converted}


REAL_WORLD = {
    "AX FLAIR": "flair", "T2 FLAIR SAG": "flair", "t2_tirm_tra_dark-fluid": "flair",
    "T1 MPRAGE POST GAD": "t1ce", "t1_se_tra+c": "t1ce", "T1 3D GD": "t1ce", "T1W_3D_TFE +C": "t1ce",
    "t1_fl3d_tra_KM": "t1ce", "Sag T1 FLAIR +C": "t1ce",
    "Ax T1 pre": "t1", "Sag T1 FLAIR": "t1", "t1_mprage_sag_p2_iso": "t1", "AX T1 w/o": "t1", "T1 non contrast": "t1",
    "T2W_TSE": "t2", "Ax T2 FSE": "t2",
    "DWI": OTHER, "ADC": OTHER, "eADC": OTHER, "SWI": OTHER, "AX T2*": OTHER, "3-plane localizer": OTHER,
    "Localizer": OTHER, "Perfusion": OTHER,
}


def test_roles_of_real_world_descriptions():
    wrong = {}
    for description, role in REAL_WORLD.items():
        guess = guess_role(Series(key=description, number=1, description=description, shape=(24, 24, 12)))
        if guess.role != role:
            wrong[description] = (guess.role, guess.reasons)
        assert guess.reasons, description  # every proposal says why
    assert not wrong


def test_roles_from_timing_and_tags_without_words():
    def guess(**kw):
        return guess_role(Series(**{"key": "x", "number": 1, "shape": (24, 24, 12), **kw})).role

    assert guess(echo_ms=120, repetition_ms=9000, inversion_ms=2500) == "flair"  # TI > 1500 with long TE
    assert guess(echo_ms=3, repetition_ms=2000, inversion_ms=900) == "t1"  # inversion-prepared T1
    assert guess(echo_ms=3, repetition_ms=2000, inversion_ms=900, contrast_agent="Gadovist") == "t1ce"
    assert guess(echo_ms=100, repetition_ms=4000) == "t2"
    assert guess(echo_ms=10, repetition_ms=500) == "t1"
    assert guess(description="T2 TSE", echo_ms=100, repetition_ms=4000, contrast_agent="Gadovist") == "t2"
    assert guess(description="AX T1", shape=(24, 24, 12, 30)) == OTHER  # 4D
    assert guess(description="AX T1", shape=(256, 256, 3)) == OTHER  # localizer-like


def test_proposal_prefers_one_frame_and_editing_moves_roles():
    s = [Series(key="a", number=1, description="T1 post", frame_of_reference="X"),
         Series(key="b", number=2, description="FLAIR", frame_of_reference="Y"),
         Series(key="c", number=3, description="AX FLAIR", frame_of_reference="X"),
         Series(key="d", number=4, description="T2", frame_of_reference="X"),
         Series(key="e", number=5, description="T1 pre", frame_of_reference="X")]
    p = propose(s)
    assert p.assignment == {"flair": "c", "t1": "e", "t1ce": "a", "t2": "d"}
    p.assign("b", "flair")  # the role leaves c
    assert p.assignment["flair"] == "b" and p.role_of("c") is None
    p.assign("d", None)
    assert p.missing() == ["t2"]
    assert parse_series_map("flair=2, t1=Ax T1 pre,t1ce=7,t2=5") == {"flair": "2", "t1": "Ax T1 pre", "t1ce": "7",
                                                                   "t2": "5"}
    for bad in ("flair", "t3=4", "t1=2,t1=3"):
        with pytest.raises(CaseError):
            parse_series_map(bad)


def test_study_is_detected_converted_into_the_cache_and_proposed(study, cache):
    folder, numbers, converted = study["folder"], study["numbers"], study["study"]
    assert dicom.is_dicom_folder(folder)
    assert any(not p.read_bytes()[128:132] == b"DICM" for p in (folder / "5").iterdir())  # preamble-less kept
    roles = {s.number: converted.proposal.role_of(s.key) for s in converted.series}
    assert roles == {numbers["flair"]: "flair", numbers["t1"]: "t1", numbers["t1ce"]: "t1ce", numbers["t2"]: "t2",
                     numbers["dwi"]: None, numbers["other_frame"]: None}
    assert converted.proposal.guesses[next(s.key for s in converted.series if s.number == 1)].role == OTHER
    assert converted.cache.is_relative_to(cache) and not converted.cache.is_relative_to(folder)
    again = dicom.open_study(folder)
    assert again.cache == converted.cache and [s.key for s in again.series] == [s.key for s in converted.series]
    load_case(folder)
    assert _listing(folder) == study["before"]  # the DICOM folder is never written to


def test_resampled_series_agree_in_world_coordinates(study):
    case = load_case(study["folder"])
    assert case.files.scheme == dicom.SCHEME_DICOM
    resampled = [w for w in case.warnings if "resampled" in w]
    assert len(resampled) == 1 and "T2 (series 5 T2W_TSE" in resampled[0] and "FLAIR" not in resampled[0]
    assert "_on_" in case.files.images["t2"].name and "_on_" not in case.files.images["t1ce"].name
    marker_ras = MARKER_LPS * [-1, -1, 1]
    grid = case.grid
    for m in ("flair", "t1", "t1ce", "t2"):
        peak = np.unravel_index(np.argmax(case.images[m]), grid.shape)
        assert np.abs(grid.voxel_to_world(np.array(peak)) - marker_ras).max() <= max(grid.spacing) / 2 + 1e-6, m
    # Every voxel of the resampled T2 holds (up to linear interpolation) what the patient has there.
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1).reshape(-1, 3)
    expected = anatomy(grid.voxel_to_world(ijk) * [-1, -1, 1]).reshape(grid.shape)
    inside = case.images["t2"] > 0
    assert inside.mean() > 0.75
    err = np.abs(case.images["t2"][inside] - expected[inside])
    assert np.median(err) < 5 and err.max() < 80  # intensities 300..1000, the blob's sigma 3 mm on 1.6-3 mm voxels
    assert np.abs(case.images["t1"] - np.round(expected)).max() <= 1  # same grid, reordered exactly


def test_resample_to_is_exact_for_a_linear_field():
    src_affine = np.array([[0, -1.5, 0, 10], [2.0, 0, 0, -4], [0, 0, 3.0, 1], [0, 0, 0, 1]])
    ref_affine = np.array([[1.0, 0, 0, -5], [0, 1.0, 0, -3], [0, 0, 2.0, 4], [0, 0, 0, 1]])

    def field(xyz):
        return 2.0 * xyz[..., 0] - xyz[..., 1] + 0.5 * xyz[..., 2]

    def sampled(shape, affine):
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
        return field(ijk @ affine[:3, :3].T + affine[:3, 3])

    out = resample_to(sampled((12, 10, 8), src_affine), src_affine, (6, 6, 5), ref_affine)
    want = sampled((6, 6, 5), ref_affine)
    inside = out != 0
    assert inside.sum() > 60
    np.testing.assert_allclose(out[inside], want[inside], atol=1e-3)


def test_another_frame_of_reference_is_refused(study):
    with pytest.raises(CaseError) as err:
        load_case(study["folder"], {"t2": str(study["numbers"]["other_frame"])})
    text = str(err.value)
    assert str(study["folder"]) in text and "frames of reference" in text and "ANTs" in text and "FLIRT" in text


def test_series_map_by_description_and_number(study):
    n = study["numbers"]
    case = load_case(study["folder"], {"flair": "AX FLAIR", "t1": str(n["t1"]), "t1ce": "t1 mprage post gad",
                                       "t2": str(n["t2"])})
    assert case.files.images["flair"].name.startswith(f"{n['flair']}_")
    with pytest.raises(CaseError, match="given for both"):
        load_case(study["folder"], {"t1": str(n["t1"]), "t1ce": str(n["t1"])})
    with pytest.raises(CaseError, match="no series has this number"):
        load_case(study["folder"], {"t2": "42"})


def test_outputs_carry_no_patient_name(study, cache, monkeypatch):
    case = load_case(study["folder"])
    assert case.case_id.startswith("DICOM_20240131_")
    names = (PATIENT_NAME, "DOE", "JANE", PATIENT_ID)
    for p in case.files.all_files():  # results.json input_files
        assert not any(n in str(p) for n in names), p
    for p in study["study"].cache.iterdir():
        text = p.name + (p.read_text(errors="replace") if p.suffix == ".json" else "")
        assert not any(n in text for n in names[1:]), p
    monkeypatch.setenv("BRAINGUI_KEEP_PATIENT_ID", "1")
    assert load_case(study["folder"]).case_id == f"{PATIENT_ID}_20240131"


def test_check_prints_the_proposal(study, capsys):
    assert main(["check", str(study["folder"])]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()[:1].isdigit()}
    assert "AX FLAIR" in rows["2"] and " FLAIR " in rows["2"] and "TI 2500 ms" in rows["2"]
    assert "T1ce" in rows["7"] and "GADOVIST" in rows["7"]
    assert "diffusion" in rows["1"] and "(T2)" in rows["9"]
    assert "status:       OK" in out
    assert main(["check", str(study["folder"]), "--series-map", "t2=9"]) == 1
    assert "frames of reference" in capsys.readouterr().err


def test_nibabel_real_dicom_file(tmp_path, cache):
    data = Path(nib.__file__).parent / "nicom" / "tests" / "data" / "0.dcm"
    if not data.is_file():
        pytest.skip("nibabel ships no DICOM test file here")
    folder = tmp_path / "real"
    folder.mkdir()
    shutil.copy(data, folder / "IM0001")  # no extension, as scanners write them
    assert dicom.is_dicom_folder(folder)
    converted = dicom.open_study(folder)
    (s,) = converted.series
    assert s.number == 12 and s.description == "CBU_DTI_64D_1A" and s.echo_ms == pytest.approx(93.0)
    assert converted.proposal.guesses[s.key].role == OTHER  # a diffusion series is none of the four
    with pytest.raises(CaseError, match="no series for FLAIR, T1, T1ce, T2"):
        load_case(folder)


def test_converter_failures_become_case_errors(tmp_path, monkeypatch, cache):
    folder = tmp_path / "one"
    write_series(folder, 4, "AX FLAIR", study_uid="1.2.3.4", frame_uid="1.2.3.5", shape=(8, 8, 6))
    script = tmp_path / "dcm2niix"
    script.write_text("#!/bin/sh\necho 'Error: Unable to find any DICOM images' >&2\nexit 2\n")
    script.chmod(0o755)
    monkeypatch.setenv("BRAINGUI_DCM2NIIX", str(script))
    with pytest.raises(CaseError) as err:
        dicom.open_study(folder)
    assert str(folder) in str(err.value) and "exit status 2" in str(err.value) and "Unable to find" in str(err.value)
    script.write_text("#!/bin/sh\nsleep 5\n")
    with pytest.raises(CaseError, match="took longer than"):
        dicom.open_study(folder, timeout_s=0.5)
    assert not any(p.name.startswith(".part-") for p in (cache / "dicom").iterdir())


def _head(shape=(96, 96, 80), spacing=2.0, with_skull=True, seed=0):
    """A T1-like head: WM 0.75 inside GM 0.55; with the skull: CSF, bone and bright scalp fat around, noise."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * spacing for n in shape], indexing="ij"), -1)

    def ellipsoid(a, b, c):
        return (g[..., 0] / a) ** 2 + (g[..., 1] / b) ** 2 + (g[..., 2] / c) ** 2 <= 1

    v = np.zeros(shape, np.float32)
    if with_skull:
        v[ellipsoid(80, 95, 75)], v[ellipsoid(75, 90, 70)], v[ellipsoid(68, 83, 63)] = 1.0, 0.08, 0.15
    brain = ellipsoid(65, 80, 60)
    v[brain], v[ellipsoid(50, 64, 45)] = 0.55, 0.75
    v += rng.normal(0, 0.02, shape).astype(np.float32) * (v > 0)
    if with_skull:
        v += np.abs(rng.normal(0, 0.02, shape)).astype(np.float32)  # background noise
    else:
        v[~brain] = 0
    return v


def test_skull_check_fires_on_a_head_and_not_on_a_brain(tmp_path):
    head = _head()
    make_case_folder(tmp_path / "head", volumes={m: head for m in MODS}, affine=np.diag([2.0, 2.0, 2.0, 1.0]),
                     labels=None)
    warned = [w for w in load_case(tmp_path / "head").warnings if "not skull-stripped" in w]  # shown in the panel, results.json
    assert len(warned) == 1 and "not skull-stripped" in warned[0]
    zero_background = np.where(head > 0.05, head, 0)  # a masked background leaves the bright shell
    signs = skull.measure(zero_background, (2.0, 2.0, 2.0))
    assert signs.nonzero_fraction < skull.MAX_NONZERO_FRACTION and signs.skull_on
    assert skull.skull_warning({"t1": _head(with_skull=False)}, (2.0, 2.0, 2.0)) is None
    assert skull.skull_warning({"t1": np.ones((8, 9, 10), np.float32)}, (1.0, 1.0, 1.0)) is None  # not a head


@pytest.mark.realdata
def test_skull_check_is_quiet_on_skull_stripped_brats():
    root = shared_data_dir()
    cases = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not cases:
        pytest.skip(f"no BraTS cases in {root}")
    loud = {}
    for c in cases:
        img = nib.as_closest_canonical(nib.load(os.fspath(c / f"{c.name}_t1.nii.gz")))
        message = skull.skull_warning({"t1": np.asarray(img.dataobj, dtype=np.float32)}, img.header.get_zooms()[:3])
        if message:
            loud[c.name] = message
    assert not loud
