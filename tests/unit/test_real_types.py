"""training.real_types (tumour-type cases on real anatomy) and the training options it needs (N, --init).

The "real" cases here are phantoms written as BraTS case folders (the tests never read ../shared): what is
checked is what the generator does to a brain and its tumour, class by class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from braingui.phantom import TumourSpec, write_case

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

SHAPE, SPACING = (64, 64, 40), (3.75, 3.75, 3.9)


@pytest.fixture(scope="module")
def brats(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("brats_like")
    centres = [(0.35, 0.45, 0.55), (0.65, 0.5, 0.6), (0.4, 0.6, 0.5)]
    for i, c in enumerate(centres):
        write_case(root / f"case{i}", case_id=f"SYNTHETIC_case{i}", shape=SHAPE, spacing=SPACING, seed=i,
                   tumour=TumourSpec(center=c, radius_mm=26.0, edema_mm=16.0, rim_mm=6.0, necrosis_fraction=0.5))
    (root / "grades.csv").write_text("case_id,grade\ncase0,HGG\ncase1,HGG\ncase2,LGG\n")
    return root


@pytest.fixture(scope="module")
def generated(brats, tmp_path_factory) -> tuple[Path, dict]:
    from training.real_types import generate

    out = tmp_path_factory.mktemp("real_types")
    return out, generate(brats, out, holdout=1, seed=0, no_tumour_draws=2)


def _read(out: Path, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    folder = out / "Radiology" / case_id
    images = np.stack([np.asarray(nib.load(str(folder / f"{case_id}_{m}.nii.gz")).dataobj, dtype=np.float32)
                       for m in ("flair", "t1", "t1ce", "t2")])
    return images, np.asarray(nib.load(str(folder / f"{case_id}_seg.nii.gz")).dataobj)


def test_layout_counts_and_held_out_cases_unused(generated):
    from training.data import cpm_radpath_cases

    out, rec = generated
    assert len(rec["held_out_cases"]) == 1 and len(rec["used_cases"]) == 2
    assert rec["counts"] == {"A": 4, "O": 4, "G": 4, "N": 4}  # 2 hosts x 2 tumours per class, 2 x 2 tumour-free
    cases = cpm_radpath_cases(out)
    assert sorted(c.label for c in cases) == sorted("AAAAOOOOGGGGNNNN")
    held = rec["held_out_cases"][0].replace("Brats18_", "")
    assert all("SYNTHETIC" in c.ref.name and held not in c.ref.name for c in cases)
    assert (out / "training_data_classification_labels.csv").read_text().startswith("# SYNTHETIC")
    assert "never commit" in (out / "README.txt").read_text()
    assert json.loads((out / "real_types.json").read_text())["held_out_cases"] == rec["held_out_cases"]


def test_split_keeps_a_case_of_each_grade_in_proportion():
    from training.real_types import split_cases

    folders = [Path(f"c{i}") for i in range(14)]
    grades = {f"c{i}": ("LGG" if i >= 12 else "HGG") for i in range(14)}
    used, held = split_cases(folders, 7, seed=3, grades=grades)
    assert len(held) == 7 and len(used) == 7 and not set(used) & set(held)
    assert sum(grades[h.name] == "LGG" for h in held) == 1  # 7 x 2/14
    assert split_cases(folders, 7, seed=3, grades=grades) == (used, held)


def test_classes_differ_in_the_tumour_only(generated, brats):
    from training.real_types import load_source

    out, rec = generated
    host = rec["used_cases"][0]
    tag = f"{host.replace('Brats18_', '')}_{host.replace('Brats18_', '')}"
    src = load_source(brats / host)
    brain = src["brain"]
    cls = {k: _read(out, f"SYNTHETIC_RT_{tag}_{k}") for k in "AOG"}
    none_images, none_labels = _read(out, f"SYNTHETIC_RT_{host.replace('Brats18_', '')}_none0_N")
    for images, _ in [*cls.values(), (none_images, none_labels)]:
        assert np.array_equal((images > 0).any(0), brain)  # the same brain, nothing outside it
    g_img, g_lab = cls["G"]
    a_img, a_lab = cls["A"]
    o_img, o_lab = cls["O"]
    et = g_lab == 4
    assert et.sum() > 20 and not (a_lab == 4).any() and not (o_lab == 4).any()
    normal = brain & (g_lab == 0) & (a_lab == 0)

    def rel(img, c, mask):
        return float(np.median(img[c][mask]) / np.median(img[c][normal]))

    assert rel(g_img, 2, et) > 1.3 * rel(a_img, 2, et)  # T1ce: G enhances where A does not
    assert rel(a_img, 0, a_lab == 1) > 1.2  # A: a FLAIR-bright mass
    assert (a_lab == 2).sum() < (g_lab == 2).sum()  # A: less edema
    core = o_lab == 1
    dark = (o_img[:, core] / np.median(o_img[:, normal], axis=1)[:, None] < 0.6).all(0)
    assert dark.sum() >= 1  # O: calcification-like foci, dark on every sequence
    assert not ((a_img[:, core] / np.median(a_img[:, normal], axis=1)[:, None] < 0.6).all(0)).any()
    # N: tumour gone, its place filled with brain-like intensity
    assert not none_labels.any()
    hole = src["labels"] > 0
    for c in range(4):
        ratio = np.median(none_images[c][hole]) / np.median(none_images[c][brain & ~hole])
        assert 0.5 < ratio < 2.0


def test_soft_targets_and_no_tumour_scoring():
    from training.train_classification import evaluate_split, soft_targets

    t = soft_targets(["A", "G", "N"])
    assert np.allclose(t, [[1, 0, 0], [0, 0, 1], [1 / 3, 1 / 3, 1 / 3]])

    class FirstVoxel(torch.nn.Module):  # logits = the first voxel of channels 0-2
        def forward(self, x):
            return x[:, :3, 0, 0, 0] * 10

    def sample(logits):
        image = np.zeros((4, 2, 2, 2), np.float32)
        image[:3, 0, 0, 0] = logits
        return {"image": image}

    samples = [sample([1, 0, 0]), sample([0, 0, 1]), sample([0, 1, 0]), sample([1, 0, 0]), sample([0, 0, 0])]
    m = evaluate_split(FirstVoxel(), samples, ["A", "G", "G", "N", "N"], torch.device("cpu"))
    assert m["confusion"] == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]
    assert m["no_tumour"]["n"] == 2 and m["no_tumour"]["called_over_half"] == 1
    assert m["no_tumour"]["mean_top_probability"] == pytest.approx((1.0 + 1 / 3) / 2, abs=1e-3)


def test_one_vs_rest_loss_anchors_each_logit_to_its_own_class():
    """Softmax cross-entropy cannot tell logits (5, 5, 5) from (-5, -5, -5) on a tumour-free case, nor lifting A's
    logit from lowering the others on an A case; the one-vs-rest term (``--ovr-weight``) can: it wants every logit
    low without a tumour and only the true class's logit high."""
    from training.train_classification import classification_loss, ovr_targets, soft_targets

    labels = ["A", "N"]
    assert np.array_equal(ovr_targets(["A", "O", "G", "N"]), [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    soft, ovr = torch.from_numpy(soft_targets(labels)), torch.from_numpy(ovr_targets(labels))
    ce = torch.nn.CrossEntropyLoss()
    high = torch.tensor([[8.0, 4.0, 4.0], [5.0, 5.0, 5.0]])  # A above the rest by 4; N: all high
    low = torch.tensor([[4.0, 0.0, 0.0], [-5.0, -5.0, -5.0]])  # the same differences, lower
    assert classification_loss(high, soft, ovr, ce, 0.0) == pytest.approx(float(classification_loss(low, soft, ovr, ce, 0.0)))
    assert classification_loss(high, soft, ovr, ce, 0.0) == pytest.approx(float(ce(high, soft)))
    with_ovr_high = float(classification_loss(high, soft, ovr, ce, 1.0))
    with_ovr_low = float(classification_loss(low, soft, ovr, ce, 1.0))
    assert with_ovr_low < with_ovr_high - 1.0
    bce = torch.nn.functional.binary_cross_entropy_with_logits(low, ovr)
    assert with_ovr_low == pytest.approx(float(ce(low, soft) + bce), rel=1e-6)


def test_init_starts_from_a_bundle(tmp_path, generated):
    """--init loads a bundle's weights (sha256-checked): with lr 0 the final weights are the bundle's."""
    from braingui.inference.bundle import load_state_dict
    from braingui.inference.manifest import read_bundle
    from training.export_bundle import main as export
    from training.train_classification import main

    out, _ = generated
    argv = ["--cpm", str(out), "--tiny", "--shape", "32", "32", "32", "--batch", "2", "--steps", "1",
            "--threads", "1", "--seed", "4"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert export(["--checkpoint", str(tmp_path / "a" / "final.pt"), "--out", str(tmp_path / "bundle"),
                   "--name", "tiny-cls"]) == 0
    assert main([*argv, "--seed", "9", "--lr", "0", "--weight-decay", "0", "--init", str(tmp_path / "bundle"),
                 "--out", str(tmp_path / "b")]) == 0
    start = load_state_dict(read_bundle(tmp_path / "bundle"))
    final = torch.load(tmp_path / "b" / "final.pt", weights_only=True)["model"]
    weights = [k for k in start if "running" not in k and "num_batches" not in k]
    assert weights and all(torch.equal(start[k], final[k].float()) for k in weights)
    assert "initial weights: bundle tiny-cls" in (tmp_path / "b" / "train.log").read_text()
    (tmp_path / "bundle" / "weights.pt").write_bytes(b"broken")
    with pytest.raises(Exception, match="sha256"):
        main([*argv, "--init", str(tmp_path / "bundle"), "--out", str(tmp_path / "c")])


def test_the_run_says_which_synthetic_data_it_trained_on(generated, tmp_path):
    from training.real_types import NOTE
    from training.synthetic_types import STAND_IN_NOTE
    from training.train_classification import data_note

    out, _ = generated
    assert data_note([out]) == NOTE and "real BraTS" in NOTE
    assert data_note([tmp_path]) == STAND_IN_NOTE
    assert data_note([out, tmp_path, out]) == f"{NOTE}; {STAND_IN_NOTE}"
