"""Does the network use what its heat map shows? Occlusion, sequence ablation, deletion and randomisation.

Every function takes the classifier, the preprocessed input ``x`` (float ``(1, C, X, Y, Z)`` on the network's
device: z-scored, cropped, resized; ``model.tensor(inp.array)``) and bool ``(X, Y, Z)`` numpy masks on that
same classifier grid (the brain: :func:`braingui.explanation.brain_mask` of ``inp.array``; the predicted
WT mapped onto the grid, e.g. ``inp.grid_map.forward(wt.astype(float32)) > 0.5``). Re-classifications are
batched (:func:`classify`, ``batch_size`` inputs per forward, under ``inference_mode``; BatchNorm in eval
mode makes a batch give the same answers as single inputs).

* :func:`tumour_occlusion` — WT voxels replaced, per channel, by the mean of that channel over the brain
  outside WT; re-classified: :class:`Occlusion` (class index and probabilities without the tumour).
* :func:`sequence_ablation` — each channel in turn has its brain voxels replaced by its own brain mean
  (in z-score space that is ~0, the "no contrast" value; the background stays 0, so the brain outline
  is kept): :class:`Ablation` (per sequence, the change of the explained class's probability; negative =
  the sequence supported the call).
* :func:`quick_checks` — both of those in ONE batched forward (1 + C inputs: 5 with four sequences).
* :func:`deletion_curve` — the explained class's probability as the top 5/10/20/40 % of in-brain
  voxels (by the map, ties broken at random) are replaced by the channel brain means, and the same for
  ``n_random`` seeded draws of random brain voxels (nested sets, as the map's): :class:`DeletionCurve`
  (its :meth:`~DeletionCurve.areas` gives :class:`braingui.explanation.DeletionAreas`).
* :func:`model_randomisation` / :func:`randomisation_check` — Adebayo et al. 2018's model-parameter
  randomisation: a deep copy of the network with its last dense block and its classifier layer
  re-initialised (seeded, PyTorch's default initialisation of each Conv / BatchNorm / Linear, running
  statistics reset), the map recomputed for the same class, Spearman's rho with the real map inside the
  brain, averaged over ``n_draws`` seeded copies: :class:`Randomisation`, ``flag`` when the mean rho > 0.5
  (the map does not depend on what was learned).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from braingui.explanation import RANDOMISATION_LIMIT, DeletionAreas, deletion_areas, rank_correlation
from braingui.inference.cam_methods import (DEFAULT_LAYER, DEFAULT_METHOD, TAIL_METHODS, compute_cam, prefix,
                                            split_index, tail_cams, upsample)

DELETION_FRACTIONS = (0.05, 0.10, 0.20, 0.40)
BATCH_SIZE = 8


def _check(x: torch.Tensor, *masks: np.ndarray) -> list[torch.Tensor]:
    if x.ndim != 5 or x.shape[0] != 1:
        raise ValueError(f"the input must be (1, C, X, Y, Z), got {tuple(x.shape)}")
    out = []
    for m in masks:
        m = np.asarray(m, dtype=bool)
        if m.shape != tuple(x.shape[2:]):
            raise ValueError(f"mask shape {m.shape} differs from the input grid {tuple(x.shape[2:])}")
        out.append(torch.from_numpy(m).to(x.device))
    return out


def classify(network: torch.nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor],
             batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Softmax probabilities of several inputs, ``batch_size`` per forward.

    Args:
        network: the classifier (run in eval mode; its mode is restored).
        inputs: float ``(N, C, X, Y, Z)`` or a sequence of ``(1, C, X, Y, Z)`` tensors on its device.
        batch_size: inputs per forward.

    Returns:
        float64 ``(N, n_classes)``.
    """
    if not isinstance(inputs, torch.Tensor):
        inputs = torch.cat(list(inputs), dim=0)
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            out = [torch.softmax(network(inputs[i:i + batch_size]).float(), dim=1).double().cpu()
                   for i in range(0, inputs.shape[0], batch_size)]
    finally:
        network.train(was_training)
    return torch.cat(out).numpy()


