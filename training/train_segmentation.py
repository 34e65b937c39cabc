"""Train the segmentation network as in the paper (Myronenko's SegResNet with VAE regulariser).

Defaults are the paper's / Myronenko's configuration: SegResNetVAE, init 32 filters, blocks (1,2,2,4) /
(1,1,1), group norm 8, dropout 0.2, 3 sigmoid outputs, soft Dice + 0.1 x (L2 reconstruction + KL),
Adam lr 1e-4 with weight decay 1e-5 and polynomial decay (power 0.9), batch 1, random crops of
160x192x128, random flips and intensity shift/scale (0.1), 300 epochs. Smaller configurations
(``--init-filters 16 --zoom 0.5 --crop 80 96 64``) are for machines without a GPU.

Example (the shipped demo model, 2 CPU threads)::

    python -m training.train_segmentation --brats ../shared/data/brats2018 \\
        --val-cases Brats18_CBICA_AME_1 Brats18_TCIA02_135_1 --synthetic 24 \\
        --init-filters 16 --zoom 0.5 --crop 80 96 64 --lr 5e-4 --steps 3000 --out runs/seg

Each step trains on one case drawn at random, with replacement (a synthetic one with probability
``--synthetic-fraction``), by :class:`training.data.WeightedDrawSampler`; an epoch is as many draws as
there are training cases. Several GPUs or machines: start it with ``torchrun``
(:mod:`training.distributed`; see training/README.md): each process draws its own case per step (batch
1 per process, effective batch N), the gradients are averaged, an epoch is shared out among the
processes (fewer steps per epoch), the learning rate is used as given; rank 0 alone logs, validates
and writes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from braingui import atomic
from braingui.preprocess import PAPER_SEG_CROP, SegmentationPrep
from training import common, distributed
from training.data import (CaseRef, WeightedDrawSampler, augment, brats_cases, cached_sample, draw_weights, msd_cases,
                           random_crop, split_cases)

REGION_ORDER = ("TC", "WT", "ET")
"""Output channel order (that of MONAI's brats_mri_segmentation bundle)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_segmentation", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    common.add_common_args(p)
    d = p.add_argument_group("data")
    d.add_argument("--brats", action="append", default=[], type=Path, help="folder of BraTS case folders (repeatable)")
    d.add_argument("--msd", action="append", default=[], type=Path, help="MSD Task01 folder (imagesTr/labelsTr)")
    d.add_argument("--synthetic", type=int, default=0, help="add N synthetic phantom cases to the training set")
    d.add_argument("--synthetic-fraction", type=float, default=None,
                   help="probability that a step draws a synthetic case (default: in proportion to their number)")
    d.add_argument("--val-cases", nargs="*", default=None, help="case ids held out for validation")
    d.add_argument("--val-fraction", type=float, default=0.2, help="random validation fraction if no --val-cases")
    d.add_argument("--cache", type=Path, default=None, help="sample cache folder (default OUT/cache)")
    n = p.add_argument_group("network")
    n.add_argument("--init-filters", type=int, default=32)
    n.add_argument("--no-vae", action="store_true", help="train a plain SegResNet (no VAE regulariser)")
    n.add_argument("--vae-nz", type=int, default=128)
    n.add_argument("--dropout", type=float, default=0.2)
    o = p.add_argument_group("optimisation")
    o.add_argument("--zoom", type=float, default=1.0, help="resampling factor (0.5 = half resolution)")
    o.add_argument("--crop", type=int, nargs=3, default=list(PAPER_SEG_CROP), help="random crop size (network grid)")
    o.add_argument("--lr", type=float, default=1e-4)
    o.add_argument("--weight-decay", type=float, default=1e-5)
    o.add_argument("--epochs", type=int, default=300, help="epochs (one pass over the training cases each)")
    o.add_argument("--steps", type=int, default=0, help="total steps; overrides --epochs when > 0")
    o.add_argument("--vae-weight", type=float, default=0.1)
    o.add_argument("--val-every", type=int, default=200, help="validation Dice every N steps (0 = never)")
    return p


@dataclass
class SegConfig:
    """The network part of a run's configuration (also what the exported manifest records)."""

    init_filters: int
    vae: bool
    vae_nz: int
    dropout: float
    crop: tuple[int, int, int]

    def network(self) -> tuple[str, dict]:
        kwargs = dict(spatial_dims=3, init_filters=self.init_filters, in_channels=4, out_channels=3,
                      blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1], dropout_prob=self.dropout,
                      norm=["GROUP", {"num_groups": 8}])
        if self.vae:
            return "SegResNetVAE", dict(kwargs, input_image_size=list(self.crop), vae_nz=self.vae_nz)
        return "SegResNet", kwargs


