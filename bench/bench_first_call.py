"""The first analysis in a fresh process against a warm one (issue 15, goal 2), and the whole analysis time.

    python bench/bench_first_call.py [CASE_DIR] [--warm N] [--tta N] [--explain LEVEL] [--modes ...]

Each mode is a fresh Python process that loads the case, then analyses it ``1 + N`` times with the
shipped bundles (default TTA, ``--explain quick``) and reports each run's wall time:

* ``cold``: nothing done up front; the first ``analyse()`` loads the networks itself (what a one-shot
  headless run pays inside the analysis);
* ``warmed``: ``Predictor.load`` + ``Predictor.warm_up`` of both models up front (timed apart), then the
  analyses (headless, warm-up up front);
* ``window``: the window's path without Qt: ``braingui.ui.jobs.start_preload`` at start (imports,
  bundles, networks and warm-up in the background while the case loads), then ``analysis_job`` runs
  once the preload is done (the user looking at the images meanwhile).

Prints for each mode the first run, the median of the warm runs and their ratio (goal <= 1.3 for
``warmed`` and ``window``), the same for the process's CPU time during each analysis (the steadier
figure when other jobs share the CPUs; in ``window`` mode it includes what the background threads did), the set-up times, and the stage timings of a warm run: ``total`` of a warm
run with the default TTA and the quick explanation is the whole analysis of goal 6 (<= 30 s here).
Default case: ``../shared/data/brats2018/Brats18_TCIA02_135_1`` when present, else the demo case.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_CASE = ROOT.parent / "shared" / "data" / "brats2018" / "Brats18_TCIA02_135_1"
GOAL = 1.3
MODES = ("cold", "warmed", "window")


def child(mode: str, case_dir: str, warm: int, tta: int | None, explain: str) -> dict:
    """One mode in this (fresh) process; returns the timings."""
    t_start = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    out: dict = {"mode": mode}
    if mode == "window":
        from braingui.ui import jobs

        jobs.start_preload({"device": "cpu"})
    from braingui.case import load_case

    t0 = time.perf_counter()
    case = load_case(case_dir)
    out["load_case_s"] = time.perf_counter() - t0
    runs, cpu, stages = [], [], []
    if mode == "window":
        t0 = time.perf_counter()
        jobs.wait_for_preload()
        out["preload_wait_after_case_s"] = time.perf_counter() - t0
        out["preload_done_after_start_s"] = time.perf_counter() - t_start
        options = {"device": "cpu", "tta": tta, "explain": explain}
        for _ in range(1 + warm):
            t0, c0 = time.perf_counter(), time.process_time()
            gen = jobs.analysis_job(case, options)(None)
            while True:
                try:
                    next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            stages.append(result.timings_s)
    else:
        from braingui.inference.locate import find_bundles
        from braingui.inference.pipeline import analyse, run_to_completion
        from braingui.inference.predictor import Predictor

        t0 = time.perf_counter()
        search = find_bundles(None)
        predictor = Predictor("cpu")
        out["imports_s"] = time.perf_counter() - t0
        if mode == "warmed":
            t0 = time.perf_counter()
            models = [predictor.load(b) for b in (search.segmentation, search.classification)]
            out["load_models_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for model in models:
                predictor.warm_up(model)
            out["warm_up_s"] = time.perf_counter() - t0
        for _ in range(1 + warm):
            t0, c0 = time.perf_counter(), time.process_time()
            result = run_to_completion(analyse(case, predictor, search.segmentation, search.classification,
                                               tta=tta, explain=explain))
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            stages.append(result.timings_s)
    out.update(cpu_s=cpu, runs_s=runs, stages=stages, device=result.device, process_s=time.perf_counter() - t_start)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", nargs="?", type=Path, help="case folder (default: Brats18_TCIA02_135_1 or the demo case)")
    p.add_argument("--warm", type=int, default=2, help="warm runs after the first (median taken)")
    p.add_argument("--tta", type=int, default=None, help="flipped views (default: the pipeline's)")
    p.add_argument("--explain", default="quick", help="explanation level (default quick)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args()
    case = args.case
    if case is None:
        if REAL_CASE.is_dir():
            case = REAL_CASE
        else:
            sys.path.insert(0, str(ROOT))
            from braingui.app.demo import demo_case_folder

            case = demo_case_folder()
    if args.child:
        print(json.dumps(child(args.child, str(case), args.warm, args.tta, args.explain)))
        return 0
    print(f"case: {case}; --tta {args.tta or 'default'}, --explain {args.explain}; one fresh process per mode")
    prime = ("import sys, time; sys.path.insert(0, %r); from braingui.inference.locate import find_bundles; "
             "from braingui.inference.predictor import Predictor; b = find_bundles(None).segmentation; "
             "t = time.perf_counter(); m = Predictor('cpu').load(b); "
             "print(m.backend, round(time.perf_counter() - t, 2))" % str(ROOT))
    done = subprocess.run([sys.executable, "-c", prime], capture_output=True, text=True, cwd=ROOT)
    print(f"segmentation backend and load time once the weights are read (an OpenVINO conversion on first use, "
          f"then cached): {done.stdout.strip() or done.stderr[-500:]}")
    for mode in args.modes:
        cmd = [sys.executable, str(Path(__file__).resolve()), str(case), "--child", mode, "--warm", str(args.warm),
               "--explain", args.explain] + (["--tta", str(args.tta)] if args.tta else [])
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(f"{mode} failed:\n{done.stderr[-2000:]}")
            return 1
        r = json.loads(done.stdout.strip().splitlines()[-1])
        first, warm = r["runs_s"][0], statistics.median(r["runs_s"][1:])
        setup = ", ".join(f"{k} {r[k]:.2f} s" for k in ("load_case_s", "imports_s", "load_models_s", "warm_up_s",
                                                        "preload_wait_after_case_s", "preload_done_after_start_s")
                          if k in r)
        goal = f" (goal <= {GOAL})" if mode != "cold" else " (no warm-up: for comparison)"
        print(f"{mode:7s} first analysis {first:6.2f} s, warm median {warm:6.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in r['runs_s'])}): ratio {first / warm:.2f}{goal}")
        c_first, c_warm = r["cpu_s"][0], statistics.median(r["cpu_s"][1:])
        print(f"        CPU time of the process during each analysis (all threads; steadier on a shared machine): "
              f"first {c_first:.2f} s, warm median {c_warm:.2f} s: ratio {c_first / c_warm:.2f}")
        print(f"        set-up: {setup}; whole process {r['process_s']:.1f} s; device {r['device']}")
        first_st, st = r["stages"][0], r["stages"][-1]
        print("        warm run stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in st.items()))
        print("        first run, each stage against the warm run: " + ", ".join(
            f"{k} {v:.2f} s ({v - st.get(k, 0.0):+.2f})" for k, v in first_st.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