def channel_means(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-channel mean of ``x`` ``(1, C, X, Y, Z)`` over a bool ``(X, Y, Z)`` mask (0 for an empty mask): ``(C,)``."""
    if not bool(mask.any()):
        return torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
    return x[0][:, mask].mean(dim=1)


def replaced(x: torch.Tensor, mask: torch.Tensor, values: torch.Tensor,
             channels: Sequence[int] | None = None) -> torch.Tensor:
    """A copy of ``x`` with the ``mask`` voxels of each channel (or of ``channels`` only) set to ``values[c]``."""
    out = x.detach().clone()
    for c in range(x.shape[1]) if channels is None else channels:
        out[0, c][mask] = values[c]
    return out


@dataclass(frozen=True)
class Occlusion:
    """The classification without the tumour: ``class_index`` and float64 ``probabilities`` ``(n_classes,)``."""

    class_index: int
    probabilities: np.ndarray


@dataclass(frozen=True)
class Ablation:
    """Per sequence: the explained class's probability without it and its change from the original.

    Attributes:
        class_index: the class whose probability is followed.
        baseline: its probability on the unchanged input.
        probabilities: sequence name -> float64 ``(n_classes,)`` with that sequence removed.
    """

    class_index: int
    baseline: float
    probabilities: dict[str, np.ndarray]

    @property
    def changes(self) -> dict[str, float]:
        """Sequence name -> change of the class's probability (negative: the sequence supported it)."""
        return {k: float(p[self.class_index] - self.baseline) for k, p in self.probabilities.items()}


def _occlusion_input(x: torch.Tensor, wt: torch.Tensor, brain: torch.Tensor) -> torch.Tensor:
    return replaced(x, wt, channel_means(x, brain & ~wt))


def _ablation_inputs(x: torch.Tensor, brain: torch.Tensor) -> list[torch.Tensor]:
    means = channel_means(x, brain)
    return [replaced(x, brain, means, channels=[c]) for c in range(x.shape[1])]


def tumour_occlusion(network: torch.nn.Module, x: torch.Tensor, wt: np.ndarray, brain: np.ndarray) -> Occlusion:
    """Re-classify with the WT voxels replaced by normal-brain means (see the module docstring)."""
    wt_t, brain_t = _check(x, wt, brain)
    p = classify(network, _occlusion_input(x, wt_t, brain_t))[0]
    return Occlusion(int(np.argmax(p)), p)


def sequence_ablation(network: torch.nn.Module, x: torch.Tensor, brain: np.ndarray, channels: Sequence[str],
                      class_index: int, baseline: float | None = None, batch_size: int = BATCH_SIZE) -> Ablation:
    """Re-classify with each sequence in turn removed (see the module docstring).

    Args:
        channels: the name of each input channel, in order (e.g. ``("flair", "t1", "t1ce", "t2")``).
        class_index: the class to follow (the predicted one).
        baseline: its probability on ``x``; ``None`` = one more forward.
    """
    (brain_t,) = _check(x, brain)
    _check_channels(x, channels)
    inputs = _ablation_inputs(x, brain_t) + ([x] if baseline is None else [])
    p = classify(network, inputs, batch_size)
    base = float(p[-1, class_index]) if baseline is None else float(baseline)
    return Ablation(class_index, base, {name: p[i] for i, name in enumerate(channels)})


def _check_channels(x: torch.Tensor, channels: Sequence[str]) -> None:
    if len(channels) != x.shape[1]:
        raise ValueError(f"{len(channels)} channel names for an input of {x.shape[1]} channels")


def quick_checks(network: torch.nn.Module, x: torch.Tensor, wt: np.ndarray, brain: np.ndarray,
                 channels: Sequence[str], class_index: int, baseline: float,
                 batch_size: int = BATCH_SIZE) -> tuple[Occlusion, Ablation]:
    """Tumour occlusion and sequence ablation in one batched forward of ``1 + C`` inputs.

    Args:
        network, x, wt, brain: as :func:`tumour_occlusion`.
        channels, class_index, baseline: as :func:`sequence_ablation` (the baseline comes from the CAM pass).
    """
    wt_t, brain_t = _check(x, wt, brain)
    _check_channels(x, channels)
    p = classify(network, [_occlusion_input(x, wt_t, brain_t)] + _ablation_inputs(x, brain_t), batch_size)
    occ = Occlusion(int(np.argmax(p[0])), p[0])
    return occ, Ablation(class_index, float(baseline), {name: p[1 + i] for i, name in enumerate(channels)})


@dataclass(frozen=True)
class DeletionCurve:
    """The explained class's probability against the deleted fraction of the brain.

    Attributes:
        fractions: ``(F,)`` starting with 0.
        map_probs: ``(F,)``, deleting the map's hottest voxels first.
        random_probs: ``(D, F)``, one row per random draw.
    """

    fractions: np.ndarray
    map_probs: np.ndarray
    random_probs: np.ndarray

    def areas(self) -> DeletionAreas:
        """The normalised areas under both curves (:func:`braingui.explanation.deletion_areas`)."""
        return deletion_areas(self.fractions, self.map_probs, self.random_probs)


def deletion_order(heat: np.ndarray, brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of the brain voxels, hottest first, ties in random order.

    Args:
        heat: float ``(X, Y, Z)`` map on the input grid.
        brain: bool ``(X, Y, Z)``.
        rng: breaks ties (e.g. the many zeros of a ReLU'd map).
    """
    idx = np.flatnonzero(brain)
    values = np.asarray(heat).ravel()[idx]
    return idx[np.lexsort((rng.random(idx.size), -values))]


def deletion_curve(network: torch.nn.Module, x: torch.Tensor, heat: np.ndarray, brain: np.ndarray,
                   class_index: int, baseline: float | None = None,
                   fractions: Sequence[float] = DELETION_FRACTIONS, n_random: int = 2, seed: int = 0,
                   batch_size: int = BATCH_SIZE) -> DeletionCurve:
    """Deletion curves of a map and of random voxels: ``len(fractions) * (1 + n_random)`` forwards.

    Args:
        network, x, brain: see the module docstring.
        heat: float ``(X, Y, Z)`` map on the input grid (:func:`~braingui.inference.cam_methods.upsample`).
        class_index: the class to follow (the explained one).
        baseline: its probability on ``x`` (fraction 0); ``None`` = one more forward.
        fractions: deleted fractions of the brain's voxels, increasing, > 0.
        n_random: random draws (seeded by ``seed``).
    """
    (brain_t,) = _check(x, brain)
    if np.asarray(heat).shape != tuple(x.shape[2:]):
        raise ValueError(f"map shape {np.asarray(heat).shape} differs from the input grid {tuple(x.shape[2:])}")
    rng = np.random.default_rng(seed)
    means = channel_means(x, brain_t)
    n_brain = int(np.count_nonzero(brain))
    counts = [int(round(f * n_brain)) for f in fractions]
    orders = [deletion_order(heat, brain, rng)] + [rng.permutation(np.flatnonzero(brain)) for _ in range(n_random)]
    flat_shape = int(np.prod(x.shape[2:]))
    inputs = []
    for order in orders:
        for k in counts:
            mask = np.zeros(flat_shape, dtype=bool)
            mask[order[:k]] = True
            inputs.append(replaced(x, torch.from_numpy(mask.reshape(x.shape[2:])).to(x.device), means))
    if baseline is None:
        inputs.append(x)
    p = classify(network, inputs, batch_size)[:, class_index]
    base = float(p[-1]) if baseline is None else float(baseline)
    curves = np.concatenate([np.full((len(orders), 1), base), p[: len(orders) * len(counts)].reshape(len(orders), -1)],
                            axis=1)
    return DeletionCurve(np.concatenate([[0.0], np.asarray(fractions, dtype=np.float64)]), curves[0], curves[1:])


@dataclass(frozen=True)
class Randomisation:
    """The model-randomisation check.

    Attributes:
        spearman: the mean over the draws of Spearman's rho between the real and the randomised map inside
            the brain (a randomised map that is constant there counts as 0: it keeps nothing of the real
            map); ``NaN`` when the real map itself is constant in the brain.
        flag: ``spearman > 0.5``: the map does not depend on what the model learned.
        draws: rho of each draw (``NaN`` for a constant randomised map).
    """

    spearman: float
    flag: bool
    draws: tuple[float, ...] = ()


def randomisation_layers(network: torch.nn.Module) -> tuple[str, ...]:
    """What :func:`model_randomisation` re-initialises: the last ``features.denseblockN`` (if any) and the
    last ``torch.nn.Linear`` (the classifier layer)."""
    names = [n for n, _ in network.named_modules() if n.startswith("features.denseblock") and n.count(".") == 1]
    linear = [n for n, m in network.named_modules() if isinstance(m, torch.nn.Linear)]
    return tuple(names[-1:] + linear[-1:])


def reinitialise(network: torch.nn.Module, layers: Sequence[str], seed: int = 0) -> torch.nn.Module:
    """Re-initialise, in place, every submodule of ``layers`` that has ``reset_parameters`` (seeded).

    PyTorch's default initialisation of each Conv / BatchNorm / Linear (BatchNorm running statistics
    reset too); the global random state is left as it was. Returns ``network``.

    Raises:
        ValueError: a name that is not a module, or nothing to re-initialise.
    """
    reset = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in layers:
            try:
                root = network.get_submodule(name)
            except AttributeError as exc:
                raise ValueError(f"no module {name!r} to re-initialise") from exc
            for m in root.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                    reset += 1
    if not reset:
        raise ValueError(f"nothing to re-initialise in {list(layers)}")
    return network


def randomised_copy(network: torch.nn.Module, layers: Sequence[str], seed: int = 0) -> torch.nn.Module:
    """A deep copy of ``network`` with ``layers`` re-initialised (:func:`reinitialise`); the original is untouched."""
    return reinitialise(copy.deepcopy(network), layers, seed)


def randomisation_check(network: torch.nn.Module, brain: np.ndarray, reference: np.ndarray,
                        map_fn: Callable[[torch.nn.Module], np.ndarray], layers: Sequence[str] | None = None,
                        seed: int = 0, n_draws: int = 3) -> Randomisation:
    """Spearman's rho (inside the brain) of ``reference`` with ``map_fn`` applied to randomised copies.

    Args:
        network: the trained classifier (left unchanged).
        brain: bool ``(X, Y, Z)``.
        reference: float ``(X, Y, Z)`` the real map, on the same grid as ``map_fn``'s.
        map_fn: network -> float ``(X, Y, Z)`` map (e.g. a CAM upsampled to the input grid); it gets a copy
            whose parameters do not require grad (the same maps, without weight gradients).
        layers: what to re-initialise; ``None`` = :func:`randomisation_layers`.
        seed: the first draw's seed (draw ``i`` uses ``seed + i``).
        n_draws: randomised copies; their rhos are averaged (one draw's rho varies a lot with the seed).
    """
    layers = randomisation_layers(network) if layers is None else layers
    brain = np.asarray(brain, dtype=bool)
    ref = np.asarray(reference)
    if not brain.any() or np.ptp(ref[brain]) == 0:
        return Randomisation(math.nan, False, ())
    clone = copy.deepcopy(network)  # one copy; each draw re-initialises the same layers afresh
    for p in clone.parameters():  # no weight gradients needed: a CAM's backward then skips them
        p.requires_grad_(False)
    draws = tuple(rank_correlation(ref, map_fn(reinitialise(clone, layers, seed + i)), brain)
                  for i in range(max(1, int(n_draws))))
    rho = float(np.mean([0.0 if math.isnan(r) else r for r in draws]))
    return Randomisation(rho, bool(rho > RANDOMISATION_LIMIT), draws)


def model_randomisation(network: torch.nn.Module, x: torch.Tensor, brain: np.ndarray, reference: np.ndarray,
                        class_index: int, method: str = DEFAULT_METHOD, layer: str = DEFAULT_LAYER,
                        layers: Sequence[str] | None = None, seed: int = 0, n_draws: int = 3,
                        front: tuple[int, torch.Tensor] | None = None) -> Randomisation:
    """:func:`randomisation_check` for a CAM: the same method, layer and class on the randomised copy.

    When the network can be cut before the layer and before every re-initialised module
    (:func:`~braingui.inference.cam_methods.split_index`; Grad-CAM, HiResCAM, LayerCAM), the unchanged
    front runs once and each draw runs only the tail (:func:`~braingui.inference.cam_methods.tail_cams`):
    the same maps as whole passes, for a fraction of the cost. Otherwise each draw is a whole
    :func:`~braingui.inference.cam_methods.compute_cam` pass.

    Args:
        x: the input ``(1, C, X, Y, Z)``.
        reference: the real CAM upsampled to the input grid, float ``(X, Y, Z)``.
        class_index: the class the real map explains.
        front: ``(start, prefix(network, x, start))`` already computed by the caller for a ``start`` at
            or before the cut (shared with other maps); ``None``: computed here when possible.
    """
    _check(x, brain)
    layers = randomisation_layers(network) if layers is None else tuple(layers)
    start = split_index(network, layer, layers) if method in TAIL_METHODS else None
    if start is not None:
        begin, activation = front if front is not None and front[0] <= start else (start, prefix(network, x, start))

        def cam_of(net: torch.nn.Module) -> np.ndarray:
            return upsample(tail_cams(net, activation, begin, layer, method, [class_index])[1][0], x.shape[2:])
    else:
        def cam_of(net: torch.nn.Module) -> np.ndarray:
            return upsample(compute_cam(net, x, method, layer, class_index)[1], x.shape[2:])

    return randomisation_check(network, brain, reference, cam_of, layers, seed, n_draws)