def dice_loss():
    from monai.losses import DiceLoss

    return DiceLoss(sigmoid=True, squared_pred=True, smooth_nr=1e-5, smooth_dr=1e-5)


def synthetic_refs(n: int, zoom: float, out: Path, seed: int) -> list[CaseRef]:
    """Write ``n`` random synthetic phantoms (at the training resolution) and return their refs.

    Phantoms already in ``OUT/synthetic`` are kept; under a process group each process writes its share.
    """
    from training.synthetic import random_segmentation_phantom_case

    folder = out / "synthetic"

    def one(i: int) -> CaseRef:
        case_dir = folder / f"SYNTHETIC_seg_{i:03d}"
        if not (case_dir / f"SYNTHETIC_seg_{i:03d}_flair.nii.gz").exists():
            random_segmentation_phantom_case(case_dir, f"SYNTHETIC_seg_{i:03d}", seed=seed * 1000 + i, zoom=zoom)
        return CaseRef(f"SYNTHETIC_seg_{i:03d}", str(case_dir))

    return distributed.map_sharded(one, list(range(n)))


@torch.no_grad()
def validate(model, samples, device) -> dict[str, float]:
    """Mean Dice per region on the network grid (whole crops, sigmoid > 0.5)."""
    model.eval()
    scores = {r: [] for r in REGION_ORDER}
    for s in samples:
        x = torch.from_numpy(_pad8(s["image"]))[None].to(device)
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        pred = (torch.sigmoid(out)[0] > 0.5).cpu().numpy()
        target = _pad8(s["target"]).astype(bool)
        for i, r in enumerate(REGION_ORDER):
            inter = (pred[i] & target[i]).sum()
            total = pred[i].sum() + target[i].sum()
            scores[r].append(1.0 if total == 0 else 2.0 * inter / total)
    model.train()
    return {r: float(np.mean(v)) for r, v in scores.items()}


def _pad8(a: np.ndarray) -> np.ndarray:
    pad = [(0, 0)] + [(0, (-n) % 8) for n in a.shape[1:]]
    return np.pad(a, pad)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = distributed.init(common.pick_device(args.device))
    rc = train(args, device)
    distributed.cleanup()  # the other processes wait here while rank 0 writes final.pt
    return rc


