"""Train the tumour-type classifier as in the paper: 3D DenseNet-BC-169 on the four modalities.

Defaults are the paper's configuration (Section IV-A-2, IV-B-2, V-B): DenseNet-BC 169 layers (blocks
6/12/32/32, growth rate 32, 64 initial features), 3D convolutions / pooling / batch norm, dropout 0.2,
4 input channels (FLAIR, T1, T1ce, T2), 3 classes (A, O, G), Adam with learning rate 1e-4 and weight decay
1e-5, batch 4, cross-entropy, 20 epochs, inputs z-scored, background-cropped at a tolerance of 1e-8 and
resized to 120x148x120 (the app's own :func:`braingui.preprocess.prepare_classification`), augmented by
random affine, random horizontal and vertical flips and random elastic deformation; the data split 70 %
training / 20 % validation / 10 % test (stratified per class here). The weights with the best validation
balanced accuracy are kept as ``best.pt``, the last ones as ``final.pt``.

Smaller configurations are options for machines without a GPU: ``--shape 60 74 60`` (half resolution),
``--tiny`` (a toy DenseNet for tests), ``--growth-rate``, ``--block-config``, ``--init-features``.

Data: ``--cpm`` a CPM-RadPath 2020 folder (case folders + a CSV of classes A / O / G), or the synthetic
stand-in written by ``python -m training.synthetic_types`` (the log and the checkpoints say so).

Several GPUs or machines: start it with ``torchrun`` (:mod:`training.distributed`; see training/README.md).
``--batch`` is then the batch of each process (the effective batch is N x batch, the gradients averaged),
an epoch is one pass over the training cases shared out among the processes (fewer steps per epoch),
the learning rate is used as given; rank 0 alone logs, validates and writes.

Example (the shipped demo model, 2 CPU threads)::

    python -m training.synthetic_types --out runs/data/synth_types_v2 --per-class 120 --seed 1
    python -m training.train_classification --cpm runs/data/synth_types_v2 --shape 60 74 60 \\
        --steps 2835 --threads 2 --out runs/cls_d169_s60_v2      # 45 epochs, about 2 h on 2 CPU cores
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from braingui.preprocess import BACKGROUND_TOLERANCE, PAPER_CLS_SHAPE, ClassificationPrep
from braingui import atomic
from training import common, distributed
from training.data import (CPM_CLASSES, NO_TUMOUR, TRAINING_LABELS, EpochSampler, LabelledCase,
                           cached_classification_sample, cpm_radpath_cases, stratified_split)
from training.metrics import classification_metrics
from training.synthetic_types import CLASS_TITLES, STAND_IN_NOTE

TINY = {"init_features": 8, "growth_rate": 4, "block_config": [1, 1, 1, 1]}
"""The ``--tiny`` DenseNet (tests only): same layer names (``features.denseblock1``), a few k parameters."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_classification", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    common.add_common_args(p)
    d = p.add_argument_group("data")
    d.add_argument("--cpm", action="append", default=[], type=Path, required=True,
                   help="CPM-RadPath style folder: case folders + class CSV (repeatable)")
    d.add_argument("--labels-csv", type=Path, default=None, help="the class CSV (default: found in the --cpm folder)")
    d.add_argument("--split", type=float, nargs=3, default=[0.7, 0.2, 0.1], metavar=("TRAIN", "VAL", "TEST"),
                   help="data split fractions (paper: 0.7 0.2 0.1)")
    d.add_argument("--cache", type=Path, default=None, help="preprocessed-input cache folder (default OUT/cache)")
    d.add_argument("--init", type=Path, default=None,
                   help="start from these weights: a classification bundle folder (sha256-checked) or a .pt of "
                        "this script (its 'model'); the network options must match (fine-tuning)")
    n = p.add_argument_group("network")
    n.add_argument("--init-features", type=int, default=64)
    n.add_argument("--growth-rate", type=int, default=32)
    n.add_argument("--block-config", type=int, nargs=4, default=[6, 12, 32, 32], help="DenseNet-169: 6 12 32 32")
    n.add_argument("--dropout", type=float, default=0.2)
    n.add_argument("--tiny", action="store_true", help=f"a toy DenseNet for tests ({TINY})")
    o = p.add_argument_group("optimisation")
    o.add_argument("--shape", type=int, nargs=3, default=list(PAPER_CLS_SHAPE), help="network input size (paper 120 148 120)")
    o.add_argument("--lr", type=float, default=1e-4)
    o.add_argument("--weight-decay", type=float, default=1e-5)
    o.add_argument("--batch", type=int, default=4)
    o.add_argument("--epochs", type=int, default=20)
    o.add_argument("--steps", type=int, default=0, help="total steps; overrides --epochs when > 0")
    o.add_argument("--no-augment", action="store_true", help="switch the augmentation off")
    o.add_argument("--class-weights", choices=("none", "balanced"), default="none",
                   help="cross-entropy class weights (balanced: inverse class frequency)")
    o.add_argument("--val-every", type=int, default=0, help="validate every N steps (default: every epoch)")
    o.add_argument("--ovr-weight", type=float, default=0.0,
                   help="weight of a one-vs-rest logistic loss added to the cross-entropy (default 0: off): each "
                        "class logit trained towards 1 for its class and 0 otherwise, all three towards 0 for a "
                        "tumour-free case (N), so that a class's logit, and the heat map taken of it, rises only "
                        "with evidence for that class (see ovr_targets)")
    return p


