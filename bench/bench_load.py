"""Time loading a real 4-modality case with braingui against bare nibabel, in one run.

    python bench/bench_load.py [CASE_DIR] [--repeats N] [--with-labels] [--backend isal|zlib]

Prints the median of N interleaved runs of each and their ratio, the figure issue 15 judges (goal:
braingui / nibabel <= 1.0). The baseline is ``nibabel.load(f).get_fdata()`` for each file. braingui
does more: it verifies every gzip member's CRC-32 and length (nibabel never reads the gzip trailer),
checks the headers before converting data, makes float32, reorients to RAS+, scans for NaN, constant
and duplicate volumes. It decompresses each file once, with ISA-L's igzip (``--backend zlib``: the
standard-library fallback used when isal is missing).
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

import braingui.gzip_io as gzip_io  # noqa: E402
from braingui.case import load_case  # noqa: E402
from braingui.discovery import MODALITIES, discover  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "data" / "brats2018" / "Brats18_2013_20_1"
GOAL = 1.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", nargs="?", type=Path, default=DEFAULT)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--with-labels", action="store_true", help="also load the label map in both")
    p.add_argument("--backend", choices=("isal", "zlib"), default="isal",
                   help="gzip decompressor for braingui (zlib: as without the isal package)")
    args = p.parse_args()
    if not args.case.is_dir():
        print(f"no case folder at {args.case} (pass one; BraTS 2018 cases live in ../shared/data/brats2018)")
        return 2
    if args.backend == "zlib":
        gzip_io._igzip = None
    files = discover(args.case)
    paths = [files.images[m] for m in MODALITIES] + ([files.seg] if args.with_labels and files.seg else [])
    explicit = {m: files.images[m] for m in MODALITIES}
    if args.with_labels and files.seg:
        explicit["seg"] = files.seg

    def bare():
        return [nib.load(str(p)).get_fdata() for p in paths]

    def ours():
        return load_case(None, explicit)

    bare(), ours()  # warm the page cache and the imports for both
    t_bare, t_ours = [], []
    for _ in range(args.repeats):
        for fn, acc in ((bare, t_bare), (ours, t_ours)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    mb, mo = statistics.median(t_bare), statistics.median(t_ours)
    print(f"case: {args.case}  ({len(paths)} files, {args.repeats} runs each, interleaved, after one warm-up)")
    print(f"gzip backend: {gzip_io.backend()} (CRC-32 and length of every member verified)")
    for title, median, runs in (("nibabel load + get_fdata", mb, t_bare), ("braingui load_case", mo, t_ours)):
        print(f"{title + ':':25s} median {median * 1000:.0f} ms  (runs: {', '.join(f'{t * 1000:.0f}' for t in runs)})")
    print(f"ratio braingui / nibabel: {mo / mb:.2f}  (goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
