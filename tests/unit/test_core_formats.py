"""Case folders as real tools write them: BraTS Toolkit names, browser copies, BRATS 2012-2015 (SMIR/VSD)
layouts, MetaImage / NRRD volumes through SimpleITK, BRATS 2012-2015 label conventions, and the messages for
formats braingui does not read.

Every .mha/.mhd/.nrrd/.nhdr file is written here with SimpleITK on a 24x28x20 grid with an oblique,
axis-permuting direction and an origin, as ITK (LPS) stores it. Expectations come from SimpleITK's own
index -> physical-point transform and nibabel's ``as_closest_canonical``, never from braingui.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from braingui import labels as lab  # noqa: E402
from braingui.case import load_case  # noqa: E402
from braingui.discovery import (  # noqa: E402
    SCHEME_BARE,
    SCHEME_BRATS,
    SCHEME_BRATS2012,
    SCHEME_BRATS2023,
    SCHEME_TOOLKIT,
    SCHEME_VSD,
    classify_name,
    discover,
)
from braingui.errors import CaseError  # noqa: E402
from braingui.export import write_segmentation  # noqa: E402
from braingui.itk_io import ItkArrayProxy  # noqa: E402
from braingui.nifti import open_header  # noqa: E402
from helpers import REPO_ROOT, brain_volumes, canonical, write_nifti  # noqa: E402

SHAPE = (24, 28, 20)  # (x, y, z) as stored
FLIP = np.diag([-1.0, -1.0, 1.0])  # LPS <-> RAS


def _oblique_direction(degrees: float = 10.0) -> np.ndarray:
    """A proper rotation: the index axes permuted and two of them flipped, then turned ``degrees`` about S."""
    perm = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # det +1
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    return rot @ perm


GEOMETRIES = {
    # BraTS .mha files: identity direction in LPS (voxel axes L, P, S), origin away from 0.
    "brats": dict(spacing=(1.0, 1.0, 1.0), direction=np.eye(3), origin=(-12.0, -130.5, 7.0)),
    "oblique": dict(spacing=(1.0, 1.25, 2.0), direction=_oblique_direction(), origin=(12.5, -30.0, 41.0)),
}


def _itk_image(array_xyz: np.ndarray, geometry: dict) -> "sitk.Image":
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array_xyz).transpose(2, 1, 0)))  # [z, y, x]
    img.SetSpacing(tuple(float(s) for s in geometry["spacing"]))
    img.SetDirection(tuple(float(v) for v in np.asarray(geometry["direction"]).ravel()))
    img.SetOrigin(tuple(float(v) for v in geometry["origin"]))
    return img


def ras_affine(geometry: dict) -> np.ndarray:
    """The voxel -> RAS affine, from SimpleITK's own index -> LPS point transform."""
    img = _itk_image(np.zeros((2, 2, 2), np.uint8), geometry)
    origin = np.array(img.TransformIndexToPhysicalPoint((0, 0, 0)))
    cols = [np.array(img.TransformIndexToPhysicalPoint(e)) - origin for e in ((1, 0, 0), (0, 1, 0), (0, 0, 1))]
    affine = np.eye(4)
    affine[:3, :3] = FLIP @ np.column_stack(cols)
    affine[:3, 3] = FLIP @ origin
    return affine