class Augment:
    """The paper's augmentation: random affine, horizontal / vertical flips, random elastic deformation.

    Affine (rotation up to ``rotate`` rad about each axis, scale +-``scale``, shift up to ``shift`` of the
    size) and elastic deformation (a smooth random displacement field, up to ``elastic_voxels`` voxels,
    interpolated from a coarse control grid every ~``elastic_spacing`` voxels, as TorchIO's
    RandomElasticDeformation) are composed into one sampling grid and applied with a single trilinear
    ``grid_sample`` (zeros outside), which costs tens of milliseconds on a CPU where MONAI's
    ``Rand3DElastic`` took over a second per 60x74x60 sample. Horizontal and vertical refer to the axial
    view: flips of the x (left-right) and y (posterior-anterior) axes. All randomness comes from the run's
    generator, so a resumed run continues exactly.
    """

    def __init__(self, shape: tuple[int, int, int], p_affine: float = 0.5, p_elastic: float = 0.3,
                 p_flip: float = 0.5, rotate: float = 0.17, scale: float = 0.1, shift: float = 0.05,
                 elastic_voxels: float = 3.0, elastic_spacing: float = 10.0):
        self.shape = tuple(int(s) for s in shape)
        self.p_affine, self.p_elastic, self.p_flip = p_affine, p_elastic, p_flip
        self.rotate, self.scale, self.shift = rotate, scale, shift
        self.elastic_voxels, self.elastic_spacing = elastic_voxels, elastic_spacing
        half = torch.tensor([n / 2.0 for n in self.shape])
        axes = [(torch.arange(n, dtype=torch.float32) + 0.5) - n / 2.0 for n in self.shape]
        self.points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # (X, Y, Z, 3) voxels from centre
        self.half = half

    def _rotation(self, angles: np.ndarray) -> torch.Tensor:
        r = torch.eye(3, dtype=torch.float64)
        for axis, a in enumerate(angles):
            c, s = float(np.cos(a)), float(np.sin(a))
            i, j = [k for k in range(3) if k != axis]
            m = torch.eye(3, dtype=torch.float64)
            m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
            r = m @ r
        return r.float()

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one float32 ``(C, X, Y, Z)`` sample."""
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        warp = None
        if rng.random() < self.p_affine:
            m = self._rotation(rng.uniform(-self.rotate, self.rotate, 3))
            m = m * torch.tensor(1.0 + rng.uniform(-self.scale, self.scale, 3), dtype=torch.float32)[None, :]
            t = torch.tensor(rng.uniform(-self.shift, self.shift, 3) * np.array(self.shape), dtype=torch.float32)
            warp = self.points @ m.T + t
        if rng.random() < self.p_elastic:
            ctrl = [max(2, int(round(n / self.elastic_spacing)) + 1) for n in self.shape]
            coarse = torch.from_numpy(rng.uniform(-1, 1, [3, *ctrl]).astype(np.float32)) * self.elastic_voxels
            disp = torch.nn.functional.interpolate(coarse[None], size=self.shape, mode="trilinear",
                                                   align_corners=True)[0]
            warp = (self.points if warp is None else warp) + disp.permute(1, 2, 3, 0)
        if warp is not None:
            grid = (warp / self.half).flip(-1)  # grid_sample wants (z, y, x) order for a (X, Y, Z) volume
            x = torch.nn.functional.grid_sample(x[None], grid[None], mode="bilinear", padding_mode="zeros",
                                                align_corners=False)[0]
        for axis in (1, 2):  # x (horizontal), y (vertical) of the axial view
            if rng.random() < self.p_flip:
                x = torch.flip(x, (axis,))
        return x.numpy()


def network_config(args) -> tuple[str, dict]:
    """Network name and constructor kwargs (what the exported manifest records)."""
    arch = dict(TINY) if args.tiny else {"init_features": args.init_features, "growth_rate": args.growth_rate,
                                         "block_config": list(args.block_config)}
    return "DenseNet169", dict(spatial_dims=3, in_channels=4, out_channels=len(CPM_CLASSES),
                               dropout_prob=args.dropout, **arch)


@torch.no_grad()
def predict(model, samples: list[dict], device, batch: int = 4) -> tuple[np.ndarray, float | None, list[int]]:
    """Softmax probabilities ``(N, 3)`` of preprocessed samples (eval mode)."""
    was_training = model.training
    model.eval()
    probs = []
    for i in range(0, len(samples), batch):
        x = torch.from_numpy(np.stack([s["image"] for s in samples[i:i + batch]]).astype(np.float32)).to(device)
        probs.append(torch.softmax(model(x), dim=1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(probs) if probs else np.zeros((0, len(CPM_CLASSES)))


def soft_targets(labels: list[str]) -> np.ndarray:
    """Training targets ``(N, 3)``: one-hot for A / O / G, uniform for a tumour-free case (``N``)."""
    out = np.zeros((len(labels), len(CPM_CLASSES)), dtype=np.float32)
    for i, label in enumerate(labels):
        if label == NO_TUMOUR:
            out[i] = 1.0 / len(CPM_CLASSES)
        else:
            out[i, CPM_CLASSES.index(label)] = 1.0
    return out


def ovr_targets(labels: list[str]) -> np.ndarray:
    """One-vs-rest targets ``(N, 3)`` for the logistic loss of ``--ovr-weight``: one-hot for A / O / G, all zero for
    a tumour-free case (``N``: no evidence for any class).

    Softmax cross-entropy fixes the logits only up to a constant per case, so the logit of an A call can rise
    with anything the case has (or lacks) anywhere in the brain, and its Grad-CAM with it; a logistic loss per
    logit anchors each logit to the presence of its own class's tumour."""
    out = soft_targets(labels)
    out[[label == NO_TUMOUR for label in labels]] = 0.0
    return out


