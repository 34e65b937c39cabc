"""Every CAM method at every layer, scored on labelled cases: the numbers behind the app's default map.

For one case (the classifier input ``x`` and, on that same grid, the brain and the case's own whole
tumour), :func:`case_rows` gives one row per method x layer (:data:`braingui.inference.cam_methods.METHODS`
x :func:`~braingui.inference.cam_methods.cam_layers`), each the map of the predicted class, upsampled to
the input grid:

* localisation (:func:`braingui.explanation.localisation`): mass in WT, WT's fraction of the brain,
  enrichment, mass outside the brain, pointing game (hottest voxel in WT / in the brain); on the case
  grid when given, as the app's Explanation panel (the layer map resampled once to it,
  :func:`braingui.inference.pipeline.cam_to_case`), else on the input grid;
* with ``faith=True`` also the deletion areas and gain (:mod:`braingui.inference.faithfulness`, on the
  input grid as in the app: top 5/10/20/40 % of brain voxels, two random draws) and the model-randomisation Spearman (last dense
  block + classifier re-initialised, three draws).

The numbers are the app's own modules' numbers, computed with fewer passes: the 28 maps of a case come
from three forward + backward passes (medcam's Grad-CAM and Grad-CAM++ backends hooked at all layers at
once, and one ``autograd.grad`` to all layers for HiResCAM / LayerCAM) instead of 28; the randomised
copies give their 28 maps the same way; the deletion curves of all maps share their random-voxel curves
(:func:`~braingui.inference.faithfulness.deletion_curve` draws them from the same seeded generator for
every map) and identical maps are deleted once. ``tests/unit/test_cam_study.py`` checks every one of
these against :func:`~braingui.inference.cam_methods.compute_cam`,
:func:`~braingui.inference.faithfulness.deletion_curve` and
:func:`~braingui.inference.faithfulness.model_randomisation`.

:func:`summarise` turns rows into one line per set x method x layer (mean +- sd, pointing game as a
fraction), :func:`choose_default` applies the stated rule (:data:`RULE`) and :func:`format_table` prints.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from braingui.explanation import RANDOMISATION_LIMIT, localisation, rank_correlation
from braingui.inference.cam_methods import (CONTRASTIVE_METHODS, METHODS, cam_layers, combine, explained_score,
                                            normalise, upsample)
from braingui.inference.faithfulness import (DELETION_FRACTIONS, DeletionCurve, Randomisation, channel_means,
                                             classify, deletion_order, randomisation_layers, reinitialise, replaced)

Pair = tuple[str, str]
MEDCAM_BACKENDS = {"gradcam": "gcam", "gradcam++": "gcampp"}
FIELDS = ("set", "case", "true", "grade", "predicted", "p_predicted", "method", "layer", "mass_in_wt",
          "wt_fraction_of_brain", "enrichment", "mass_outside_brain", "peak_in_wt", "peak_in_brain", "faith",
          "deletion_map_auc", "deletion_random_auc", "deletion_gain", "randomisation_spearman",
          "randomisation_flag", "seconds")
"""Columns of the per-case CSV (one row per case x method x layer)."""
FLOATS = ("p_predicted", "mass_in_wt", "wt_fraction_of_brain", "enrichment", "mass_outside_brain",
          "deletion_map_auc", "deletion_random_auc", "deletion_gain", "randomisation_spearman", "seconds")
BOOLS = ("peak_in_wt", "peak_in_brain", "faith", "randomisation_flag")
RULE = ("among the method x layer pairs whose mean model-randomisation Spearman on the real cases is below "
        f"{RANDOMISATION_LIMIT} (the map depends on what the network learned, Adebayo et al. 2018) and whose "
        "pointing game on the real cases is at least the median over all pairs, the highest mean enrichment "
        "on the real cases (ties: higher pointing game, then the earlier pair); if no pair passes both, the "
        "randomisation test alone, then none")
"""The default-selection rule, in words (:func:`choose_default`)."""


def pairs_of(network: torch.nn.Module, methods: Sequence[str] = METHODS,
             layers: Sequence[str] | None = None) -> list[Pair]:
    """Every ``(method, layer)``: ``layers`` (default :func:`cam_layers`) in network order, method inner."""
    return [(m, layer) for layer in (cam_layers(network) if layers is None else layers) for m in methods]


def _medcam_maps(network: torch.nn.Module, x: torch.Tensor, backend: str, layers: Sequence[str],
                 class_index: int) -> dict[str, np.ndarray]:
    """medcam's maps at several layers from one forward + backward (as compute_cam's, one layer each)."""
    from medcam import medcam

    model = medcam.inject(network, backend=backend, layer=list(layers), label=None, save_maps=False,
                          save_pickle=False, save_scores=False, evaluate=False, replace=False, return_attention=False)
    model.medcam_dict["tested"] = True
    wrapper = model.medcam_dict["model_backend"]
    try:
        with torch.enable_grad():
            _, maps, *_ = wrapper.generate_attention_map(x, int(class_index))
    finally:
        wrapper.remove_hook(forward=True, backward=True)
    return {layer: normalise(torch.from_numpy(np.asarray(maps[layer], dtype=np.float32)[0, 0])) for layer in layers}


def _autograd_maps(network: torch.nn.Module, x: torch.Tensor, layers: Sequence[str], methods: Sequence[str],
                   class_index: int | None) -> tuple[torch.Tensor, int, dict[Pair, np.ndarray]]:
    """Logits, the class and the own-code maps at ``layers`` from one forward + one ``autograd.grad`` per
    explained score (the logit; the contrastive score)."""
    acts: dict[str, torch.Tensor] = {}
    handles = [network.get_submodule(name).register_forward_hook(
        lambda _m, _i, out, name=name: acts.__setitem__(name, out)) for name in layers]
    try:
        with torch.enable_grad():
            logits = network(x)
            c = int(logits[0].argmax()) if class_index is None else int(class_index)
            scores: dict[bool, tuple[torch.Tensor, list[str]]] = {}
            for m in methods:  # methods that explain the same score share its gradients
                scores.setdefault(m in CONTRASTIVE_METHODS, (explained_score(logits, c, m), []))[1].append(m)
            maps = {}
            for i, (s, ms) in enumerate(scores.values()):
                grads = torch.autograd.grad(s, [acts[n] for n in layers], retain_graph=i < len(scores) - 1)
                for name, g in zip(layers, grads):
                    maps.update({(m, name): normalise(combine(m, g, acts[name].detach())) for m in ms})
    finally:
        for h in handles:
            h.remove()
    return logits.detach(), c, maps


def all_maps(network: torch.nn.Module, x: torch.Tensor, pairs: Sequence[Pair], class_index: int | None = None
             ) -> tuple[torch.Tensor, int, dict[Pair, np.ndarray]]:
    """The maps of every pair on their layers' grids, as :func:`~braingui.inference.cam_methods.compute_cam`.

    Args:
        network: the classifier in eval mode (frozen or not; nothing is trained).
        x: float ``(1, C, X, Y, Z)`` classifier input.
        pairs: ``(method, layer)`` pairs (:func:`pairs_of`).
        class_index: the class explained; ``None`` = the arg-max.

    Returns:
        ``(logits (1, n_classes), class index, {pair: float32 map in [0, 1] on the layer's grid})``.
    """
    x = x.detach().requires_grad_(True)
    layers = list(dict.fromkeys(layer for _, layer in pairs))
    own = [m for m in METHODS if m not in MEDCAM_BACKENDS and any(p[0] == m for p in pairs)]
    logits, c, maps = _autograd_maps(network, x, layers, own, class_index)
    for method, backend in MEDCAM_BACKENDS.items():
        wanted = [layer for m, layer in pairs if m == method]
        if wanted:
            maps.update({(method, k): v for k, v in _medcam_maps(network, x, backend, wanted, c).items()})
    network.zero_grad(set_to_none=True)
    return logits, c, {p: maps[p] for p in pairs}


def randomisation_all(network: torch.nn.Module, x: torch.Tensor, brain: np.ndarray, references: dict[Pair, np.ndarray],
                      class_index: int, n_draws: int = 3, seed: int = 0,
                      layers: Sequence[str] | None = None) -> dict[Pair, Randomisation]:
    """:func:`~braingui.inference.faithfulness.model_randomisation` of every pair, the draws shared.

    Args:
        brain: bool ``(X, Y, Z)`` on the input grid.
        references: pair -> the real map upsampled to the input grid, float ``(X, Y, Z)``.
        class_index: the class the real maps explain.
        n_draws, seed, layers: as ``model_randomisation`` (draw ``i`` re-initialises with ``seed + i``).
    """
    layers = randomisation_layers(network) if layers is None else layers
    brain = np.asarray(brain, dtype=bool)
    pairs = list(references)
    clone = copy.deepcopy(network)
    for p in clone.parameters():
        p.requires_grad_(False)
    draws: dict[Pair, list[float]] = {p: [] for p in pairs}
    for i in range(max(1, int(n_draws))):
        _, _, maps = all_maps(reinitialise(clone, layers, seed + i), x, pairs, class_index)
        for p in pairs:
            draws[p].append(rank_correlation(references[p], upsample(maps[p], x.shape[2:]), brain))
    out = {}
    for p in pairs:
        ref = np.asarray(references[p])
        if not brain.any() or np.ptp(ref[brain]) == 0:
            out[p] = Randomisation(math.nan, False, ())
            continue
        rho = float(np.mean([0.0 if math.isnan(r) else r for r in draws[p]]))
        out[p] = Randomisation(rho, bool(rho > RANDOMISATION_LIMIT), tuple(draws[p]))
    return out


def deletion_all(network: torch.nn.Module, x: torch.Tensor, heats: dict[Pair, np.ndarray], brain: np.ndarray,
                 class_index: int, baseline: float, fractions: Sequence[float] = DELETION_FRACTIONS,
                 n_random: int = 2, seed: int = 0, batch_size: int = 8) -> dict[Pair, DeletionCurve]:
    """:func:`~braingui.inference.faithfulness.deletion_curve` of every map, random curves and equal maps shared.

    Args:
        heats: pair -> float ``(X, Y, Z)`` map on the input grid.
        brain: bool ``(X, Y, Z)``.
        class_index, baseline: the class followed and its probability on ``x``.
        fractions, n_random, seed, batch_size: as ``deletion_curve``.
    """
    brain = np.asarray(brain, dtype=bool)
    brain_t = torch.from_numpy(brain).to(x.device)
    means = channel_means(x, brain_t)
    n_brain = int(np.count_nonzero(brain))
    counts = [int(round(f * n_brain)) for f in fractions]
    orders: dict[str, np.ndarray] = {}
    key_of: dict[Pair, str] = {}
    randoms: list[np.ndarray] = []
    for p, heat in heats.items():
        rng = np.random.default_rng(seed)
        order = deletion_order(heat, brain, rng)
        if not randoms:
            randoms = [rng.permutation(np.flatnonzero(brain)) for _ in range(n_random)]
        key_of[p] = hashlib.sha1(order.tobytes()).hexdigest()
        orders.setdefault(key_of[p], order)
    jobs = [(k, o) for k, o in orders.items()] + [(f"random{i}", o) for i, o in enumerate(randoms)]
    masks = [(k, n, o[:n]) for k, o in jobs for n in counts]
    probs: dict[tuple[str, int], float] = {}
    for start in range(0, len(masks), batch_size):
        chunk = masks[start:start + batch_size]
        inputs = []
        for _, _, idx in chunk:
            m = np.zeros(brain.size, dtype=bool)
            m[idx] = True
            inputs.append(replaced(x, torch.from_numpy(m.reshape(brain.shape)).to(x.device), means))
        p = classify(network, inputs, batch_size)[:, class_index]
        probs.update({(k, n): float(v) for (k, n, _), v in zip(chunk, p)})
    f = np.concatenate([[0.0], np.asarray(fractions, dtype=np.float64)])
    rand = np.array([[baseline] + [probs[(f"random{i}", n)] for n in counts] for i in range(n_random)])
    return {p: DeletionCurve(f, np.array([baseline] + [probs[(key_of[p], n)] for n in counts]), rand) for p in heats}


def case_rows(network: torch.nn.Module, x: torch.Tensor, wt: np.ndarray, brain: np.ndarray, classes: Sequence[str],
              pairs: Sequence[Pair], faith: bool = False, n_draws: int = 3, n_random: int = 2,
              meta: dict | None = None, case_grid: tuple | None = None) -> list[dict]:
    """One row (:data:`FIELDS`) per pair for one case.

    Args:
        network: the classifier (eval mode; frozen parameters make it faster).
        x: float ``(1, C, X, Y, Z)`` classifier input.
        wt, brain: bool ``(X, Y, Z)`` on the input grid: the case's own whole tumour and the brain (the
            deletion and randomisation grid, as the app's).
        classes: class codes in output order.
        pairs: ``(method, layer)`` pairs.
        faith: also the deletion curve and the randomisation check.
        n_draws, n_random: randomisation draws and random deletion draws.
        meta: ``set``, ``case``, ``true``, ``grade`` copied into every row.
        case_grid: ``(grid_map, wt_case, brain_case)``: localise on the case grid as the app's panel does
            (each layer map resampled once, :func:`braingui.inference.pipeline.cam_to_case`; bool
            ``(X, Y, Z)`` case-grid masks); ``None``: on the input grid (the map upsampled there).
    """
    t0 = time.time()
    logits, c, maps = all_maps(network, x, pairs, None)
    prob = float(torch.softmax(logits.double(), dim=1)[0, c])
    heats = {p: upsample(m, x.shape[2:]) for p, m in maps.items()}
    dele = deletion_all(network, x, heats, brain, c, prob, n_random=n_random) if faith else {}
    rand = randomisation_all(network, x, brain, heats, c, n_draws) if faith else {}
    seconds = round(time.time() - t0, 1)
    rows = []
    if case_grid is not None:
        from braingui.inference.pipeline import cam_to_case

        grid_map, wt_case, brain_case = case_grid
    for p in pairs:
        loc = (localisation(heats[p], wt, brain) if case_grid is None
               else localisation(cam_to_case(maps[p], grid_map), wt_case, brain_case))
        row = {**{k: "" for k in FIELDS}, **(meta or {}), "predicted": classes[c], "p_predicted": round(prob, 4),
               "method": p[0], "layer": p[1], "faith": bool(faith), "seconds": seconds,
               **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in loc.__dict__.items()
                  if k in FIELDS}}
        if faith:
            a = dele[p].areas()
            row.update(deletion_map_auc=round(a.map_auc, 5), deletion_random_auc=round(a.random_auc, 5),
                       deletion_gain=round(a.gain, 5), randomisation_spearman=round(rand[p].spearman, 5),
                       randomisation_flag=rand[p].flag)
        rows.append(row)
    return rows


def parse_row(row: dict[str, str]) -> dict:
    """A per-case CSV row read back: floats (``""`` / ``nan`` -> NaN) and booleans restored."""
    out: dict = dict(row)
    for k in FLOATS:
        v = row.get(k, "")
        out[k] = math.nan if v in ("", "nan", "None") else float(v)
    for k in BOOLS:
        out[k] = str(row.get(k, "")).strip() == "True"
    return out


def _stat(values: list[float]) -> tuple[float, float, int]:
    v = np.array([x for x in values if isinstance(x, (int, float)) and math.isfinite(x)], dtype=np.float64)
    if not v.size:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def summarise(rows: Sequence[dict], pairs: Sequence[Pair]) -> list[dict]:
    """One line per set x pair: ``n``, mean / sd / n of each number, ``pointing_game`` (fraction of cases)."""
    out = []
    for s in dict.fromkeys(r["set"] for r in rows):
        for method, layer in pairs:
            rs = [r for r in rows if r["set"] == s and r["method"] == method and r["layer"] == layer]
            if not rs:
                continue
            line = {"set": s, "method": method, "layer": layer, "n": len(rs),
                    "pointing_game": float(np.mean([bool(r["peak_in_wt"]) for r in rs])),
                    "peak_in_brain": float(np.mean([bool(r["peak_in_brain"]) for r in rs]))}
            for k in ("mass_in_wt", "enrichment", "mass_outside_brain", "deletion_gain", "randomisation_spearman"):
                line[k], line[k + "_sd"], line[k + "_n"] = _stat([r[k] for r in rs])
            faith = [r for r in rs if r["faith"]]
            line["randomisation_flag_rate"] = (float(np.mean([bool(r["randomisation_flag"]) for r in faith]))
                                               if faith else math.nan)
            out.append(line)
    return out


def choose_default(summary: Sequence[dict], set_name: str = "real") -> dict:
    """The default pair by :data:`RULE` on ``set_name``'s lines of :func:`summarise`.

    Returns:
        ``{"method", "layer", "set", "rule", "median_pointing_game", "passed" (how many pairs passed),
        "relaxed" (None, or which criterion was dropped), "line" (the chosen summary line)}``.

    Raises:
        ValueError: no line for ``set_name``.
    """
    lines = [s for s in summary if s["set"] == set_name]
    if not lines:
        raise ValueError(f"no summary lines for the set {set_name!r}")
    median_pg = float(np.median([s["pointing_game"] for s in lines]))

    def sane(s):
        return math.isfinite(s["randomisation_spearman"]) and s["randomisation_spearman"] < RANDOMISATION_LIMIT

    def rank(s):
        e = s["enrichment"] if math.isfinite(s["enrichment"]) else -math.inf
        return (e, s["pointing_game"], -lines.index(s))

    relaxed = None
    passed = [s for s in lines if sane(s) and s["pointing_game"] >= median_pg]
    pool = passed
    if not pool:
        relaxed, pool = "pointing game", [s for s in lines if sane(s)]
    if not pool:
        relaxed, pool = "pointing game and randomisation", lines
    best = max(pool, key=rank)
    return {"method": best["method"], "layer": best["layer"], "set": set_name, "rule": RULE,
            "median_pointing_game": median_pg, "passed": len(passed), "relaxed": relaxed, "line": best}


def _ms(mean: float, sd: float, n: int, digits: int = 2) -> str:
    return "-" if not n else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def format_table(summary: Sequence[dict], set_name: str, title: str = "") -> str:
    """A plain-text table of one set's lines (mean ± sd; pointing game and flag rate as %)."""
    head = (f"{'method':<10} {'layer':<12} {'n':>3} {'mass in WT':>13} {'enrichment':>13} {'pointing':>8} "
            f"{'in brain':>8} {'deletion gain':>15} {'rand. rho':>13} {'n(f)':>4} {'flag':>5}")
    out = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
    for s in (s for s in summary if s["set"] == set_name):
        flag = "-" if math.isnan(s["randomisation_flag_rate"]) else f"{100 * s['randomisation_flag_rate']:.0f} %"
        out.append(f"{s['method']:<10} {s['layer'].replace('features.', ''):<12} {s['n']:>3} "
                   f"{_ms(s['mass_in_wt'], s['mass_in_wt_sd'], s['mass_in_wt_n']):>13} "
                   f"{_ms(s['enrichment'], s['enrichment_sd'], s['enrichment_n']):>13} "
                   f"{100 * s['pointing_game']:>6.0f} % {100 * s['peak_in_brain']:>6.0f} % "
                   f"{_ms(s['deletion_gain'], s['deletion_gain_sd'], s['deletion_gain_n'], 3):>15} "
                   f"{_ms(s['randomisation_spearman'], s['randomisation_spearman_sd'], s['randomisation_spearman_n']):>13} "
                   f"{s['randomisation_spearman_n']:>4} {flag:>5}")
    return "\n".join(out)
