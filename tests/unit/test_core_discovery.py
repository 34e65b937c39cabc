"""Case discovery: naming schemes, case-insensitivity, .nii/.nii.gz, MSD 4D, explicit mapping, ambiguity."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from braingui.discovery import (
    SCHEME_BARE,
    SCHEME_BRATS,
    SCHEME_BRATS2023,
    SCHEME_EXPLICIT,
    SCHEME_MSD,
    classify_name,
    discover,
)
from braingui.errors import CaseError
from helpers import LPS_AFFINE, MODS, SCHEMES, SHAPE, brain_volumes, make_case_folder, tumour_labels, write_nifti

EXPECTED_SCHEME = {"brats": SCHEME_BRATS, "brats2023": SCHEME_BRATS2023, "bare": SCHEME_BARE,
                   "bare_t1c": SCHEME_BARE, "bare_t1gd": SCHEME_BARE, "bare_bet": SCHEME_BARE}


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_each_scheme_finds_every_modality_and_the_label(tmp_path, scheme, ext):
    paths = make_case_folder(tmp_path / "case", scheme=scheme, case_id="BraTS-GLI-00012-000" if scheme == "brats2023"
                             else "Brats18_2013_3_1", ext=ext)
    files = discover(tmp_path / "case")
    assert {m: files.images[m].name for m in MODS} == {m: paths[m].name for m in MODS}
    assert files.seg is not None and files.seg.name == paths["seg"].name
    assert files.msd_image is None
    assert files.scheme == EXPECTED_SCHEME[scheme]


def test_case_id_comes_from_the_prefixed_names(tmp_path):
    make_case_folder(tmp_path / "folder_name", scheme="brats", case_id="Brats18_TCIA01_201_1")
    assert discover(tmp_path / "folder_name").case_id == "Brats18_TCIA01_201_1"
    make_case_folder(tmp_path / "f2023", scheme="brats2023", case_id="BraTS-GLI-00012-000")
    assert discover(tmp_path / "f2023").case_id == "BraTS-GLI-00012-000"
    make_case_folder(tmp_path / "bare_folder", scheme="bare")
    assert discover(tmp_path / "bare_folder").case_id == "bare_folder"


def test_names_and_extensions_are_case_insensitive(tmp_path):
    folder = tmp_path / "c"
    vols = brain_volumes()
    names = {"flair": "Case7_FLAIR.NII.GZ", "t1": "Case7_T1.Nii", "t1ce": "Case7_T1CE.nii.GZ", "t2": "case7_t2.NII"}
    for m, name in names.items():  # nibabel normalises odd-case extensions when saving: rename after
        gz = name.lower().endswith(".gz")
        written = write_nifti(folder / f"tmp_{m}{'.nii.gz' if gz else '.nii'}", vols[m], LPS_AFFINE)
        written.rename(folder / name)
    write_nifti(folder / "Case7_SEG.nii.gz", tumour_labels(), LPS_AFFINE, np.uint8)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*names.values(), "Case7_SEG.nii.gz"])
    files = discover(folder)
    assert {m: files.images[m].name for m in MODS} == names
    assert files.seg.name == "Case7_SEG.nii.gz"


def test_optional_label_may_be_absent(tmp_path):
    make_case_folder(tmp_path / "c", scheme="brats2023", labels=None)
    files = discover(tmp_path / "c")
    assert files.seg is None and set(files.images) == set(MODS)


@pytest.mark.parametrize("name, role", [
    ("Brats18_2013_3_1_t1ce.nii.gz", "t1ce"),
    ("Brats18_2013_3_1_t1.nii.gz", "t1"),
    ("BraTS2021_00000_flair.nii.gz", "flair"),
    ("BraTS-GLI-00000-000-t2f.nii.gz", "flair"),
    ("BraTS-GLI-00000-000-t1n.nii.gz", "t1"),
    ("BraTS-GLI-00000-000-t1c.nii.gz", "t1ce"),
    ("BraTS-GLI-00000-000-t2w.nii.gz", "t2"),
    ("BraTS-GLI-00000-000-seg.nii.gz", "seg"),
    ("T1_fla_bet.nii", "t1"),
    ("flair_fla_bet.nii.gz", "flair"),
    ("t1gd.nii.gz", "t1ce"),
    ("T1C.nii", "t1ce"),
    ("t2_bet.nii.gz", "t2"),
    ("label.nii.gz", "seg"),
    ("notes.txt", None),
    ("BRATS_001.nii.gz", None),
])
def test_classify_name(name, role):
    assert classify_name(name)[0] == role


def test_unrelated_files_are_ignored_not_fatal(tmp_path):
    paths = make_case_folder(tmp_path / "c", scheme="brats")
    (tmp_path / "c" / "README.txt").write_text("hello")
    write_nifti(tmp_path / "c" / "brainmask.nii.gz", np.ones(SHAPE, np.uint8), LPS_AFFINE)
    files = discover(tmp_path / "c")
    assert files.images["t1"] == paths["t1"]
    assert [p.name for p in files.ignored] == ["brainmask.nii.gz"]


def test_two_files_for_one_modality_is_an_error_listing_both(tmp_path):
    make_case_folder(tmp_path / "c", scheme="bare")
    write_nifti(tmp_path / "c" / "t1_bet.nii.gz", brain_volumes()["t1"], LPS_AFFINE)
    with pytest.raises(CaseError) as info:
        discover(tmp_path / "c")
    msg = str(info.value)
    assert "ambiguous" in msg
    assert "t1.nii.gz" in msg and "t1_bet.nii.gz" in msg
    assert str(tmp_path / "c") in msg


def test_same_name_as_nii_and_nii_gz_is_ambiguous(tmp_path):
    make_case_folder(tmp_path / "c", scheme="brats", ext=".nii.gz")
    write_nifti(tmp_path / "c" / "Case01_flair.nii", brain_volumes()["flair"], LPS_AFFINE)
    with pytest.raises(CaseError, match="ambiguous") as info:
        discover(tmp_path / "c")
    listed = str(info.value).split(": ", 2)[-1]
    assert "Case01_flair.nii.gz" in listed and re.search(r"Case01_flair\.nii(?!\.gz)", listed)


def test_explicit_mapping_resolves_an_ambiguity(tmp_path):
    """The ambiguity message tells the user to name the file with --t1; doing so must work."""
    make_case_folder(tmp_path / "c", scheme="bare")
    chosen = write_nifti(tmp_path / "c" / "t1_bet.nii.gz", brain_volumes()["t1"], LPS_AFFINE)
    files = discover(tmp_path / "c", explicit={"t1": chosen})
    assert files.images["t1"] == chosen
    assert files.images["flair"].name == "flair.nii.gz"


def test_missing_modality_names_it_and_the_folder(tmp_path):
    paths = make_case_folder(tmp_path / "c", scheme="brats")
    paths["t1ce"].unlink()
    with pytest.raises(CaseError) as info:
        discover(tmp_path / "c")
    msg = str(info.value)
    assert "missing modality t1ce" in msg and str(tmp_path / "c") in msg


def test_missing_folder_and_broken_folder_link(tmp_path):
    with pytest.raises(CaseError, match="no such file"):
        discover(tmp_path / "nope")
    os.symlink(tmp_path / "gone", tmp_path / "link")
    with pytest.raises(CaseError, match="broken symbolic link") as info:
        discover(tmp_path / "link")
    assert str(tmp_path / "link") in str(info.value)


def test_explicit_mapping_without_folder(tmp_path):
    paths = make_case_folder(tmp_path / "anywhere", scheme="bare")
    renamed = {}
    for m in MODS:  # names that no scheme recognises
        renamed[m] = paths[m].rename(tmp_path / "anywhere" / f"volume_{MODS.index(m)}.nii.gz")
    files = discover(None, explicit={**renamed, "seg": paths["seg"]})
    assert files.images == renamed and files.seg == paths["seg"]
    assert files.scheme == SCHEME_EXPLICIT
    with pytest.raises(CaseError, match="missing modality t2"):
        discover(None, explicit={m: renamed[m] for m in ("flair", "t1", "t1ce")})
    with pytest.raises(CaseError, match="unknown modality"):
        discover(None, explicit={**renamed, "pd": renamed["t1"]})


def test_explicit_mapping_overrides_the_folder(tmp_path):
    make_case_folder(tmp_path / "c", scheme="brats")
    other = write_nifti(tmp_path / "elsewhere" / "my_t2.nii", brain_volumes()["t2"], LPS_AFFINE)
    files = discover(tmp_path / "c", explicit={"t2": other})
    assert files.images["t2"] == other
    assert files.images["t1"].name == "Case01_t1.nii.gz"


# ---------------------------------------------------------------- MSD Task01 (one 4D file)

def _msd_image(path: Path) -> Path:
    vols = brain_volumes()
    return write_nifti(path, np.stack([vols[m] for m in MODS], axis=-1), LPS_AFFINE)


def test_msd_file_with_label_in_sibling_labelsTr(tmp_path):
    image = _msd_image(tmp_path / "Task01_BrainTumour" / "imagesTr" / "BRATS_001.nii.gz")
    label = write_nifti(tmp_path / "Task01_BrainTumour" / "labelsTr" / "BRATS_001.nii.gz",
                        tumour_labels(values=(1, 2, 3)), LPS_AFFINE, np.uint8)
    files = discover(image)
    assert files.msd_image == image and files.seg == label and files.scheme == SCHEME_MSD
    assert files.case_id == "BRATS_001"
    # The imagesTr folder holding one image also finds the sibling label.
    files = discover(image.parent)
    assert files.msd_image == image and files.seg == label and files.scheme == SCHEME_MSD


def test_msd_file_without_label(tmp_path):
    image = _msd_image(tmp_path / "BRATS_002.nii.gz")
    files = discover(image)
    assert files.msd_image == image and files.seg is None


@pytest.mark.parametrize("label_name", ["BRATS_003_seg.nii.gz", "label.nii.gz", "mask.nii.gz"])
def test_msd_folder_with_label_beside_the_image(tmp_path, label_name):
    image = _msd_image(tmp_path / "case" / "BRATS_003.nii.gz")
    label = write_nifti(tmp_path / "case" / label_name, tumour_labels(values=(1, 2, 3)), LPS_AFFINE, np.uint8)
    files = discover(tmp_path / "case")
    assert files.msd_image == image
    assert files.seg == label
    assert files.scheme == SCHEME_MSD


def test_single_3d_file_is_refused_as_a_case(tmp_path):
    path = write_nifti(tmp_path / "x.nii.gz", brain_volumes()["t1"], LPS_AFFINE)
    with pytest.raises(CaseError, match="4D") as info:
        discover(path)
    assert str(path) in str(info.value)


def test_two_msd_images_in_one_folder_are_ambiguous(tmp_path):
    _msd_image(tmp_path / "imagesTr" / "BRATS_001.nii.gz")
    _msd_image(tmp_path / "imagesTr" / "BRATS_002.nii.gz")
    with pytest.raises(CaseError, match="ambiguous") as info:
        discover(tmp_path / "imagesTr")
    assert "BRATS_001.nii.gz" in str(info.value) and "BRATS_002.nii.gz" in str(info.value)