def classification_loss(logits: torch.Tensor, soft: torch.Tensor, ovr: torch.Tensor, ce: torch.nn.Module,
                        ovr_weight: float) -> torch.Tensor:
    """Cross-entropy against the soft targets, plus ``ovr_weight`` x the one-vs-rest logistic loss."""
    loss = ce(logits, soft)
    if ovr_weight > 0:
        loss = loss + ovr_weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, ovr)
    return loss


def evaluate_split(model, samples, labels, device) -> dict:
    """Cross-entropy and classification metrics of one split.

    Metrics are over the A / O / G cases; tumour-free cases (``N``) are scored apart: the mean highest
    probability the network gives them (1/3 when it calls no class) and how many it calls with more than 0.5.
    """
    probs = predict(model, samples, device)
    keep = np.array([l != NO_TUMOUR for l in labels], dtype=bool)
    y = np.array([CPM_CLASSES.index(l) for l in labels if l != NO_TUMOUR], dtype=int)
    p = probs[keep] if len(probs) else probs
    loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))) if len(y) else float("nan")
    m = classification_metrics(y, p.argmax(1), n_classes=len(CPM_CLASSES))
    out = {"loss": loss, "balanced_accuracy": m["balanced_accuracy"], "f1_macro": m["f1_macro"], "kappa": m["kappa"],
           "accuracy": m["accuracy"], "confusion": m["confusion"]}
    if (~keep).any():
        top = probs[~keep].max(1)
        out["no_tumour"] = {"n": int((~keep).sum()), "mean_top_probability": float(top.mean()),
                            "called_over_half": int((top > 0.5).sum())}
    return out


