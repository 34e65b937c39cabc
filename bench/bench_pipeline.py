"""Time the inference pipeline against the bare network passes it needs, in one run, same case, same networks.

    python bench/bench_pipeline.py [--case DIR] [--models DIR | --seg-bundle DIR --cls-bundle DIR]
                                   [--repeats N] [--device auto] [--threads N]

Default: the full-size synthetic demo case (240x240x155, written to a temporary folder) and mid-size
random-weight networks written as bundles: SegResNet init 16, blocks (1,2,2,4)/(1,1,1) (the MONAI
model-zoo configuration, 4.7 M parameters) on the paper's 160x192x128 crop, and a 3D DenseNet121 on the
paper's 120x148x120 classifier input.

* pipeline: ``analyse()`` from a loaded case to the result (models already loaded, as in the app after
  the first run): preprocessing, windows, sigmoid, mapping back, labels, volumes, softmax, Grad-CAM
  through medcam and mapping the map back;
* bare: the same network work on inputs prepared beforehand and not timed: the segmentation forward
  (same windows, ``no_grad``), the classifier forward with grad and one backward from the predicted logit
  (the least that Grad-CAM needs).

Also times the pipeline's work outside the networks on its own (preprocessing, mapping back, labels),
which stays meaningful when other processes make the network passes' times vary.

Prints medians of N alternating runs, their ratio (goal <= 1.15; also the ratio of the fastest runs, the
steadier figure when other processes share the CPU), the one-off costs (loading the case and
the models, the first call) and the peak resident memory (``resource.getrusage``) after set-up, after
the bare passes and after the pipeline.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from braingui.case import load_case  # noqa: E402
from braingui.inference.bundle import write_bundle  # noqa: E402
from braingui.inference.locate import find_bundles  # noqa: E402
from braingui.inference.manifest import read_bundle  # noqa: E402
from braingui.inference.networks import build_network  # noqa: E402
from braingui.inference.pipeline import analyse, run_to_completion  # noqa: E402
from braingui.inference.predictor import Predictor  # noqa: E402
from braingui.preprocess import prepare_classification, prepare_segmentation  # noqa: E402

SEG_KWARGS = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "init_filters": 16, "blocks_down": [1, 2, 2, 4],
              "blocks_up": [1, 1, 1], "dropout_prob": 0.2, "norm": ["GROUP", {"num_groups": 8}]}
CLS_KWARGS = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "dropout_prob": 0.2}
CHANNELS = ["flair", "t1", "t1ce", "t2"]


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 ** 2 if sys.platform == "darwin" else rss / 1024


def mid_size_bundles(folder: Path):
    """Random-weight bundles of the default networks (seeded)."""
    torch.manual_seed(0)
    seg = write_bundle(folder / "bench-segresnet16", {
        "format_version": 1, "name": "bench-segresnet16", "task": "segmentation",
        "network": {"name": "SegResNet", "kwargs": SEG_KWARGS},
        "input": {"channels": CHANNELS, "crop": [160, 192, 128], "multiple": 8, "roi_size": [160, 192, 128]},
        "output": {"channels": ["TC", "WT", "ET"]}, "model_card": {"summary": "random weights (benchmark)", "demo": True},
    }, build_network("SegResNet", SEG_KWARGS).state_dict())
    cls = write_bundle(folder / "bench-densenet121", {
        "format_version": 1, "name": "bench-densenet121", "task": "classification",
        "network": {"name": "DenseNet121", "kwargs": CLS_KWARGS},
        "input": {"channels": CHANNELS, "shape": [120, 148, 120]},
        "output": {"classes": ["A", "O", "G"]}, "model_card": {"summary": "random weights (benchmark)", "demo": True},
    }, build_network("DenseNet121", CLS_KWARGS).state_dict())
    return seg, cls


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="braingui-bench-"))
    try:
        return run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", type=Path, help="case folder (default: the full-size synthetic demo case)")
    p.add_argument("--models", type=Path, help="a models folder with real bundles (as braingui --models)")
    p.add_argument("--seg-bundle", type=Path, help="a segmentation bundle folder")
    p.add_argument("--cls-bundle", type=Path, help="a classification bundle folder")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    case_dir = args.case
    if case_dir is None:
        from braingui.app.demo import write_demo_case

        case_dir = write_demo_case(tmp / "case")
    if args.models:
        search = find_bundles(args.models)
        seg_b, cls_b = search.segmentation, search.classification
    elif args.seg_bundle or args.cls_bundle:
        seg_b = read_bundle(args.seg_bundle) if args.seg_bundle else None
        cls_b = read_bundle(args.cls_bundle) if args.cls_bundle else None
    else:
        seg_b, cls_b = mid_size_bundles(tmp / "models")
    if seg_b is None or cls_b is None:
        raise SystemExit("need a segmentation and a classification bundle")

    t0 = time.perf_counter()
    case = load_case(case_dir)
    t_case = time.perf_counter() - t0
    predictor = Predictor(args.device)
    t0 = time.perf_counter()
    seg, cls = predictor.load(seg_b), predictor.load(cls_b)
    t_models = time.perf_counter() - t0
    seg_in = prepare_segmentation(case.stack(seg.prep.channels), seg.prep)
    cls_in = prepare_classification(case.stack(cls.prep.channels), cls.prep)

    def bare() -> tuple[float, float]:
        t0 = time.perf_counter()
        with torch.no_grad():
            x = seg.tensor(seg_in.array)
            for sl in seg.windows(seg_in.array.shape[1:]):
                with seg.autocast():
                    seg.network(x[(Ellipsis,) + sl])
        t1 = time.perf_counter()
        logits = cls.network(cls.tensor(cls_in.array))
        logits[0, int(logits.argmax())].backward()
        cls.network.zero_grad(set_to_none=True)
        return t1 - t0, time.perf_counter() - t1

    def host_work() -> float:
        """The pipeline's work outside the networks, timed alone: preprocessing, mapping back, labels."""
        from braingui import labels as lab

        t0 = time.perf_counter()
        s_in = prepare_segmentation(case.stack(seg.prep.channels), seg.prep)
        probs = np.random.default_rng(0).random((3,) + s_in.array.shape[1:], dtype=np.float32)
        probs_case = s_in.grid_map.inverse(probs, fill=0.0, order=1)
        labels = lab.from_region_channels(probs_case > 0.5, seg.spec.regions)
        lab.region_volumes_ml(labels, case.grid.voxel_ml)
        c_in = prepare_classification(case.stack(cls.prep.channels), cls.prep)
        c_in.grid_map.inverse(np.random.default_rng(1).random(c_in.array.shape[1:], dtype=np.float32), order=1)
        return time.perf_counter() - t0

    def pipeline():
        t0 = time.perf_counter()
        result = run_to_completion(analyse(case, predictor, seg_b, cls_b))
        return time.perf_counter() - t0, result

    rss_setup = peak_rss_mb()
    bare()  # warm-up of the bare passes, and their memory peak
    rss_bare = peak_rss_mb()
    t0 = time.perf_counter()
    _, first = pipeline()  # first call: medcam import, allocator warm-up
    t_first = time.perf_counter() - t0
    rss_pipe = peak_rss_mb()
    bares, pipes, stages = [], [], []
    hosts = []
    for _ in range(args.repeats):
        hosts.append(host_work())
        bares.append(bare())
        elapsed, result = pipeline()
        pipes.append(elapsed)
        stages.append(result.timings_s)
    b_seg = statistics.median(b[0] for b in bares)
    b_cls = statistics.median(b[1] for b in bares)
    b_total = statistics.median(sum(b) for b in bares)
    m_pipe = statistics.median(pipes)
    print(f"case: {case_dir} {case.grid.shape}; device {predictor.device}, {torch.get_num_threads()} threads; "
          f"{args.repeats} alternating runs each (medians)")
    print(f"segmentation: {seg_b.name} ({seg_b.manifest.network}), network input {seg_in.array.shape[1:]}, "
          f"{len(seg.windows(seg_in.array.shape[1:]))} window(s)")
    print(f"classification: {cls_b.name} ({cls_b.manifest.network}), input {cls_in.array.shape[1:]}, "
          f"Grad-CAM at {cls.spec.cam_layer}")
    print(f"bare network passes:  {b_total:6.2f} s  (segmentation forward {b_seg:.2f} s, classifier forward+backward {b_cls:.2f} s)")
    print(f"pipeline (analyse):   {m_pipe:6.2f} s  (" + ", ".join(
        f"{k} {statistics.median(s[k] for s in stages):.2f} s" for k in ("segmentation", "classification", "grad-cam")) + ")")
    print(f"ratio pipeline / bare: {m_pipe / b_total:.3f} of medians, {min(pipes) / min(sum(b) for b in bares):.3f} "
          "of the fastest runs (goal <= 1.15)")
    m_host = statistics.median(hosts)
    print(f"work outside the networks, timed alone: {m_host:.2f} s (preprocessing, mapping back, labels): "
          f"(bare + that) / bare = {(b_total + m_host) / b_total:.3f}")
    print(f"one-off: load case {t_case:.2f} s, load models {t_models:.2f} s, first pipeline call {t_first:.2f} s")
    random = not (args.models or args.seg_bundle or args.cls_bundle)
    print(f"result: predicted {first.predicted_class}, WT {first.volumes_ml.get('WT', 0):.1f} mL"
          + (" (random weights: meaningless)" if random else ""))
    print(f"peak RSS: {rss_setup:.0f} MB after loading case and models, {rss_bare:.0f} MB after the bare passes, "
          f"{rss_pipe:.0f} MB after the first pipeline run, {peak_rss_mb():.0f} MB at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
