"""The explanation of one classification: its map scored, checked against the network, and said in words.

The pipeline (:mod:`braingui.inference.pipeline`) builds an :class:`Explainer` from the class activation
map it has just computed, runs the quick part with the first results and the slow part after them, and
stores :meth:`Explainer.as_dict` as ``AnalysisResult.explanation`` (``results.json`` ``"explanation"``)::

    ex = Explainer(network, x, method=..., layer=..., class_index=k, classes=..., class_titles=...,
                   channels=..., probabilities=p, cam=cam_on_layer_grid, brain=brain_on_input_grid,
                   wt=wt_on_input_grid_or_None, localisation=loc, reference=ref_loc_or_None)
    ex.quick()                  # tumour occlusion + sequence ablation: ONE batched forward of 1 + C inputs
    ex.as_dict()                # level "quick"
    ex.deletion(); ex.randomisation()
    ex.as_dict()                # level "full"

Two grids, each map resampled once to each:

* the **case grid** (localisation, display): :func:`display_map` masks the case-grid map to the brain
  (voxels non-zero in any sequence) and scales its in-brain maximum to 1; :func:`localise` scores the
  unmasked map (its mass outside the brain is reported, not dropped) against the predicted whole tumour
  and, when the case has one, against its own label map;
* the **classifier input grid** (faithfulness, :mod:`braingui.inference.faithfulness`): the map upsampled
  from its layer (:func:`~braingui.inference.cam_methods.upsample`), the brain of the z-scored input and
  the predicted WT mapped there (``grid_map.forward(wt) > 0.5``).

The dictionary (plain JSON types; floats rounded to 6 digits, ``NaN`` -> ``None``)::

    {"method", "layer", "class",                              # class: the explained (predicted) class code
     "mass_in_wt", "wt_fraction_of_brain", "enrichment",      # against the predicted WT (None without a
     "mass_outside_brain", "peak_in_wt", "peak_in_brain",     #   segmentation), see braingui.explanation
     "reference": {"mass_in_wt", "wt_fraction_of_brain", "enrichment", "peak_in_wt", "peak_in_brain"} | None,
     "tumour_occlusion": {"class", "probabilities": {code: p}} | None,   # None without a predicted WT
     "modality_ablation": {"flair": dp, "t1": dp, "t1ce": dp, "t2": dp}, # change of the class's probability
     "deletion": {"map_auc", "random_auc"} | None,            # None until the slow part ran
     "randomisation": {"spearman", "flag"} | None,            # None until the slow part ran
     "verdict": "<the Explanation panel's text>", "level": "quick" | "full"}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from braingui.errors import BrainguiError
from braingui.explanation import DeletionAreas, Localisation, localisation, verdict
from braingui.inference import faithfulness as fa
from braingui.inference.cam_methods import TAIL_METHODS, compute_cam, prefix, split_index, tail_cams, upsample

LEVELS = ("none", "quick", "full")
REFERENCE_KEYS = ("mass_in_wt", "wt_fraction_of_brain", "enrichment", "peak_in_wt", "peak_in_brain")
LOCALISATION_KEYS = ("mass_in_wt", "wt_fraction_of_brain", "enrichment", "mass_outside_brain", "peak_in_wt",
                     "peak_in_brain")
RANDOMISATION_DRAWS = 3
DELETION_RANDOM_DRAWS = 2


def check_level(level: str) -> str:
    """``level`` if it is one of :data:`LEVELS` (``none``, ``quick``, ``full``).

    Raises:
        BrainguiError: another value, naming the valid ones.
    """
    if level not in LEVELS:
        raise BrainguiError(f"unknown explanation level {level!r} (choose one of: {', '.join(LEVELS)})")
    return level


def display_map(cam_case: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The map as shown: zero outside the brain, its in-brain maximum scaled to 1.

    Args:
        cam_case: float32 ``(X, Y, Z)`` map in [0, 1] on the case grid (resampled once from its layer).
        brain: bool ``(X, Y, Z)`` voxels non-zero in any sequence.

    Returns:
        float32 ``(X, Y, Z)`` in [0, 1] (all zero when the map has no heat inside the brain).
    """
    out = np.where(brain, cam_case, np.float32(0.0)).astype(np.float32, copy=False)
    peak = float(out.max(initial=0.0))
    if peak > 0:
        out *= np.float32(1.0 / peak)
        np.clip(out, 0.0, 1.0, out=out)
    return out


