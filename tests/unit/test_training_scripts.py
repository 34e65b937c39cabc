"""Two training steps of each training script on tiny synthetic data, resume, and export -> load round trip.

Everything is tiny (32-voxel inputs, toy networks) and runs in-process (``main(argv)``), so the module
costs seconds, not minutes. The real runs are documented in the model cards and in docs of the scripts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from braingui.phantom import TumourSpec, write_case

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _log_losses(run: Path) -> list[float]:
    lines = (run / "train.log").read_text().splitlines()
    return [float(line.split(" loss ")[1].split()[0]) for line in lines if " loss " in line and "step " in line
            and "validation" not in line]


@pytest.fixture(scope="module")
def cls_data(tmp_path_factory) -> Path:
    from training.synthetic_types import generate

    root = tmp_path_factory.mktemp("cls_data")
    generate(root, per_class=3, seed=3, shape=(32, 32, 24), spacing=(7.5, 7.5, 6.5), progress=False)
    return root


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory, cls_data) -> Path:
    from training.train_classification import main

    run = tmp_path_factory.mktemp("cls_run")
    argv = ["--cpm", str(cls_data), "--tiny", "--shape", "32", "32", "32", "--batch", "2", "--steps", "2",
            "--log-every", "1", "--checkpoint-every", "1", "--threads", "1", "--out", str(run)]
    assert main(argv) == 0
    return run


def test_synthetic_types_layout(cls_data):
    from training.data import cpm_radpath_cases, read_class_csv

    csv_text = (cls_data / "training_data_classification_labels.csv").read_text()
    assert csv_text.startswith("# SYNTHETIC stand-in for CPM-RadPath")
    assert "SYNTHETIC" in (cls_data / "README.txt").read_text()
    classes = read_class_csv(cls_data / "training_data_classification_labels.csv")
    assert sorted(classes.values()) == ["A"] * 3 + ["G"] * 3 + ["O"] * 3
    cases = cpm_radpath_cases(cls_data)
    assert all((Path(c.ref.path) / f"{c.ref.name}_t1ce.nii.gz").exists() for c in cases)
    feats = [json.loads(x) for x in (cls_data / "synthetic_tumour_features.jsonl").read_text().splitlines()]
    by_class = {f["class"]: f["tumour"] for f in feats}
    assert by_class["A"]["rim_mm"] == 0 and by_class["G"]["rim_mm"] > 0 and by_class["O"]["calcifications"] > 0


def test_class_features_are_in_the_images():
    """G enhances strongly, A not at all, O faintly; O has dark calcification foci (label-free check)."""
    from braingui.phantom import TISSUES
    from training.synthetic_types import make_typed_case

    enh = {}
    for label in "AOG":
        ph, desc = make_typed_case(label, seed=11, shape=(60, 60, 40), spacing=(4.0, 4.0, 3.9))
        t = ph.tissues
        enh[label] = int((t == TISSUES["enhancing"]).sum())
        if label == "O":
            assert (t == TISSUES["calcification"]).sum() > 0
        if label == "A":
            assert enh[label] == 0 and (t == TISSUES["non_enhancing"]).sum() > 0
    assert enh["G"] > enh["O"] > 0


def test_classification_two_steps_and_resume(cls_run, cls_data):
    from training.train_classification import main

    losses = _log_losses(cls_run)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    ckpt = torch.load(cls_run / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2
    final = torch.load(cls_run / "final.pt", weights_only=True)
    assert final["steps"] == 2 and final["network"] == "DenseNet169" and final["prep"]["shape"] == [32, 32, 32]
    assert "SYNTHETIC" in final["data"]["note"]
    config = json.loads((cls_run / "config.json").read_text())
    assert config["lr"] == 1e-4 and config["weight_decay"] == 1e-5 and config["dropout"] == 0.2
    argv = ["--cpm", str(cls_data), "--tiny", "--shape", "32", "32", "32", "--batch", "2", "--steps", "3",
            "--log-every", "1", "--checkpoint-every", "1", "--threads", "1", "--out", str(cls_run), "--resume"]
    assert main(argv) == 0
    log = (cls_run / "train.log").read_text()
    assert "resumed at step 2" in log and "step 3/3" in log and "step 1/3" not in log
    assert torch.load(cls_run / "final.pt", weights_only=True)["steps"] == 3


def test_classification_defaults_are_the_papers():
    from training.train_classification import build_parser, network_config

    args = build_parser().parse_args(["--cpm", "x", "--out", "y"])
    assert (args.lr, args.weight_decay, args.batch, args.dropout, args.epochs) == (1e-4, 1e-5, 4, 0.2, 20)
    assert args.shape == [120, 148, 120] and args.split == [0.7, 0.2, 0.1]
    name, kwargs = network_config(args)
    assert name == "DenseNet169" and kwargs["growth_rate"] == 32 and kwargs["block_config"] == [6, 12, 32, 32]


def test_augmentation_is_seeded_and_keeps_shape():
    from training.train_classification import Augment

    x = np.random.default_rng(0).random((4, 32, 32, 32), dtype=np.float32)
    aug = Augment((32, 32, 32), p_affine=1.0, p_elastic=1.0, p_flip=0.5)
    a = aug(x, np.random.default_rng(5))
    b = aug(x, np.random.default_rng(5))
    assert a.shape == x.shape and np.array_equal(a, b) and not np.allclose(a, x)
    identity = Augment((32, 32, 32), p_affine=1.0, p_elastic=0.0, p_flip=0.0, rotate=0, scale=0, shift=0)
    assert np.abs(identity(x, np.random.default_rng(0)) - x).max() < 1e-4


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> tuple[Path, Path]:
    from training.train_segmentation import main

    data = tmp_path_factory.mktemp("seg_data")
    for i in range(3):
        write_case(data / f"case{i}", case_id=f"SYNTHETIC_tiny{i}", shape=(32, 36, 28), spacing=(6.0, 6.0, 6.0),
                   seed=i, tumour=TumourSpec(radius_mm=30.0, edema_mm=15.0))
    run = tmp_path_factory.mktemp("seg_run")
    argv = ["--brats", str(data), "--val-cases", "SYNTHETIC_tiny2", "--init-filters", "8", "--crop", "16", "16", "16",
            "--steps", "2", "--log-every", "1", "--checkpoint-every", "1", "--val-every", "2", "--threads", "1",
            "--vae-nz", "8", "--out", str(run)]
    assert main(argv) == 0
    return data, run


def test_segmentation_two_steps_and_resume(seg_run):
    from training.train_segmentation import main

    data, run = seg_run
    losses = _log_losses(run)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    final = torch.load(run / "final.pt", weights_only=True)
    assert set(final) >= {"model", "network", "kwargs", "regions", "prep", "train_cases", "val_cases", "steps"}
    assert final["network"] == "SegResNetVAE" and final["val_cases"] == ["SYNTHETIC_tiny2"] and final["steps"] == 2
    argv = ["--brats", str(data), "--val-cases", "SYNTHETIC_tiny2", "--init-filters", "8", "--crop", "16", "16", "16",
            "--steps", "3", "--log-every", "1", "--checkpoint-every", "1", "--val-every", "2", "--threads", "1",
            "--vae-nz", "8", "--out", str(run), "--resume"]
    assert main(argv) == 0
    log = (run / "train.log").read_text()
    assert "resumed at step 2" in log and "step 3/3" in log
    assert torch.load(run / "final.pt", weights_only=True)["steps"] == 3


def test_export_load_round_trip_segmentation(seg_run, tmp_path):
    from braingui.inference.bundle import load_network
    from braingui.inference.manifest import read_bundle
    from braingui.inference.networks import build_network
    from training.export_bundle import export

    _, run = seg_run
    bundle = export(run / "final.pt", tmp_path / "seg", "tiny-seg", metrics={"dice": {"WT": 0.5}})
    assert bundle.manifest.network == "SegResNet"  # VAE branch dropped
    card = read_bundle(tmp_path / "seg").manifest.model_card
    assert card["held_out_cases"] == ["SYNTHETIC_tiny2"] and card["demo"] is True
    assert "not for clinical use" in card["intended_use"] and any("Menze" in c for c in card["citations"])
    ckpt = torch.load(run / "final.pt", weights_only=True)
    trained = build_network(ckpt["network"], ckpt["kwargs"], for_inference=True)
    trained.load_state_dict({k: v for k, v in ckpt["model"].items() if not k.startswith("vae_")})
    trained.eval()
    loaded = load_network(bundle)
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(trained(x), loaded(x))


def test_export_load_round_trip_classification(cls_run, tmp_path):
    from braingui.inference.bundle import load_network
    from braingui.inference.networks import build_network
    from training.export_bundle import export

    ckpt = torch.load(cls_run / "final.pt", weights_only=True)
    trained = build_network(ckpt["network"], ckpt["kwargs"])
    trained.load_state_dict(ckpt["model"])
    trained.eval()
    x = torch.randn(1, 4, 32, 32, 32)
    bundle = export(cls_run / "final.pt", tmp_path / "cls", "tiny-cls")
    assert bundle.manifest.classification.shape == (32, 32, 32)
    assert bundle.manifest.classification.cam_layer == "features.denseblock1"
    assert bundle.manifest.model_card["synthetic_training_data"] is True
    with torch.no_grad():
        assert torch.equal(trained(x), load_network(bundle)(x))
        half = export(cls_run / "final.pt", tmp_path / "cls16", "tiny-cls16", fp16=True)
        assert half.manifest.weights_dtype == "float16"
        assert torch.allclose(trained(x), load_network(half)(x), atol=2e-2)


def test_msd_task01_layout_gives_the_same_regions_as_brats_names(tmp_path):
    """An MSD Task01 folder (4D FLAIR/T1w/T1gd/T2w image, labels 1 edema / 2 non-enhancing / 3 enhancing)
    is read with the MSD convention: its ET / TC / WT equal those of the same phantom in BraTS naming."""
    import nibabel as nib

    from braingui import labels as lab
    from training.data import brats_cases, load_ref, msd_cases

    paths = write_case(tmp_path / "brats" / "c0", case_id="SYNTHETIC_msd0", shape=(32, 36, 28), spacing=(6.0, 6.0, 6.0),
                       seed=4, tumour=TumourSpec(radius_mm=30.0, edema_mm=15.0))
    imgs = [nib.load(paths[m]) for m in ("flair", "t1", "t1ce", "t2")]
    data4d = np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in imgs], axis=-1)
    brats_seg = np.asarray(nib.load(paths["seg"]).dataobj).astype(np.uint8)
    msd_seg = np.zeros_like(brats_seg)
    msd_seg[brats_seg == 2], msd_seg[brats_seg == 1], msd_seg[brats_seg == 4] = 1, 2, 3
    assert set(np.unique(msd_seg)) == {0, 1, 2, 3}
    (tmp_path / "msd" / "imagesTr").mkdir(parents=True)
    (tmp_path / "msd" / "labelsTr").mkdir()
    nib.save(nib.Nifti1Image(data4d, imgs[0].affine), tmp_path / "msd" / "imagesTr" / "BRATS_001.nii.gz")
    nib.save(nib.Nifti1Image(msd_seg, imgs[0].affine), tmp_path / "msd" / "labelsTr" / "BRATS_001.nii.gz")

    refs = msd_cases(tmp_path / "msd")
    assert [r.name for r in refs] == ["BRATS_001"] and refs[0].label_convention == lab.MSD
    msd_case, brats_case = load_ref(refs[0]), load_ref(brats_cases(tmp_path / "brats")[0])
    for region, mask in lab.regions(brats_case.labels).items():
        assert mask.sum() > 0 and np.array_equal(lab.regions(msd_case.labels)[region], mask), region
    assert np.allclose(msd_case.stack(("t1ce",)), brats_case.stack(("t1ce",)))


def test_evaluate_writes_per_case_tables_and_the_confusion_matrix(cls_run, cls_data, seg_run, tmp_path):
    """``python -m training.evaluate`` on exported toy bundles: the files it promises, consistent counts."""
    import csv

    from training.evaluate import main
    from training.export_bundle import export

    export(cls_run / "final.pt", tmp_path / "cls", "tiny-cls")
    seg_data, seg_dir = seg_run
    export(seg_dir / "final.pt", tmp_path / "seg", "tiny-seg")
    out = tmp_path / "eval"
    argv = ["--cls-bundle", str(tmp_path / "cls"), "--cpm", str(cls_data), "--seg-bundle", str(tmp_path / "seg"),
            "--brats", str(seg_data), "--figures", "1", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    rows = list(csv.reader((out / "confusion_matrix.csv").open()))
    assert rows[0] == ["true \\ predicted", "A", "O", "G"]
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert counts.sum() == 9 and counts.sum(axis=1).tolist() == [3, 3, 3]
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "figures").glob("*.png"))) == 1
    per_case = list(csv.DictReader((out / "classification_per_case.csv").open()))
    assert len(per_case) == 9 and all(0.0 <= float(r["cam_mass_in_wt"]) <= 1.0 for r in per_case)
    summary = json.loads((out / "metrics.json").read_text())
    cls = summary["classification"]
    assert np.trace(counts) / 9 == pytest.approx(cls["accuracy"])
    assert summary["card_metrics"]["classification"]["balanced_accuracy"] == cls["balanced_accuracy"]
    # segmentation is scored on every labelled case given: the 3 BraTS-named ones and the 9 typed phantoms
    seg_rows = list(csv.DictReader((out / "segmentation_per_case.csv").open()))
    assert len(seg_rows) == 12 and {"SYNTHETIC_tiny0", "SYNTHETIC_tiny1", "SYNTHETIC_tiny2"} <= {r["case"] for r in seg_rows}
    for region in ("ET", "TC", "WT"):
        values = [float(r[f"dice_{region}"]) for r in seg_rows]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert summary["segmentation"]["mean"][region]["dice"] == pytest.approx(np.mean(values), abs=1e-3)


def test_occlusion_replaces_the_tumour_with_normal_brain():
    """training.cam_study's occlusion test: the tumour's voxels get the mean of the other brain voxels."""
    from training.cam_study import occluded_prediction

    class Brightest(torch.nn.Module):  # "O" when some voxel of channel 0 is brighter than 1, else "G"
        def forward(self, x):
            m = x[:, 0].amax(dim=(1, 2, 3))
            return torch.stack([-m, m - 1.0, torch.zeros_like(m)], 1)

    x = torch.zeros(1, 2, 12, 12, 12)
    x[0, :, 1:11, 1:11, 1:11] = 0.5  # brain
    wt = np.zeros((12, 12, 12), dtype=bool)
    wt[4:7, 4:7, 4:7] = True
    x[0, 0][torch.from_numpy(wt)] = 3.0  # a bright tumour
    assert ["A", "O", "G"][int(Brightest()(x).argmax(1))] == "O"
    assert occluded_prediction(Brightest(), x, wt, ("A", "O", "G")) == "G"
    assert float(x[0, 0].amax()) == 3.0  # the input itself is left as it was
