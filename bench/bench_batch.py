"""A cohort batch (models loaded once) against a shell loop of headless runs, same cases, same models.

    python bench/bench_batch.py [--cases 6] [--rounds 1] [--tta 1] [--device cpu] [--models DIR] [--keep DIR]

Writes ``--cases`` small synthetic demo cases (``braingui demo-case --small``: 96x96x64 at 2.5 mm, seeds
0..N-1) and times, as a user runs them (one subprocess each, wall clock):

* loop: ``braingui --case CASE --no-gui --out OUT/CASE`` once per case, one after the other (what a
  shell ``for`` loop does: every run imports torch and MONAI and loads the models again);
* batch: ``braingui batch COHORT --out OUT`` once (one process, models loaded once).

Rounds alternate which of the two goes first (interleaved, so a change in machine load hits both). Prints
the seconds of each, the median ratio loop / batch (goal >= 1.2) and checks that both wrote the same
segmentation for every case. Defaults: the shipped demo bundles, ``--tta 1`` (one pass, to keep the
bench within a few minutes; the app's default of 8 flipped views adds the same network work to both).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"XDG_DATA_HOME": str(tmp / "xdg-data"), "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
                "XDG_STATE_HOME": str(tmp / "xdg-state"), "BRAINGUI_MODELS": "",
                "PYTHONPATH": os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))})
    return env


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tta", type=int, default=1, choices=(1, 2, 4, 8))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default=str(ROOT / "braingui" / "models"), help="bundles (default: the shipped demo ones)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = ap.parse_args()

    from braingui.app.demo import write_demo_case

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-batch-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = _env(tmp)
    cohort = tmp / "cohort"
    names = [f"case{i}" for i in range(args.cases)]
    for i, name in enumerate(names):
        if not (cohort / name).is_dir():
            write_demo_case(cohort / name, small=True, seed=i)
    common = ["--models", args.models, "--device", args.device, "--tta", str(args.tta)]
    app = [sys.executable, "-m", "braingui.app"]
    loop_s, batch_s = [], []
    try:
        for r in range(args.rounds):
            for which in (("loop", "batch") if r % 2 == 0 else ("batch", "loop")):
                out = tmp / f"out-{which}-{r}"
                shutil.rmtree(out, ignore_errors=True)
                if which == "loop":
                    seconds = sum(_run(app + ["--case", str(cohort / n), "--no-gui", "--out", str(out / n)] + common, env)
                                  for n in names)
                    loop_s.append(seconds)
                else:
                    seconds = _run(app + ["batch", str(cohort), "--out", str(out)] + common, env)
                    batch_s.append(seconds)
                print(f"round {r + 1}: {which:5s} {seconds:7.1f} s ({args.cases} cases)", flush=True)
            _check_same(tmp / f"out-loop-{r}", tmp / f"out-batch-{r}", names)
        loop, batch = statistics.median(loop_s), statistics.median(batch_s)
        print(f"loop of headless runs: median {loop:.1f} s; batch: median {batch:.1f} s; "
              f"ratio loop/batch {loop / batch:.2f} (goal >= 1.2); per case {loop / args.cases:.1f} s vs "
              f"{batch / args.cases:.1f} s")
        return 0 if loop / batch >= 1.2 else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _check_same(loop_out: Path, batch_out: Path, names: list[str]) -> None:
    import nibabel as nib
    import numpy as np

    for n in names:
        a = np.asarray(nib.load(loop_out / n / "segmentation.nii.gz").dataobj)
        b = np.asarray(nib.load(batch_out / n / "segmentation.nii.gz").dataobj)
        if not np.array_equal(a, b):
            sys.exit(f"{n}: the batch and the headless run wrote different segmentations")
    print(f"  same segmentation from both for all {len(names)} cases")


if __name__ == "__main__":
    sys.exit(main())