def localise(cam_case: np.ndarray, brain: np.ndarray, wt: np.ndarray | None) -> Localisation:
    """:func:`braingui.explanation.localisation` of the unmasked case-grid map (its mass outside the brain
    counted); without a WT mask (no segmentation) against an empty one, so the verdict says that the map
    cannot be checked (:meth:`Explainer.as_dict` then reports the WT numbers as ``None``).

    Args:
        cam_case: float ``(X, Y, Z)`` map on the case grid (before :func:`display_map`).
        brain: bool ``(X, Y, Z)``.
        wt: bool ``(X, Y, Z)`` whole tumour, or ``None``.
    """
    return localisation(cam_case, np.zeros(brain.shape, bool) if wt is None else wt, brain)


def _num(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


class Explainer:
    """One map's explanation (see the module docstring).

    Args:
        network: the classifier (eval mode).
        x: float ``(1, C, X, Y, Z)`` its input, on its device.
        method, layer: how the map was made (the randomisation check remakes it the same way).
        class_index: the explained (predicted) class.
        classes, class_titles: class codes in output order and their names.
        channels: the name of each input channel (``flair``, ...).
        probabilities: float ``(n_classes,)`` on ``x`` (from the map's own pass: the baselines).
        cam: float32 ``(x, y, z)`` the map on its layer's grid.
        brain: bool ``(X, Y, Z)`` the brain on the input grid.
        wt: bool ``(X, Y, Z)`` the predicted WT on the input grid, or ``None`` (no segmentation).
        localisation: against the predicted WT on the case grid (:func:`localise`).
        reference: against the case's own label map, or ``None``.
        has_wt: a segmentation gave the WT numbers (False: they are reported as ``None``).
    """

    def __init__(self, network: torch.nn.Module, x: torch.Tensor, *, method: str, layer: str, class_index: int,
                 classes: Sequence[str], class_titles: dict[str, str], channels: Sequence[str],
                 probabilities: np.ndarray, cam: np.ndarray, brain: np.ndarray, wt: np.ndarray | None,
                 localisation: Localisation, reference: Localisation | None = None, has_wt: bool = True):
        self.network, self.x = network, x
        self.method, self.layer, self.class_index = method, layer, int(class_index)
        self.classes, self.class_titles, self.channels = tuple(classes), dict(class_titles), tuple(channels)
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.heat = upsample(cam, x.shape[2:])  # the map on the input grid, resampled once from its layer
        self.brain = np.asarray(brain, dtype=bool)
        self.wt = None if wt is None or not np.any(wt) else np.asarray(wt, dtype=bool)
        self.loc, self.reference, self.has_wt = localisation, reference, has_wt
        self.occlusion: fa.Occlusion | None = None
        self.ablation: fa.Ablation | None = None
        self.deletion_areas: DeletionAreas | None = None
        self.randomised: fa.Randomisation | None = None
        self._front: tuple[int, torch.Tensor] | None | bool = False  # False: not yet looked for

    @property
    def baseline(self) -> float:
        """The explained class's probability on the unchanged input."""
        return float(self.probabilities[self.class_index])

    def quick(self) -> None:
        """Tumour occlusion (when there is a predicted WT) and sequence ablation, in one batched forward."""
        if self.wt is not None:
            self.occlusion, self.ablation = fa.quick_checks(self.network, self.x, self.wt, self.brain, self.channels,
                                                            self.class_index, self.baseline)
        else:
            self.ablation = fa.sequence_ablation(self.network, self.x, self.brain, self.channels, self.class_index,
                                                 self.baseline)

    def deletion(self, seed: int = 0) -> None:
        """The deletion curves (:func:`~braingui.inference.faithfulness.deletion_curve`, 12 forwards)."""
        curve = fa.deletion_curve(self.network, self.x, self.heat, self.brain, self.class_index, self.baseline,
                                  n_random=DELETION_RANDOM_DRAWS, seed=seed)
        self.deletion_areas = curve.areas()

    def front(self) -> tuple[int, torch.Tensor] | None:
        """``(start, activation)``: the network's front, before the map's layer and before what the sanity
        check re-initialises, run once and shared by the randomised copies and the other classes' maps
        (:func:`~braingui.inference.cam_methods.split_index`); ``None`` when the network or the method
        has no such cut."""
        if self._front is False:
            start = (split_index(self.network, self.layer, fa.randomisation_layers(self.network))
                     if self.method in TAIL_METHODS else None)
            self._front = None if start is None else (start, prefix(self.network, self.x, start))
        return self._front

    def randomisation(self, seed: int = 0) -> None:
        """The model-randomisation check (:func:`~braingui.inference.faithfulness.model_randomisation`)."""
        self.randomised = fa.model_randomisation(self.network, self.x, self.brain, self.heat, self.class_index,
                                                 self.method, self.layer, seed=seed, n_draws=RANDOMISATION_DRAWS,
                                                 front=self.front())

    def class_maps(self, class_indices: Sequence[int]) -> list[np.ndarray]:
        """The maps of other classes, same method and layer, on the layer's grid (float32 in [0, 1]): from
        the shared front with one backward each when the network can be cut (:meth:`front`), else one
        whole :func:`~braingui.inference.cam_methods.compute_cam` pass each."""
        front = self.front()
        if front is not None and class_indices:
            return tail_cams(self.network, front[1], front[0], self.layer, self.method, class_indices)[1]
        return [compute_cam(self.network, self.x, self.method, self.layer, int(k))[1] for k in class_indices]

    @property
    def level(self) -> str:
        """``"full"`` once the deletion curve and the randomisation check have run, else ``"quick"``."""
        return "full" if self.deletion_areas is not None and self.randomised is not None else "quick"

    def _title(self, k: int) -> str:
        code = self.classes[k]
        return self.class_titles.get(code, code)

    def verdict(self) -> str:
        """The Explanation panel's text (:func:`braingui.explanation.verdict`) of what has been computed."""
        occ, rnd = self.occlusion, self.randomised
        return verdict(self.loc, predicted_title=self._title(self.class_index),
                       occluded_title=None if occ is None else self._title(occ.class_index),
                       occluded_probability=None if occ is None else float(occ.probabilities[occ.class_index]),
                       ablation=None if self.ablation is None else self.ablation.changes,
                       deletion=self.deletion_areas,
                       randomisation_spearman=None if rnd is None else rnd.spearman,
                       randomisation_flag=None if rnd is None else rnd.flag,
                       reference=self.reference)

    def as_dict(self) -> dict:
        """The ``"explanation"`` of results.json (see the module docstring)."""
        loc = self.loc.as_dict()
        out: dict = {"method": self.method, "layer": self.layer, "class": self.classes[self.class_index]}
        for key in LOCALISATION_KEYS:
            wt_key = key not in ("mass_outside_brain", "peak_in_brain")
            out[key] = None if wt_key and not self.has_wt else loc[key]
        out["reference"] = None if self.reference is None else {k: self.reference.as_dict()[k] for k in REFERENCE_KEYS}
        occ = self.occlusion
        out["tumour_occlusion"] = None if occ is None else {
            "class": self.classes[occ.class_index],
            "probabilities": {c: _num(p) for c, p in zip(self.classes, occ.probabilities)}}
        out["modality_ablation"] = ({} if self.ablation is None else
                                    {name: _num(d) for name, d in self.ablation.changes.items()})
        d = self.deletion_areas
        out["deletion"] = None if d is None else {"map_auc": _num(d.map_auc), "random_auc": _num(d.random_auc)}
        r = self.randomised
        out["randomisation"] = None if r is None else {"spearman": _num(r.spearman), "flag": bool(r.flag)}
        out["verdict"] = self.verdict()
        out["level"] = self.level
        return out