def write_volume(path: Path, array_xyz: np.ndarray, geometry: dict, compress: bool = False) -> Path:
    """Write ``array_xyz`` (indexed [x, y, z]) with SimpleITK, or with nibabel for .nii/.nii.gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return write_nifti(path, array_xyz, ras_affine(geometry))
    sitk.WriteImage(_itk_image(array_xyz, geometry), str(path), compress)
    return path


def mr_volumes() -> dict[str, np.ndarray]:
    """Four int16 volumes (BraTS .mha files are int16), distinct per modality."""
    return {m: v.astype(np.int16) for m, v in brain_volumes(SHAPE, seed=3).items()}


def label_map(values: tuple[int, ...]) -> np.ndarray:
    """Blocks of 2x3x4 = 24, 48, 72, 96 voxels for values[0..3] (as many as given)."""
    raw = np.zeros(SHAPE, np.int16)
    for k, v in enumerate(values):
        raw[2 + 5 * k: 4 + 5 * k, 3:6, 4:8 + 4 * k] = v
    return raw


# ------------------------------------------------------------------------------ geometry of one file

@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("ext", [".mha", ".mhd", ".nrrd", ".nhdr"])
def test_itk_header_affine_maps_voxels_to_simpleitk_points(tmp_path, geometry, ext):
    geom = GEOMETRIES[geometry]
    arr = mr_volumes()["t1"]
    path = write_volume(tmp_path / f"t1{ext}", arr, geom)
    img = open_header(path)
    assert img.shape == SHAPE
    ref = sitk.ReadImage(str(path))
    rng = np.random.default_rng(0)
    for idx in rng.integers(0, SHAPE, size=(5, 3)):
        lps = np.array(ref.TransformIndexToPhysicalPoint(tuple(int(i) for i in idx)))
        np.testing.assert_allclose(nib.affines.apply_affine(img.affine, idx), FLIP @ lps, atol=1e-5)
    data = np.asarray(img.dataobj)
    assert data.dtype == np.int16
    np.testing.assert_array_equal(data, arr)  # [x, y, z], as written


# ------------------------------------------------------------------------------ naming schemes

SCHEMES = {
    "toolkit": dict(files={"flair": "P01_fla_bet.nii.gz", "t1": "P01_t1_bet.nii.gz", "t1ce": "P01_t1c_bet.nii.gz",
                           "t2": "P01_t2_bet.nii.gz"}, scheme=SCHEME_TOOLKIT, case_id="P01"),
    "browser": dict(files={"flair": "BRATS_HG0015_FLAIR (1).mha", "t1": "BRATS_HG0015_T1.mha",
                           "t1ce": "BRATS_HG0015_T1C (1).mha", "t2": "BRATS_HG0015_T2.mha",
                           "seg": "BRATS_HG0015_truth.mha"},
                    scheme=SCHEME_BRATS2012, case_id="BRATS_HG0015", values=(1, 2), convention="brats2012"),
    "vsd": dict(files={"flair": "VSD.Brain.XX.O.MR_Flair.54512.mha", "t1": "VSD.Brain.XX.O.MR_T1.54513.mha",
                       "t1ce": "VSD.Brain.XX.O.MR_T1c.54514.mha", "t2": "VSD.Brain.XX.O.MR_T2.54515.mha",
                       "seg": "VSD.Brain_3more.XX.O.OT.54517.mha"},
                nested=True, scheme=SCHEME_VSD, case_id="brats_2013_pat0001_1", values=(1, 2, 3, 4),
                convention="brats2013"),
    "nrrd": dict(files={"flair": "Case7_flair.nrrd", "t1": "Case7_t1.nrrd", "t1ce": "Case7_t1ce.nrrd",
                        "t2": "Case7_t2.nrrd", "seg": "Case7_seg.nrrd"},
                 scheme=SCHEME_BRATS, case_id="Case7", values=(1, 2, 4), convention="brats"),
    "nhdr": dict(files={"flair": "FLAIR.nhdr", "t1": "t1.nhdr", "t1ce": "t1gd.nhdr", "t2": "T2.nhdr",
                        "seg": "label.nhdr"},
                 scheme=SCHEME_BARE, case_id="brats_2013_pat0001_1", values=(1, 2, 4), convention="brats"),
    "mhd": dict(files={"flair": "BraTS-GLI-00001-000-t2f.mhd", "t1": "BraTS-GLI-00001-000-t1n.mhd",
                       "t1ce": "BraTS-GLI-00001-000-t1c.mhd", "t2": "BraTS-GLI-00001-000-t2w.mhd",
                       "seg": "BraTS-GLI-00001-000-seg.mhd"},
                scheme=SCHEME_BRATS2023, case_id="BraTS-GLI-00001-000", values=(1, 2, 3), convention="brats2023"),
    "mixed": dict(files={"flair": "flair.nii.gz", "t1": "t1.mha", "t1ce": "t1ce.nrrd", "t2": "t2.mhd"},
                  scheme=SCHEME_BARE, case_id="brats_2013_pat0001_1"),
}
INTERNAL = {  # raw value -> internal BraTS value, per convention (from each data set's documentation)
    "brats": {1: 1, 2: 2, 4: 4}, "brats2023": {1: 1, 2: 2, 3: 4},
    "brats2012": {1: 2, 2: 1}, "brats2013": {1: 1, 2: 2, 3: 1, 4: 4},
}


def build_scheme(root: Path, name: str, geometry: dict) -> tuple[Path, dict[str, Path], dict[str, np.ndarray]]:
    """Write the case of ``SCHEMES[name]`` under ``root/brats_2013_pat0001_1``; returns folder, paths, arrays."""
    spec = SCHEMES[name]
    folder = root / "brats_2013_pat0001_1"
    arrays: dict[str, np.ndarray] = dict(mr_volumes())
    if "seg" in spec["files"]:
        arrays["seg"] = label_map(spec["values"])
    paths = {}
    for role, fname in spec["files"].items():
        where = folder / Path(fname.replace(" (1)", "")).stem if spec.get("nested") else folder
        paths[role] = write_volume(where / fname, arrays[role], geometry)
    return folder, paths, arrays


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_each_scheme_opens_by_discovery_with_the_right_modality_per_file(tmp_path, name, geometry):
    spec, geom = SCHEMES[name], GEOMETRIES[geometry]
    folder, paths, arrays = build_scheme(tmp_path, name, geom)
    case = load_case(folder)
    assert {m: case.files.images[m] for m in ("flair", "t1", "t1ce", "t2")} == \
        {m: paths[m] for m in ("flair", "t1", "t1ce", "t2")}
    assert case.files.scheme == spec["scheme"]
    assert case.case_id == spec["case_id"]
    affine = ras_affine(geom)
    for m in ("flair", "t1", "t1ce", "t2"):
        expected, expected_affine = canonical(arrays[m], affine)
        np.testing.assert_array_equal(case.images[m], expected.astype(np.float32), err_msg=m)
    np.testing.assert_allclose(case.grid.affine, expected_affine, atol=1e-5)
    if "seg" not in spec["files"]:
        assert case.labels is None
        return
    assert case.files.seg == paths["seg"]
    assert case.label_convention == spec["convention"]
    raw, _ = canonical(arrays["seg"], affine)
    table = INTERNAL[spec["convention"]]
    np.testing.assert_array_equal(case.labels, np.select([raw == v for v in table], list(table.values()), 0))


def test_browser_copy_beside_the_original_is_an_ambiguity_listing_both(tmp_path):
    folder, paths, arrays = build_scheme(tmp_path, "browser", GEOMETRIES["brats"])
    write_volume(folder / "BRATS_HG0015_FLAIR.mha", arrays["flair"], GEOMETRIES["brats"])
    with pytest.raises(CaseError, match="ambiguous") as info:
        discover(folder)
    assert "BRATS_HG0015_FLAIR.mha" in str(info.value) and "BRATS_HG0015_FLAIR (1).mha" in str(info.value)


def test_a_folder_of_whole_cases_is_not_taken_for_one_case(tmp_path):
    vols = mr_volumes()
    for case in ("brats_2013_pat0001_1", "brats_2013_pat0002_1"):
        for m in vols:
            write_volume(tmp_path / "HGG" / case / f"{case}_{m}.nrrd", vols[m], GEOMETRIES["brats"])
    with pytest.raises(CaseError, match="separate cases") as info:
        discover(tmp_path / "HGG")
    assert "open one of them" in str(info.value)


@pytest.mark.parametrize("name, role", [
    ("P01_fla_bet.nii.gz", "flair"),
    ("P01_t1_fla_bet.nii.gz", "t1"),      # "fla" counts only when nothing else names a modality
    ("flair_fla_bet.nii.gz", "flair"),
    ("T1_fla_bet.nii", "t1"),
    ("fla.nii.gz", "flair"),
    ("P01_t1c_bet.nii.gz", "t1ce"),
    ("BRATS_HG0015_T1C (1).mha", "t1ce"),
    ("BRATS_HG0015_FLAIR(2).MHA", "flair"),
    ("BRATS_HG0015_truth.mha", "seg"),
    ("case_GroundTruth.nrrd", "seg"),
    ("VSD.Brain.XX.O.MR_T1c.54514.mha", "t1ce"),
    ("VSD.Brain.XX.O.MR_T1.54513.mha", "t1"),
    ("VSD.Brain.XX.O.MR_Flair.54512.mha", "flair"),
    ("VSD.Brain_3more.XX.O.OT.54517.mha", "seg"),
    ("Flair.MHD", "flair"),
    ("t2.nhdr", "t2"),
    ("t2.raw", None),
    ("t1.dcm", None),
    ("Brats18_2013_3_1_t1ce.nii.gz", "t1ce"),
])
def test_classify_name(name, role):
    assert classify_name(name)[0] == role


# ------------------------------------------------------------------------------ label conventions

@pytest.mark.parametrize("values, name, hint, convention", [
    ({1, 2}, "BRATS_HG0015_truth.mha", None, "brats2012"),
    ({1, 2, 3, 4}, "BRATS_HG0015_truth.mha", None, "brats2013"),
    ({1, 2, 4}, "X_truth.mha", None, "brats2013"),
    ({1, 2}, "VSD.Brain_3more.XX.O.OT.54517.mha", None, "brats2013"),
    ({1, 2, 3, 4}, "seg.nii.gz", None, "brats2013"),
    ({1, 2, 4}, "seg.nii.gz", None, "brats"),
    ({1, 2}, "seg.nii.gz", None, "brats"),
    ({1, 2}, "seg.nii.gz", "brats2012", "brats2012"),
    ({1, 2, 3}, "BRATS_001_truth.nii.gz", "msd", "msd"),
])
def test_detect_convention(values, name, hint, convention):
    assert lab.detect_convention(values, hint, None, name)[0] == convention


def test_brats2012_core_is_tc_and_the_reference_has_no_et(tmp_path):
    folder, paths, arrays = build_scheme(tmp_path, "browser", GEOMETRIES["oblique"])
    case = load_case(folder)
    raw = arrays["seg"]
    voxel_ml = float(np.prod(GEOMETRIES["oblique"]["spacing"])) / 1000.0
    got = case.region_volumes_ml()
    assert got["TC"] == pytest.approx(int((raw == 2).sum()) * voxel_ml)        # 2012 "active core"
    assert got["WT"] == pytest.approx(int((raw > 0).sum()) * voxel_ml)
    assert got["ET"] == 0.0
    assert any("BRATS 2012" in w and "ET" in w and str(paths["seg"]) in w for w in case.warnings)


def test_brats2013_non_enhancing_counts_as_core(tmp_path):
    folder, paths, arrays = build_scheme(tmp_path, "vsd", GEOMETRIES["brats"])
    case = load_case(folder)
    raw = arrays["seg"]
    got = case.region_volumes_ml()
    assert got["ET"] == pytest.approx(int((raw == 4).sum()) / 1000)
    assert got["TC"] == pytest.approx(int(np.isin(raw, (1, 3, 4)).sum()) / 1000)
    assert got["WT"] == pytest.approx(int((raw > 0).sum()) / 1000)
    assert not any("not in the" in w for w in case.warnings)  # value 3 is known, not dropped


def test_labels_can_be_forced_and_the_cli_offers_every_convention(tmp_path):
    from braingui.app.cli import build_parser

    folder, paths, arrays = build_scheme(tmp_path, "nrrd", GEOMETRIES["brats"])
    paths["seg"].unlink()
    write_volume(folder / "Case7_seg.nrrd", label_map((1, 2)), GEOMETRIES["brats"])
    assert load_case(folder).label_convention == "brats"
    assert load_case(folder, label_convention="brats2012").label_convention == "brats2012"
    parser = build_parser()
    choices = next(a.choices for a in parser._actions if a.dest == "label_convention")
    assert set(choices) == set(lab.CONVENTIONS)
    assert parser.parse_args(["--labels", "brats2013"]).label_convention == "brats2013"


# ------------------------------------------------------------------------------ formats it cannot read

def _three_readable(folder: Path) -> None:
    vols = mr_volumes()
    for m in ("t1", "t1ce", "t2"):
        write_volume(folder / f"BRATS_{m.upper()}.mha", vols[m], GEOMETRIES["brats"])


@pytest.mark.parametrize("ext, fmt", [
    (".dcm", "a DICOM file"), (".IMA", "a DICOM file"), (".img", "an Analyze 7.5 / NIfTI-pair file"),
    (".hdr", "an Analyze 7.5 / NIfTI-pair file"), (".npy", "a NumPy array file"), (".nii.zip", "an archive file"),
    (".png", "a picture file"),
])
def test_a_modality_in_an_unreadable_format_is_named_with_its_format(tmp_path, ext, fmt):
    folder = tmp_path / "case"
    _three_readable(folder)
    (folder / f"BRATS_FLAIR{ext}").write_bytes(b"\0" * 300)
    with pytest.raises(CaseError) as info:
        load_case(folder)
    msg = str(info.value)
    assert msg.startswith(str(folder / f"BRATS_FLAIR{ext}") + f": {fmt}; braingui reads NIfTI (.nii, .nii.gz), "
                          "MetaImage (.mha, .mhd), NRRD (.nrrd, .nhdr)")
    assert "found: none" not in msg


def test_an_explicit_file_in_an_unreadable_format_is_refused_by_name(tmp_path):
    folder = tmp_path / "case"
    _three_readable(folder)
    np.save(folder / "flair.npy", np.zeros(SHAPE, np.float32))
    with pytest.raises(CaseError, match="a NumPy array file") as info:
        load_case(folder, explicit={"flair": folder / "flair.npy"})
    assert str(folder / "flair.npy") in str(info.value)


def test_a_dicom_folder_says_what_it_holds_and_how_to_convert(tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    for i in range(8):  # DICOM slices as scanners name them: no extension, "DICM" at byte 128
        (folder / f"IM{i:04d}").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    (folder / "DICOMDIR.txt").write_text("index")
    with pytest.raises(CaseError) as info:
        discover(folder)
    msg = str(info.value)
    assert "no image braingui can read: 8 DICOM files (IM0000, IM0001" in msg and "and 2 more" in msg
    assert "dcm2niix" in msg and "found: none" not in msg


def test_an_empty_folder_and_a_folder_without_images_say_what_they_hold(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaseError, match="the folder is empty"):
        discover(tmp_path / "empty")
    (tmp_path / "other" / "sub").mkdir(parents=True)
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(CaseError, match=r"no image file in it or its sub-folders \(found: notes.txt, sub/\)"):
        discover(tmp_path / "other")


# ------------------------------------------------------------------------------ validation of ITK files

@pytest.fixture()
def mhd_case(tmp_path):
    folder = tmp_path / "case"
    vols = mr_volumes()
    paths = {m: write_volume(folder / f"{m}.mhd", vols[m], GEOMETRIES["oblique"]) for m in vols}
    return folder, paths


def test_a_missing_raw_file_is_refused_by_name(mhd_case):
    folder, paths = mhd_case
    (folder / "t1ce.raw").unlink()
    with pytest.raises(CaseError) as info:
        load_case(folder)
    msg = str(info.value)
    assert msg.startswith(str(paths["t1ce"]) + ":") and "t1ce.raw is missing" in msg


def test_a_short_raw_file_is_refused_before_reading(mhd_case, monkeypatch):
    folder, paths = mhd_case
    raw = folder / "t2.raw"
    raw.write_bytes(raw.read_bytes()[:1000])
    monkeypatch.setattr(ItkArrayProxy, "get_unscaled", lambda self: pytest.fail("voxel data was read"))
    with pytest.raises(CaseError) as info:
        load_case(folder)
    msg = str(info.value)
    needed = int(np.prod(SHAPE)) * 2
    assert msg.startswith(str(paths["t2"]) + ":") and f"t2.raw has 1000 bytes, the header needs {needed}" in msg


def test_a_missing_nhdr_data_file_is_refused_by_name(tmp_path):
    path = write_volume(tmp_path / "t1.nhdr", mr_volumes()["t1"], GEOMETRIES["brats"])
    (tmp_path / "t1.raw").unlink()
    with pytest.raises(CaseError, match="its data file t1.raw is missing") as info:
        open_header(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("ext", [".mha", ".nrrd"])
def test_a_truncated_attached_file_is_refused_before_reading(tmp_path, ext):
    path = write_volume(tmp_path / f"t1{ext}", mr_volumes()["t1"], GEOMETRIES["brats"])
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(CaseError, match="truncated: the header needs") as info:
        open_header(path)
    assert str(path) in str(info.value)


def test_a_truncated_compressed_file_is_refused_when_read(tmp_path):
    path = write_volume(tmp_path / "t1.mha", mr_volumes()["t1"], GEOMETRIES["brats"], compress=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    img = open_header(path)  # the header is whole; only reading the data shows the cut
    with pytest.raises(CaseError, match="truncated or corrupt") as info:
        np.asarray(img.dataobj, dtype=np.float32)
    assert str(path) in str(info.value)


def test_an_absurd_header_is_refused_without_reading_data(tmp_path, monkeypatch):
    path = write_volume(tmp_path / "t1.mha", mr_volumes()["t1"], GEOMETRIES["brats"])
    data = path.read_bytes().replace(b"DimSize = 24 28 20", b"DimSize = 5000 28 20")
    path.write_bytes(data)
    monkeypatch.setattr(ItkArrayProxy, "get_unscaled", lambda self: pytest.fail("voxel data was read"))
    with pytest.raises(CaseError, match="absurd size"):
        open_header(path)


def test_junk_and_vector_images_are_refused_by_name(tmp_path):
    junk = tmp_path / "t1.mha"
    junk.write_text("hello, not a MetaImage header\n" * 10)
    with pytest.raises(CaseError, match="not a readable MetaImage file") as info:
        open_header(junk)
    assert str(junk) in str(info.value)
    vec = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.float32), isVector=True)
    sitk.WriteImage(vec, str(tmp_path / "rgb.nrrd"))
    with pytest.raises(CaseError, match="3 values per voxel"):
        open_header(tmp_path / "rgb.nrrd")


def test_mgz_volumes_open_through_nibabel(tmp_path):
    vols, affine = mr_volumes(), ras_affine(GEOMETRIES["oblique"])
    (tmp_path / "c").mkdir()
    for m, v in vols.items():
        nib.save(nib.MGHImage(v.astype(np.float32), affine), str(tmp_path / "c" / f"{m}.mgz"))
    case = load_case(tmp_path / "c")
    for m, v in vols.items():
        expected, _ = canonical(v, affine)
        np.testing.assert_array_equal(case.images[m], expected.astype(np.float32))


# ------------------------------------------------------------------------------ round trip in world space

def test_exported_segmentation_overlays_the_mha_input_in_world_coordinates(tmp_path):
    geom = GEOMETRIES["oblique"]
    folder, paths, _ = build_scheme(tmp_path, "vsd", geom)
    marked = (5, 17, 13)  # an index [x, y, z] in the input volume
    seg = np.zeros(SHAPE, np.int16)
    seg[marked] = 4
    write_volume(paths["seg"], seg, geom)
    case = load_case(folder)
    assert int(case.labels.sum()) == 4
    np.testing.assert_array_equal(case.grid.to_original(case.images["flair"]),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(paths["flair"]))).transpose(2, 1, 0))
    out = write_segmentation(case.labels, case.grid, tmp_path / "out" / "segmentation.nii.gz")

    lps_in = np.array(sitk.ReadImage(str(paths["flair"])).TransformIndexToPhysicalPoint(marked))
    exported = nib.load(out)
    hit = np.argwhere(np.asarray(exported.dataobj) == 4)
    assert hit.shape == (1, 3)
    np.testing.assert_allclose(nib.affines.apply_affine(exported.affine, hit[0]), FLIP @ lps_in, atol=1e-4)
    # ITK reads the exported NIfTI back into LPS: same voxel, same physical point as the input's.
    back = sitk.ReadImage(str(out))
    assert tuple(int(i) for i in hit[0]) == marked
    np.testing.assert_allclose(back.TransformIndexToPhysicalPoint(marked), lps_in, atol=1e-4)
    assert sitk.GetArrayFromImage(back)[marked[::-1]] == 4


def test_simpleitk_is_imported_only_for_itk_files(tmp_path):
    from helpers import make_case_folder

    make_case_folder(tmp_path / "nifti")
    _, paths, _ = build_scheme(tmp_path / "itk", "nrrd", GEOMETRIES["brats"])
    code = ("import sys; from braingui.case import load_case; load_case(sys.argv[1]); "
            "print('SimpleITK' in sys.modules)")
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    runs = [subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, env=env, check=True)
            for p in (tmp_path / "nifti", paths["t1"].parent)]
    assert [r.stdout.strip() for r in runs] == ["False", "True"]
