"""Training data sets: BraTS folders, MSD Task01, synthetic phantoms; the sample caches; the samplers.

A segmentation sample is the network's view of a case, made with the same preprocessing the app uses
at inference (:func:`braingui.preprocess.prepare_segmentation`): z-scored channels cropped around the
brain (and resampled by ``zoom``), plus the ET/TC/WT region masks resampled the same way (linear, > 0.5).
Samples are cached as ``.npz`` so a run reads each case once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler, WeightedRandomSampler

from braingui import atomic
from braingui import labels as lab
from braingui.case import load_case
from braingui.errors import CaseError
from braingui.preprocess import SegmentationPrep, prepare_segmentation


@dataclass(frozen=True)
class CaseRef:
    """One training case: where it is and how to read it.

    Attributes:
        name: case id.
        path: folder (BraTS, bare names) or 4D image file (MSD).
        explicit: explicit modality -> file mapping, if needed.
        label_convention: forced label convention (MSD), or ``None`` to detect.
    """

    name: str
    path: str
    explicit: tuple[tuple[str, str], ...] = ()
    label_convention: str | None = None


def brats_cases(root: str | os.PathLike) -> list[CaseRef]:
    """Every sub-folder of ``root`` that holds a case with a label map (any naming the core accepts)."""
    from braingui.discovery import discover

    refs = []
    for sub in sorted(Path(root).iterdir()):
        if not sub.is_dir():
            continue
        try:
            files = discover(sub)
        except CaseError:
            continue
        if files.seg is not None:
            refs.append(CaseRef(files.case_id, str(sub)))
    return refs


def msd_cases(root: str | os.PathLike) -> list[CaseRef]:
    """MSD Task01 (``imagesTr/*.nii.gz`` 4D images with ``labelsTr/`` label maps, MSD convention)."""
    root = Path(root)
    refs = []
    for image in sorted((root / "imagesTr").glob("*.nii*")):
        if image.name.startswith("."):
            continue
        label = root / "labelsTr" / image.name
        if label.exists():
            refs.append(CaseRef(image.name.split(".")[0], str(image), (("seg", str(label)),), lab.MSD))
    return refs


def split_cases(refs: list[CaseRef], val_names: list[str] | None, val_fraction: float,
                rng: np.random.Generator) -> tuple[list[CaseRef], list[CaseRef]]:
    """Split into (train, validation): the named cases, or a random ``val_fraction`` of them."""
    if val_names:
        missing = set(val_names) - {r.name for r in refs}
        if missing:
            raise SystemExit(f"validation cases not found: {', '.join(sorted(missing))}")
        return [r for r in refs if r.name not in val_names], [r for r in refs if r.name in val_names]
    order = rng.permutation(len(refs))
    n_val = int(round(val_fraction * len(refs)))
    return [refs[i] for i in order[n_val:]], [refs[i] for i in order[:n_val]]


def load_ref(ref: CaseRef):
    """Load a :class:`CaseRef` as a :class:`braingui.case.Case`."""
    explicit = dict(ref.explicit)
    path = ref.path if not (explicit and Path(ref.path).is_file() and "flair" in explicit) else None
    return load_case(path, explicit or None, ref.label_convention)


def region_targets(labels: np.ndarray, order: tuple[str, ...]) -> np.ndarray:
    """Region masks ``(len(order), X, Y, Z)`` float32 of an internal label map."""
    masks = lab.regions(labels)
    return np.stack([masks[r] for r in order]).astype(np.float32)


def segmentation_sample(case, prep: SegmentationPrep, regions: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(image float32 (C, ...), target uint8 (R, ...))`` on the network grid of ``prep``."""
    net_in = prepare_segmentation(case.stack(prep.channels), prep)
    target = net_in.grid_map.forward(region_targets(case.labels, regions)) > 0.5
    return net_in.array, target.astype(np.uint8)


def _cache_key(ref: CaseRef, prep: SegmentationPrep, regions: tuple[str, ...]) -> str:
    text = json.dumps([ref.name, ref.path, list(ref.explicit), ref.label_convention, repr(prep), list(regions)])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cached_sample(ref: CaseRef, prep: SegmentationPrep, regions: tuple[str, ...], cache_dir: Path) -> dict[str, np.ndarray]:
    """The segmentation sample of ``ref``, read from / written to ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{ref.name}-{_cache_key(ref, prep, regions)}.npz"
    if path.exists():
        with np.load(path) as data:
            return {"image": data["image"].astype(np.float32), "target": data["target"]}
    case = load_ref(ref)
    if case.labels is None:
        raise SystemExit(f"{ref.path}: no label map; a training case needs one")
    image, target = segmentation_sample(case, prep, regions)
    atomic.write_atomic(path, lambda tmp: np.savez_compressed(tmp, image=image.astype(np.float16), target=target))
    return {"image": image, "target": target}


def random_crop(image: np.ndarray, target: np.ndarray, size: tuple[int, int, int],
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size`` crop of ``(C, X, Y, Z)`` arrays, zero-padded where the volume is smaller."""
    from braingui.geometry import Box

    start = []
    for n, s in zip(image.shape[1:], size):
        start.append(int(rng.integers(0, n - s + 1)) if n >= s else -int(rng.integers(0, s - n + 1)))
    box = Box(tuple(start), tuple(size))
    return box.extract(image), box.extract(target)


def augment(image: np.ndarray, target: np.ndarray, rng: np.random.Generator, flips: bool = True,
            shift: float = 0.1, scale: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Myronenko's augmentation: random flip per axis, per-channel intensity shift and scale (brain only)."""
    image = image.copy()
    brain = image != 0
    for c in range(image.shape[0]):
        factor = 1.0 + rng.uniform(-scale, scale)
        offset = rng.uniform(-shift, shift)
        image[c] = np.where(brain[c], image[c] * factor + offset, 0.0)
    if flips:
        for axis in (1, 2, 3):
            if rng.random() < 0.5:
                image = np.flip(image, axis)
                target = np.flip(target, axis)
    return np.ascontiguousarray(image), np.ascontiguousarray(target)


# --- classification (CPM-RadPath 2020 layout) -------------------------------------------------------

CPM_CLASSES = ("A", "O", "G")
NO_TUMOUR = "N"
"""The label of a tumour-free training case (:mod:`training.real_types`): trained towards the uniform
distribution over the classes (no class may be called from a brain without a tumour); not a class."""
TRAINING_LABELS = CPM_CLASSES + (NO_TUMOUR,)


@dataclass(frozen=True)
class LabelledCase:
    """A classification case: where it is and its class (``A``, ``O`` or ``G``)."""

    ref: CaseRef
    label: str


def read_class_csv(path: str | os.PathLike) -> dict[str, str]:
    """Case id -> class from a CPM-RadPath style CSV (``#`` lines are comments).

    The id column is the first whose name contains ``id`` (else the first column); the class column is
    named ``class``, ``label``, ``diagnosis`` or ``type`` (else the second column). Class values are
    upper-cased single letters (``A``, ``O``, ``G``, or ``N`` for a tumour-free training case).
    """
    import csv

    with open(path, newline="") as f:
        lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    rows = list(csv.reader(lines))
    if not rows:
        raise SystemExit(f"{path}: empty class CSV")
    header = [h.strip().lower() for h in rows[0]]
    id_col = next((i for i, h in enumerate(header) if "id" in h), 0)
    cls_col = next((i for i, h in enumerate(header) if h in ("class", "label", "diagnosis", "type")), 1)
    out = {}
    for row in rows[1:]:
        if len(row) <= max(id_col, cls_col):
            continue
        label = row[cls_col].strip().upper()
        if label not in TRAINING_LABELS:
            raise SystemExit(f"{path}: unknown class {row[cls_col]!r} for {row[id_col]} (expected A, O, G or N)")
        out[row[id_col].strip()] = label
    return out


def cpm_radpath_cases(root: str | os.PathLike, csv_path: str | os.PathLike | None = None) -> list[LabelledCase]:
    """The labelled cases of a CPM-RadPath 2020 style folder (or of :mod:`training.synthetic_types`).

    Args:
        root: data set folder; case folders are looked up as ``root/Radiology/<id>``, ``root/<id>`` or
            any ``<id>`` folder below ``root``.
        csv_path: the class CSV; default: the ``*.csv`` in ``root`` whose name mentions ``label`` or
            ``class`` (or the only CSV there).
    """
    root = Path(root)
    if csv_path is None:
        csvs = sorted(root.glob("*.csv"))
        named = [c for c in csvs if "label" in c.name.lower() or "class" in c.name.lower()]
        if len(named) == 1 or (not named and len(csvs) == 1):
            csv_path = (named or csvs)[0]
        else:
            raise SystemExit(f"{root}: cannot tell which CSV holds the classes ({[c.name for c in csvs]}); give it")
    classes = read_class_csv(csv_path)
    index = None
    out = []
    for case_id, label in classes.items():
        folder = next((p for p in (root / "Radiology" / case_id, root / case_id) if p.is_dir()), None)
        if folder is None:
            if index is None:
                index = {p.name: p for p in root.rglob("*") if p.is_dir()}
            folder = index.get(case_id)
        if folder is None:
            raise SystemExit(f"{root}: no folder for case {case_id} listed in {csv_path}")
        out.append(LabelledCase(CaseRef(case_id, str(folder)), label))
    return out


def stratified_split(cases: list[LabelledCase], fractions: tuple[float, float, float], rng: np.random.Generator
                     ) -> tuple[list[LabelledCase], list[LabelledCase], list[LabelledCase]]:
    """Split into (train, validation, test) by ``fractions`` (the paper's 0.7 / 0.2 / 0.1), per class (and N)."""
    total = sum(fractions)
    parts: tuple[list, list, list] = ([], [], [])
    for label in TRAINING_LABELS:
        group = [c for c in cases if c.label == label]
        order = rng.permutation(len(group))
        n_val = int(round(fractions[1] / total * len(group)))
        n_test = int(round(fractions[2] / total * len(group)))
        for k, i in enumerate(order):
            parts[1 if k < n_val else 2 if k < n_val + n_test else 0].append(group[i])
    return parts


def classification_sample(case, prep) -> dict[str, np.ndarray]:
    """``{"image": float32 (C, *prep.shape), "wt": uint8 (*prep.shape)}`` (``wt`` only with labels).

    Made with the app's own :func:`braingui.preprocess.prepare_classification`; ``wt`` is the whole-tumour
    mask resampled the same way (linear, > 0.5), for Grad-CAM checks.
    """
    from braingui.preprocess import prepare_classification

    net_in = prepare_classification(case.stack(prep.channels), prep)
    out = {"image": net_in.array.astype(np.float32, copy=False)}
    if case.labels is not None:
        wt = lab.regions(case.labels)["WT"].astype(np.float32)
        out["wt"] = (net_in.grid_map.forward(wt) > 0.5).astype(np.uint8)
    return out


def cached_classification_sample(ref: CaseRef, prep, cache_dir: Path) -> dict[str, np.ndarray]:
    """The classification sample of ``ref`` (image stored float16), read from / written to ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps([ref.name, ref.path, list(ref.explicit), ref.label_convention, repr(prep)])
    path = cache_dir / f"{ref.name}-{hashlib.sha1(text.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    sample = classification_sample(load_ref(ref), prep)
    sample["image"] = sample["image"].astype(np.float16)
    atomic.write_atomic(path, lambda tmp: np.savez(tmp, **sample))
    return sample


# --- samplers: which sample each process trains on -------------------------------------------------


class EpochSampler(DistributedSampler):
    """torch's ``DistributedSampler`` (call ``set_epoch`` each epoch) whose shuffled order is ``order(epoch)``.

    The order of an epoch (a permutation of ``range(n)``) is padded by repeating its start to a multiple
    of ``num_replicas`` and dealt out: process r gets positions ``r, r + N, ...``, so every process has
    the same number of samples (and of steps) and the shares are disjoint but for the padding. With one
    process it is ``order(epoch)`` itself.

    Args:
        n: number of samples.
        order: epoch -> permutation of ``range(n)`` (the same on every process, e.g. seeded by the epoch).
        num_replicas: number of processes; rank: this process's rank.
    """

    def __init__(self, n: int, order: Callable[[int], Sequence[int]], num_replicas: int = 1, rank: int = 0):
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=True, drop_last=False)
        self.order = order

    def __iter__(self) -> Iterator[int]:
        indices = [int(i) for i in self.order(self.epoch)]
        if sorted(indices) != list(range(len(self.dataset))):
            raise ValueError("EpochSampler: order(epoch) is not a permutation of range(n)")
        while len(indices) < self.total_size:
            indices += indices[:self.total_size - len(indices)]
        return iter(indices[self.rank:self.total_size:self.num_replicas])


class WeightedDrawSampler(WeightedRandomSampler):
    """torch's ``WeightedRandomSampler`` (draws with replacement) with ``set_epoch`` and a stream per process.

    Each epoch every process draws ``ceil(n / num_replicas)`` samples from all ``n``, in proportion to
    ``weights``, from a generator seeded by ``(seed, epoch, rank)``: reproducible (a resumed run draws
    the same), different on each process, and with the same odds as one process drawing ``n``. (Draws
    with replacement need no sharding, unlike MONAI's ``DistributedWeightedRandomSampler``, which draws
    from a shard of the data and so fails when a shard holds only zero-weight samples.)

    Args:
        weights: one non-negative weight per sample (not all zero).
        seed: the run's seed; num_replicas: number of processes; rank: this process's rank.
    """

    def __init__(self, weights: Sequence[float], seed: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(list(weights), num_samples=-(-len(weights) // num_replicas), replacement=True)
        self.seed, self.rank, self.epoch = seed, rank, 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of ``epoch``."""
        self.epoch = epoch
        state = np.random.SeedSequence([self.seed, epoch, self.rank]).generate_state(1, np.uint64)[0]
        self.generator = torch.Generator().manual_seed(int(state))

    def __iter__(self) -> Iterator[int]:
        self.set_epoch(self.epoch)  # the same draws each time an epoch is iterated
        return iter([int(i) for i in super().__iter__()])


def draw_weights(n_real: int, n_synthetic: int, synthetic_fraction: float | None) -> list[float]:
    """Per-sample weights (real cases first, then synthetic ones) so that a draw is synthetic with
    probability ``synthetic_fraction``; equal weights when it is ``None`` or one kind is missing."""
    if synthetic_fraction is None or n_real == 0 or n_synthetic == 0:
        return [1.0] * (n_real + n_synthetic)
    return [(1.0 - synthetic_fraction) / n_real] * n_real + [synthetic_fraction / n_synthetic] * n_synthetic
