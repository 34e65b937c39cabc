"""Time test-time augmentation: its cost as a ratio to a single pass, and the whole analysis with the default.

    python bench/bench_tta.py [--case DIR] [--models DIR] [--repeats N] [--whole N] [--device cpu]

* passes: :func:`braingui.inference.tta.run_tta` with 1, 2, 4 and 8 flipped views on the prepared input
  of the case (the full-size synthetic demo case by default) with the segmentation bundle found as the
  app finds it (the shipped ``demo-segresnet``); runs interleaved (1, 2, 4, 8, 1, 2, ...) so that other
  processes on a shared CPU slow every count alike; medians, their ratio to one view, and the ratio of
  the fastest runs (the steadier figure on a busy machine).
* whole: ``python -m braingui.app --demo --no-gui --out DIR --tta N`` end to end in a fresh process
  (start-up, loading the case and both models, segmentation, classification, Grad-CAM, writing the
  files), with ``N`` = 1 and the default (or ``--whole-tta``), interleaved; medians of the wall seconds
  and of the CPU seconds. Only with the demo case (``--case`` not given).

The load average is printed before and after: on a shared machine the seconds mean little without it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from braingui.case import load_case  # noqa: E402
from braingui.inference.locate import find_bundles  # noqa: E402
from braingui.inference.predictor import Predictor  # noqa: E402
from braingui.inference.tta import CHOICES, DEFAULT_TTA, run_tta  # noqa: E402
from braingui.preprocess import prepare_segmentation  # noqa: E402


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def bench_passes(case_dir: Path, models: str | None, repeats: int, device: str) -> dict[int, list[float]]:
    search = find_bundles(models)
    if search.segmentation is None:
        raise SystemExit("no segmentation bundle found")
    model = Predictor(device).load(search.segmentation)
    case = load_case(case_dir)
    array = prepare_segmentation(case.stack(model.prep.channels), model.prep).array
    run_tta(model, array, 1)  # warm-up: first-call costs are not TTA's
    times: dict[int, list[float]] = {n: [] for n in CHOICES}
    for _ in range(repeats):
        for n in CHOICES:
            t0 = time.perf_counter()
            run_tta(model, array, n)
            times[n].append(time.perf_counter() - t0)
    print(f"network passes on {case.case_id} (input {tuple(array.shape)}, {search.segmentation.name}, {device}), "
          f"{repeats} interleaved runs each:")
    base, fastest = statistics.median(times[1]), min(times[1])
    for n in CHOICES:
        med = statistics.median(times[n])
        print(f"  TTA {n}: median {med:6.2f} s  ratio to one pass {med / base:5.2f}  "
              f"(fastest runs: {min(times[n]):6.2f} s, ratio {min(times[n]) / fastest:5.2f})")
    return times


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_whole(repeats: int, models: str | None, counts: list[int]) -> dict[int, list[float]]:
    counts = sorted(set(counts))
    times: dict[int, list[float]] = {n: [] for n in counts}
    cpu: dict[int, list[float]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory(prefix="bench_tta_") as tmp:
        for r in range(repeats):
            for n in counts:
                cmd = [sys.executable, "-m", "braingui.app", "--demo", "--no-gui", "--out", f"{tmp}/r{r}_n{n}",
                       "--tta", str(n)] + (["--models", models] if models else [])
                t0, c0 = time.perf_counter(), _children_cpu_s()
                done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"  run {r} --tta {n} failed (exit {done.returncode}: {last}); not counted")
                    continue
                times[n].append(time.perf_counter() - t0)
                cpu[n].append(_children_cpu_s() - c0)
    print(f"whole analysis of the demo case (python -m braingui.app --demo --no-gui --tta N), {repeats} interleaved "
          "runs each (CPU s: user + system of the process, which other processes on the machine inflate less):")
    for n in counts:
        if not times[n]:
            continue
        tag = " (default)" if n == DEFAULT_TTA else ""
        print(f"  --tta {n}{tag}: median {statistics.median(times[n]):6.1f} s wall, "
              f"{statistics.median(cpu[n]):6.1f} CPU s"
              f"  (wall fastest {min(times[n]):6.1f} s, slowest {max(times[n]):6.1f} s)")
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", type=Path, default=None, help="case folder (default: the full-size demo case)")
    p.add_argument("--models", default=None, help="models folder (default: as the app searches)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs of the passes per view count")
    p.add_argument("--whole", type=int, default=3, help="interleaved whole-analysis runs per view count (0: skip)")
    p.add_argument("--whole-tta", type=int, nargs="*", choices=CHOICES, default=None,
                   help="view counts of the whole-analysis runs (default: 1 and the default)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    print(f"load average before: {_load()} ({os.cpu_count()} CPUs)")
    if args.case is None:
        from braingui.app.demo import demo_case_folder

        case_dir = demo_case_folder()
    else:
        case_dir = args.case
    bench_passes(case_dir, args.models, args.repeats, args.device)
    if args.whole > 0 and args.case is None:
        bench_whole(args.whole, args.models, args.whole_tta or [1, DEFAULT_TTA])
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
