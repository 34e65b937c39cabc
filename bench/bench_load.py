"""Time loading a real 4-modality case with braingui against bare nibabel, in one run.

    python bench/bench_load.py [CASE_DIR] [--repeats N]

Prints the median of N alternating runs of each and their ratio (goal: braingui / nibabel <= 1.2).
braingui does more than the baseline (header checks, float32, reorientation to RAS+, NaN scan,
read-only arrays, the label map) — the ratio is what that costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nibabel as nib  # noqa: E402

from braingui.case import load_case  # noqa: E402
from braingui.discovery import MODALITIES, discover  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "data" / "brats2018" / "Brats18_2013_20_1"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", nargs="?", type=Path, default=DEFAULT)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--with-labels", action="store_true", help="also load the label map in both")
    args = p.parse_args()
    files = discover(args.case)
    paths = [files.images[m] for m in MODALITIES] + ([files.seg] if args.with_labels and files.seg else [])
    explicit = {m: files.images[m] for m in MODALITIES}
    if args.with_labels and files.seg:
        explicit["seg"] = files.seg

    def bare():
        return [nib.load(str(p)).get_fdata() for p in paths]

    def ours():
        return load_case(None, explicit)

    t_bare, t_ours = [], []
    for _ in range(args.repeats):
        for fn, acc in ((bare, t_bare), (ours, t_ours)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    mb, mo = statistics.median(t_bare), statistics.median(t_ours)
    print(f"case: {args.case}  ({len(paths)} files, {args.repeats} runs each, alternating)")
    print(f"nibabel load + get_fdata: median {mb * 1000:.0f} ms")
    print(f"braingui load_case:       median {mo * 1000:.0f} ms")
    print(f"ratio braingui / nibabel: {mo / mb:.2f}  (goal <= 1.2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
