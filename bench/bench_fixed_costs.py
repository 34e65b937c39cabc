"""Time a whole headless run against a bare script doing the same network work, as whole processes.

    python bench/bench_fixed_costs.py [CASE_DIR] [--repeats N] [--tta N] [--keep-going]

Issue 15, goal 1: the fixed costs around the networks. Both sides are fresh Python processes, timed
from start to exit (wall clock), interleaved, after one untimed run of each (page cache, .pyc files):

* headless: ``python -m braingui.app --no-gui --case CASE --out TMP --tta 1`` (and ``--explain none``
  when the CLI has that option), i.e. load and check the case, find and check the bundles, analyse
  (segmentation without test-time augmentation, classification with the Grad-CAM of the predicted class),
  export the results;
* bare (``--bare`` of this script): load the four files with nibabel, z-score them over the brain, import
  torch and ``monai.networks.nets``, build the two shipped networks from their manifests' kwargs, load
  the weights with ``torch.load``, resize the inputs to the networks' shapes, one segmentation forward
  (``no_grad``) and the classifier's forward + backward from the predicted logit.

Prints the medians, their ratio (goal <= 1.1) and the headless run's own stage timings (results.json).
Default case: ``../shared/data/brats2018/Brats18_TCIA02_135_1`` when present, else the synthetic demo
case (written to a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_CASE = ROOT.parent / "shared" / "data" / "brats2018" / "Brats18_TCIA02_135_1"
MODELS = ROOT / "braingui" / "models"
GOAL = 1.1
CHANNELS = ("flair", "t1", "t1ce", "t2")


def bare(case: Path) -> int:
    """The bare script (run in its own process): the least work the headless run cannot avoid."""
    import nibabel as nib
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from braingui.discovery import discover  # finds the four files (numpy-free, cheap)

    files = discover(case)
    arrays = [np.asarray(nib.load(str(files.images[m])).get_fdata(), dtype=np.float32) for m in CHANNELS]
    stack = np.stack(arrays)
    for ch in stack:
        brain = ch != 0
        ch[brain] = (ch[brain] - ch[brain].mean()) / max(float(ch[brain].std()), 1e-8)
    import torch
    import torch.nn.functional as F
    from monai.networks.nets import DenseNet169, SegResNet

    nets = {"SegResNet": SegResNet, "SegResNetVAE": SegResNet, "DenseNet169": DenseNet169}
    built = {}
    for folder in ("demo-segresnet", "demo-densenet169"):
        manifest = json.loads((MODELS / folder / "manifest.json").read_text())
        kwargs = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                  for k, v in manifest["network"]["kwargs"].items()}
        net = nets[manifest["network"]["name"]](**kwargs)
        state = torch.load(MODELS / folder / manifest["weights"]["file"], map_location="cpu", weights_only=True)
        net.load_state_dict({k: v.float() for k, v in state.items() if not k.startswith("vae_")})
        built[manifest["task"]] = (net.eval(), manifest)
    brain = np.argwhere((stack != 0).any(axis=0))
    lo, hi = brain.min(axis=0), brain.max(axis=0) + 1
    x = torch.from_numpy(np.ascontiguousarray(stack[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]))[None]
    seg, seg_m = built["segmentation"]
    zoom = seg_m["input"].get("zoom", 1.0)
    size = [int(-(-s * zoom // 8) * 8) for s in x.shape[2:]]
    with torch.no_grad():
        probs = torch.sigmoid(seg(F.interpolate(x, size=size, mode="trilinear")))
    cls, cls_m = built["classification"]
    logits = cls(F.interpolate(x, size=cls_m["input"]["shape"], mode="trilinear"))
    logits[0, int(logits.argmax())].backward()
    print(f"bare: seg input {tuple(size)}, WT voxels {int((probs[0, 1] > 0.5).sum())}, class {int(logits.argmax())}")
    return 0


def _has_option(option: str) -> bool:
    out = subprocess.run([sys.executable, "-m", "braingui.app", "--help"], capture_output=True, text=True, cwd=ROOT)
    return option in out.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", nargs="?", type=Path, help="case folder (default: Brats18_TCIA02_135_1 or the demo case)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tta", type=int, default=1, help="views for the headless run (1 = the same work as bare)")
    p.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="braingui-fixed-"))
    try:
        case = args.case
        if case is None:
            case = REAL_CASE if REAL_CASE.is_dir() else None
        if case is None:
            sys.path.insert(0, str(ROOT))
            from braingui.app.demo import write_demo_case

            case = write_demo_case(tmp / "demo")
        if args.bare:
            return bare(case)
        return compare(case, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compare(case: Path, args: argparse.Namespace, tmp: Path) -> int:
    extra = ["--explain", "none"] if _has_option("--explain") else []
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="0")
    runs = {"headless": [], "bare": []}
    cpu = {"headless": [], "bare": []}
    timings = []
    for i in range(args.repeats + 1):
        for name in ("headless", "bare"):
            out = tmp / f"out{i}"
            if name == "headless":
                cmd = [sys.executable, "-m", "braingui.app", "--no-gui", "--case", str(case), "--out", str(out),
                       "--tta", str(args.tta), *extra]
            else:
                cmd = [sys.executable, str(Path(__file__).resolve()), str(case), "--bare"]
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
            elapsed = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            if done.returncode != 0:
                print(f"{name} failed ({done.returncode}):\n{done.stderr[-2000:]}")
                return 1
            if i == 0:
                continue  # untimed warm-up of the page cache and the .pyc files
            runs[name].append(elapsed)
            cpu[name].append(used)
            if name == "headless":
                results = json.loads((out / "results.json").read_text())
                timings.append(results.get("timings_s", {}))
                backend = results.get("backend") or results.get("device")
            shutil.rmtree(out, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"case: {case}; {args.repeats} interleaved runs of each (after one untimed run), wall clock of whole processes")
    print(f"headless run: braingui --no-gui --tta {args.tta} {' '.join(extra)} (segmentation backend: {backend})")
    for name, values in runs.items():
        print(f"{name + ':':10s} median {med[name]:6.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)}); "
              f"CPU time (user + sys) median {statistics.median(cpu[name]):.2f} s")
    stages = sorted({k for t in timings for k in t})
    print("headless stages (medians): " + ", ".join(
        f"{k} {statistics.median(t.get(k, 0.0) for t in timings):.2f} s" for k in stages))
    print(f"ratio headless / bare: {med['headless'] / med['bare']:.3f} of medians, "
          f"{min(runs['headless']) / min(runs['bare']):.3f} of the fastest runs (goal <= {GOAL}); CPU time ratio "
          f"{statistics.median(cpu['headless']) / statistics.median(cpu['bare']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