def load_init(path: Path, net: torch.nn.Module) -> str:
    """Load starting weights into ``net`` (see ``--init``); returns what was loaded, for the log."""
    from braingui.inference.bundle import check_state_dict, load_state_dict
    from braingui.inference.manifest import read_bundle

    if path.is_dir():
        bundle = read_bundle(path)
        state = check_state_dict(net, load_state_dict(bundle), bundle)
        what = f"bundle {bundle.manifest.name} (sha256 {bundle.manifest.sha256[:12]})"
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
        state = check_state_dict(net, data["model"] if "model" in data else data, where=path)
        what = str(path)
    net.load_state_dict(state)
    return what


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled training order of one epoch (derived from seed and epoch, so resume needs no state)."""
    return np.random.default_rng([seed, epoch, 12345]).permutation(n)


def data_note(roots: list[Path]) -> str:
    """What the synthetic training data is, per data set folder: a :mod:`training.real_types` set says so in its
    ``real_types.json``; anything else is taken for :mod:`training.synthetic_types` phantoms."""
    from training.real_types import NOTE as REAL_TYPES_NOTE

    notes = [REAL_TYPES_NOTE if (Path(r) / "real_types.json").is_file() else STAND_IN_NOTE for r in roots]
    return "; ".join(dict.fromkeys(notes))


def _metadata(args, name, kwargs, prep, parts, synthetic, step) -> dict:
    return {"network": name, "kwargs": kwargs, "classes": list(CPM_CLASSES),
            "class_titles": {c: CLASS_TITLES[c] for c in CPM_CLASSES},
            "prep": {"channels": list(prep.channels), "shape": list(prep.shape), "tolerance": prep.tolerance},
            "train_cases": [c.ref.name for c in parts[0]], "val_cases": [c.ref.name for c in parts[1]],
            "test_cases": [c.ref.name for c in parts[2]],
            "test_labels": [c.label for c in parts[2]],
            "data": {"roots": [str(r) for r in args.cpm], "synthetic": synthetic,
                     "note": data_note(args.cpm) if synthetic else "CPM-RadPath style data"},
            "config": common.jsonable(vars(args)), "steps": step, "world_size": distributed.world_size()}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = distributed.init(common.pick_device(args.device))
    rc = train(args, device)
    distributed.cleanup()  # the other processes wait here while rank 0 evaluates and writes final.pt
    return rc


def _save(obj: dict, path: Path) -> None:
    atomic.write_atomic(path, lambda tmp: torch.save(obj, tmp))


def train(args: argparse.Namespace, device: torch.device) -> int:
    """The training run of parsed ``args`` on ``device`` (every process runs it; rank 0 writes)."""
    main_rank, world = distributed.is_main(), distributed.world_size()
    rng = distributed.rank_generator(args.seed, common.seed_everything(args.seed))
    log = common.setup_run(args.out, common.jsonable(vars(args)), args.resume, main=main_rank)
    if world > 1:
        log.info("distributed: %d processes (%s), batch %d per process, effective batch %d", world,
                 "nccl" if device.type == "cuda" else "gloo", args.batch, world * args.batch)

    cases: list[LabelledCase] = []
    for root in args.cpm:
        cases += cpm_radpath_cases(root, args.labels_csv)
    synthetic = bool(cases) and all("SYNTHETIC" in c.ref.name for c in cases)
    if synthetic:
        log.info("DATA: %s", data_note(args.cpm))
    split_rng = np.random.default_rng([args.seed, 777])
    parts = stratified_split(cases, tuple(args.split), split_rng)
    for title, part in zip(("train", "validation", "test"), parts):
        counts = {c: sum(1 for x in part if x.label == c) for c in TRAINING_LABELS}
        log.info("%s cases: %d %s", title, len(part), counts)
    if not parts[0]:
        raise SystemExit("no training cases")
    prep = ClassificationPrep(shape=tuple(args.shape), tolerance=BACKGROUND_TOLERANCE)
    cache = args.cache or args.out / "cache"
    t0 = time.time()
    data = [distributed.map_sharded(lambda c: cached_classification_sample(c.ref, prep, cache), part) for part in parts]
    log.info("preprocessed inputs %s ready in %.1f s (cache %s)", tuple(prep.shape), time.time() - t0, cache)
    train, val = data[0], data[1]
    y_train = soft_targets([c.label for c in parts[0]])
    y_ovr = ovr_targets([c.label for c in parts[0]])

    name, kwargs = network_config(args)
    from braingui.inference.networks import build_network

    net = build_network(name, kwargs)
    if args.init is not None and not (args.resume and (args.out / "checkpoint.pt").exists()):
        log.info("initial weights: %s", load_init(args.init, net))
    net = net.to(device)
    log.info("network %s %s, %.2f M parameters", name, kwargs, sum(p.numel() for p in net.parameters()) / 1e6)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    weights = None
    if args.class_weights == "balanced":
        freq = y_train.sum(0).astype(np.float64)
        weights = torch.tensor(freq.sum() / np.maximum(freq, 1) / len(CPM_CLASSES), dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    augment = None if args.no_augment else Augment(tuple(args.shape))
    sampler = EpochSampler(len(train), lambda e: epoch_order(args.seed, e, len(train)), world, distributed.rank())
    batch = min(args.batch, len(sampler))
    steps_per_epoch = max(1, len(sampler) // batch)
    total = args.steps if args.steps > 0 else args.epochs * steps_per_epoch
    val_every = args.val_every or steps_per_epoch
    step, best = 0, {"balanced_accuracy": -1.0, "loss": float("inf"), "step": 0}
    ckpt = args.out / "checkpoint.pt"
    if args.resume and ckpt.exists():
        step, extra = common.load_checkpoint(ckpt, net, optimizer, rng, distributed.rank())
        best = extra.get("best", best)
        log.info("resumed at step %d (best so far %s)", step, best)
        common.warn_on_resume(log, extra)
    model = distributed.wrap_model(net)
    model.train()
    progress = common.Progress(total, step, "classification", enabled=main_rank)
    recent: list[float] = []
    t_start = time.time()
    order_epoch, order = -1, []
    while step < total:
        epoch, pos = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            sampler.set_epoch(epoch)
            order_epoch, order = epoch, np.array(list(sampler))
        idx = order[pos * batch:(pos + 1) * batch]
        images = [train[i]["image"].astype(np.float32) for i in idx]
        if augment is not None:
            images = [augment(im, rng) for im in images]
        x = torch.from_numpy(np.stack(images)).to(device)
        y = torch.from_numpy(y_train[idx]).to(device)
        loss = classification_loss(model(x), y, torch.from_numpy(y_ovr[idx]).to(device), loss_fn, args.ovr_weight)
        step = common.optimiser_step(loss, optimizer, step, recent, progress)
        if step % args.log_every == 0 or step == total:
            log.info("step %d/%d epoch %.2f loss %.4f %.2f s/step", step, total, step / steps_per_epoch,
                     np.mean(recent[-args.log_every:]), (time.time() - t_start) / max(len(recent), 1))
        if main_rank and val and (step % val_every == 0 or step == total):
            m = evaluate_split(net, val, [c.label for c in parts[1]], device)
            log.info("step %d validation loss %.4f balanced accuracy %.3f F1 %.3f kappa %.3f confusion %s", step,
                     m["loss"], m["balanced_accuracy"], m["f1_macro"], m["kappa"], m["confusion"])
            if (m["balanced_accuracy"], -m["loss"]) > (best["balanced_accuracy"], -best["loss"]):
                best = {"balanced_accuracy": m["balanced_accuracy"], "loss": m["loss"], "step": step}
                _save({"model": net.state_dict(), **_metadata(args, name, kwargs, prep, parts, synthetic, step),
                       "val_metrics": m}, args.out / "best.pt")
                log.info("step %d: new best validation balanced accuracy %.3f -> best.pt", step, m["balanced_accuracy"])
        if step % args.checkpoint_every == 0 or step == total:
            states = distributed.all_gather_objects(common.rng_state(rng))
            if main_rank:
                common.save_checkpoint(ckpt, net, optimizer, step, rng,
                                       {"loss": recent[-1], "best": best, "world_size": world}, states)
    progress.close()
    common.check_in_sync(net, log)
    if not main_rank:
        return 0
    final = {"model": net.state_dict(), **_metadata(args, name, kwargs, prep, parts, synthetic, step), "best": best}
    if data[2]:
        final["test_metrics"] = evaluate_split(net, data[2], [c.label for c in parts[2]], device)
        log.info("test split (final weights, network grid): %s", final["test_metrics"])
    _save(final, args.out / "final.pt")
    log.info("done: %d steps in %.1f min; best validation %s; weights %s", step, (time.time() - t_start) / 60, best,
             args.out / "final.pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