def train(args: argparse.Namespace, device: torch.device) -> int:
    """The training run of parsed ``args`` on ``device`` (every process runs it; rank 0 writes)."""
    main_rank, world = distributed.is_main(), distributed.world_size()
    rng = common.seed_everything(args.seed)  # the same on every process: the validation split
    config = common.jsonable(vars(args))
    log = common.setup_run(args.out, config, args.resume, main=main_rank)
    if world > 1:
        log.info("distributed: %d processes (%s), one case per process and step, effective batch %d", world,
                 "nccl" if device.type == "cuda" else "gloo", world)

    refs: list[CaseRef] = []
    for root in args.brats:
        refs += brats_cases(root)
    for root in args.msd:
        refs += msd_cases(root)
    if not refs and not args.synthetic:
        raise SystemExit("no training data: give --brats, --msd or --synthetic")
    train_refs, val_refs = split_cases(refs, args.val_cases, args.val_fraction, rng) if refs else ([], [])
    rng = distributed.rank_generator(args.seed, rng)  # crops and augmentation: a stream per process
    n_real = len(train_refs)
    train_refs += synthetic_refs(args.synthetic, args.zoom, args.out, args.seed)
    prep = SegmentationPrep(crop="bbox", zoom=args.zoom)
    cache = args.cache or args.out / "cache"
    log.info("train cases (%d): %s", len(train_refs), ", ".join(r.name for r in train_refs))
    log.info("validation cases (%d): %s", len(val_refs), ", ".join(r.name for r in val_refs))
    t0 = time.time()
    train = distributed.map_sharded(lambda r: cached_sample(r, prep, REGION_ORDER, cache), train_refs)
    val = [cached_sample(r, prep, REGION_ORDER, cache) for r in val_refs] if main_rank else []
    log.info("samples ready in %.1f s; network grid shapes %s", time.time() - t0, sorted({s["image"].shape[1:] for s in train}))

    seg = SegConfig(args.init_filters, not args.no_vae, args.vae_nz, args.dropout, tuple(args.crop))
    name, kwargs = seg.network()
    from braingui.inference.networks import build_network

    net = build_network(name, kwargs).to(device)
    log.info("network %s %s, %.2f M parameters", name, kwargs, sum(p.numel() for p in net.parameters()) / 1e6)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sampler = WeightedDrawSampler(draw_weights(n_real, len(train) - n_real, args.synthetic_fraction), args.seed,
                                  world, distributed.rank())
    steps_per_epoch = len(sampler)
    total = args.steps if args.steps > 0 else args.epochs * steps_per_epoch
    step = 0
    ckpt = args.out / "checkpoint.pt"
    if args.resume and ckpt.exists():
        step, extra = common.load_checkpoint(ckpt, net, optimizer, rng, distributed.rank())
        log.info("resumed at step %d", step)
        common.warn_on_resume(log, extra)
    model = distributed.wrap_model(net)
    loss_fn = dice_loss()
    model.train()
    progress = common.Progress(total, step, "segmentation", enabled=main_rank)
    recent: list[float] = []
    t_start = time.time()
    order_epoch, order = -1, []
    while step < total:
        epoch, pos = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            sampler.set_epoch(epoch)
            order_epoch, order = epoch, list(sampler)
        sample = train[order[pos]]
        image, target = random_crop(sample["image"], sample["target"], tuple(args.crop), rng)
        image, target = augment(image, target, rng)
        x = torch.from_numpy(image)[None].to(device)
        y = torch.from_numpy(target.astype(np.float32))[None].to(device)
        for group in optimizer.param_groups:
            group["lr"] = common.poly_lr(args.lr, step, total)
        out = model(x)
        logits, vae_loss = out if isinstance(out, tuple) else (out, None)
        loss = loss_fn(logits, y)
        if vae_loss is not None:
            loss = loss + args.vae_weight * vae_loss
        step = common.optimiser_step(loss, optimizer, step, recent, progress)
        if step % args.log_every == 0 or step == total:
            log.info("step %d/%d loss %.4f lr %.2e %.2f s/step", step, total, np.mean(recent[-args.log_every:]),
                     optimizer.param_groups[0]["lr"], (time.time() - t_start) / max(len(recent), 1))
        if args.val_every and val and (step % args.val_every == 0 or step == total):
            log.info("step %d validation Dice (network grid) %s", step, validate(net, val, device))
        if step % args.checkpoint_every == 0 or step == total:
            states = distributed.all_gather_objects(common.rng_state(rng))
            if main_rank:
                common.save_checkpoint(ckpt, net, optimizer, step, rng, {"loss": recent[-1], "world_size": world},
                                       states)
    progress.close()
    common.check_in_sync(net, log)
    if not main_rank:
        return 0
    final = {"model": net.state_dict(), "network": name, "kwargs": kwargs, "regions": list(REGION_ORDER),
             "prep": {"channels": list(prep.channels), "crop": prep.crop, "multiple": prep.multiple, "zoom": prep.zoom},
             "train_cases": [r.name for r in train_refs], "val_cases": [r.name for r in val_refs], "steps": step,
             "world_size": world}
    atomic.write_atomic(args.out / "final.pt", lambda tmp: torch.save(final, tmp))
    log.info("done: %d steps in %.1f min; final weights %s", step, (time.time() - t_start) / 60, args.out / "final.pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
