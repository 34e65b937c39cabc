"""Time the explanation of a classification: the quick part as a ratio, the full explanation in seconds.

    python bench/bench_explanation.py [--case DIR] [--models DIR] [--repeats N] [--device cpu]
                                      [--method gradcam] [--layer features.denseblock1]

On the full-size synthetic demo case (default) with the bundles found as the app finds them (the shipped
``demo-segresnet`` and ``demo-densenet169``). The segmentation runs once first (its whole tumour is what
the map is scored against and what the occlusion removes); then, interleaved ``--repeats`` times so that
other processes on a shared CPU slow every count alike:

* **reference**: one class-activation-map pass (:func:`braingui.inference.cam_methods.compute_cam`, the
  predicted class) plus six single classifier forwards (``ClassificationModel.probabilities``);
* **quick**: the pipeline's quick part, with its own functions: the map's pass (which also gives the
  class), the one resampling onto the case grid, the map masked to the brain, localisation against the
  predicted and the reference whole tumour, tumour occlusion and sequence ablation (one batched forward
  of 1 + 4 inputs). Budget: at most 1.5 x the reference;
* **slow**: the deletion curve (12 forwards), the model-randomisation check (3 maps of a randomised copy
  with frozen weights) and the other classes' maps. **full** = quick + slow; budget: at most 30 s on
  the 2-core CPU.

Preparing the classifier input (z-score, crop, resize) is the classification's and is left out of both
sides. Medians are printed, with the fastest runs (the steadier figure on a busy machine) and the load
average before and after: on a shared machine the seconds mean little without it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from braingui.case import load_case  # noqa: E402
from braingui.explanation import brain_mask  # noqa: E402
from braingui.inference.cam_methods import compute_cam  # noqa: E402
from braingui.inference.locate import find_bundles  # noqa: E402
from braingui.inference.pipeline import (_quick_explanation, _store_map, analyse, cam_to_case,  # noqa: E402
                                         run_to_completion)
from braingui.inference.predictor import Predictor  # noqa: E402
from braingui.preprocess import prepare_classification  # noqa: E402
from braingui.results import AnalysisResult  # noqa: E402

QUICK_BUDGET = 1.5
FULL_BUDGET_S = 30.0


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


class Setup:
    """The case, the loaded classifier, its prepared input, the brain and the segmentation's labels."""

    def __init__(self, case_dir: Path, models: str | None, device: str, method: str | None, layer: str | None):
        search = find_bundles(models)
        if search.classification is None or search.segmentation is None:
            raise SystemExit("needs a segmentation and a classification bundle")
        self.case = load_case(case_dir)
        predictor = Predictor(device)
        seg_result = run_to_completion(analyse(self.case, predictor, search.segmentation, None, tta=1))
        self.labels = seg_result.labels
        self.model = predictor.load(search.classification)
        self.method, self.layer = self.model.check_cam_choice(method, layer)
        stack = self.case.stack(self.model.prep.channels)
        self.brain = brain_mask(stack)
        self.inp = prepare_classification(stack, self.model.prep)
        self.bundle = search.classification.name


def reference(s: Setup) -> None:
    """One map pass and six classifier forwards."""
    compute_cam(s.model.network, s.model.tensor(s.inp.array), s.method, s.layer)
    for _ in range(6):
        s.model.probabilities(s.inp.array)


def quick(s: Setup):
    """The pipeline's quick part (see the module docstring); returns what the slow part needs."""
    probs, cam = s.model.explain(s.inp.array, on_input_grid=False, method=s.method, layer=s.layer)
    predicted = int(np.argmax(probs))
    result = AnalysisResult(case_id=s.case.case_id, labels=s.labels)
    raw = cam_to_case(cam, s.inp.grid_map)
    _store_map(result, s.model.spec.classes[predicted], raw, s.brain, s.layer, warn=True)
    explainer = _quick_explanation(s.case, s.model, result, s.inp, probs, predicted, cam, raw, s.brain, s.method,
                                   s.layer)
    if explainer is None:
        raise SystemExit(f"the quick explanation failed: {result.warnings[-1]}")
    return explainer, result, predicted


def slow(s: Setup, explainer, result: AnalysisResult, predicted: int) -> dict[str, float]:
    """The pipeline's slow part: deletion, randomisation, the other classes' maps; seconds of each."""
    t = [time.perf_counter()]
    explainer.deletion()
    t.append(time.perf_counter())
    explainer.randomisation()
    t.append(time.perf_counter())
    others = [k for k in range(len(s.model.spec.classes)) if k != predicted]
    for k, other in zip(others, explainer.class_maps(others)):
        _store_map(result, s.model.spec.classes[k], cam_to_case(other, s.inp.grid_map), s.brain, s.layer, warn=False)
    t.append(time.perf_counter())
    return {"deletion": t[1] - t[0], "randomisation": t[2] - t[1], "other classes": t[3] - t[2]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", type=Path, help="case folder (default: the full-size synthetic demo case)")
    p.add_argument("--models", help="models folder (default: as the app searches)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--method", help="map method (default: the manifest's)")
    p.add_argument("--layer", help="map layer (default: the manifest's)")
    args = p.parse_args(argv)
    if args.case is None:
        from braingui.app.demo import demo_case_folder

        args.case = demo_case_folder()
    import torch

    print(f"load average before: {_load()}  (torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs)")
    s = Setup(args.case, args.models, args.device, args.method, args.layer)
    print(f"{s.case.case_id}: case grid {tuple(s.case.grid.shape)}, classifier {s.bundle} input "
          f"{tuple(s.inp.array.shape)}, {s.method} at {s.layer}, {args.device}")
    reference(s)  # warm-up: first-call costs (medcam's import, allocations) are nobody's
    ex, result, predicted = quick(s)
    times: dict[str, list[float]] = {"reference": [], "quick": [], "slow": [], "full": [], "  deletion": [],
                                     "  randomisation": [], "  other classes": []}
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        reference(s)
        times["reference"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ex, result, predicted = quick(s)
        t1 = time.perf_counter()
        parts = slow(s, ex, result, predicted)
        t2 = time.perf_counter()
        for k, v in parts.items():
            times[f"  {k}"].append(v)
        times["quick"].append(t1 - t0)
        times["slow"].append(t2 - t1)
        times["full"].append(t2 - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    print(f"{args.repeats} interleaved runs, medians (fastest):")
    for k in times:
        print(f"  {k:16s} {med[k]:7.2f} s  ({low[k]:6.2f} s)")
    ratio, ratio_low = med["quick"] / med["reference"], low["quick"] / low["reference"]
    print(f"quick / (one map pass + six forwards): {ratio:.2f} (fastest runs {ratio_low:.2f}); "
          f"budget {QUICK_BUDGET} -> {'within' if ratio <= QUICK_BUDGET else 'OVER'}")
    print(f"full explanation: {med['full']:.1f} s (fastest {low['full']:.1f} s); budget {FULL_BUDGET_S:.0f} s -> "
          f"{'within' if med['full'] <= FULL_BUDGET_S else 'OVER'}")
    verdict = ex.as_dict()
    print(f"explanation ({verdict['level']}): {verdict['verdict']}")
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
