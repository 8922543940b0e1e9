"""Benchmark: phantom screenshots per second on one core (target >= 10/s, issue 2).

Times, on the same seeds, (1) rendering only (``render_pair``), (2) rendering + annotation +
encoding in memory (``make_example``), (3) the whole ``generate`` with atomic file writes.
OpenCV is limited to one thread so the number is per core; the files of (3) are checked to
be byte-identical to the in-memory ones of (2) before any speed is reported.

Usage: python bench/bench_phantom.py [--num 60] [--seed 0] [--min-rate 10]
Last line: ``images_per_s: X`` (the whole generate, median of --repeat runs).
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets.phantom import generator as phantom  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=60, help="screenshots per run (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="OpenCV threads (default: %(default)s)")
    p.add_argument("--min-rate", type=float, default=None,
                   help="exit 1 if the whole generate is slower than this many images/s")
    return p.parse_args(argv)


def _median_rate(fn, num, repeat):
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        rates.append(num / (time.perf_counter() - t0))
    return statistics.median(rates)


def main(args):
    cv2.setNumThreads(args.threads)
    print(f"python {platform.python_version()} numpy {np.__version__} opencv {cv2.__version__} "
          f"threads {args.threads} num {args.num} repeat {args.repeat}")
    n, seed = args.num, args.seed
    render = _median_rate(lambda: [phantom.render_pair(phantom.image_rng(seed, i))
                                   for i in range(n)], n, args.repeat)
    print(f"render only:              {render:6.1f} images/s")
    made = {}

    def in_memory():
        for i in range(n):
            files, _, _ = phantom.make_example(seed, i)
            made.update(files)
    memory = _median_rate(in_memory, n, args.repeat)
    print(f"render + annotate + encode: {memory:6.1f} images/s")
    with tempfile.TemporaryDirectory() as tmp:
        whole = _median_rate(lambda: phantom.generate(tmp, n, seed=seed, progress=False),
                             n, args.repeat)
        for name, data in made.items():
            with open(os.path.join(tmp, name), "rb") as f:
                if f.read() != data:
                    raise SystemExit(f"{name}: generate wrote other bytes than make_example")
    print(f"generate (files, atomic):   {whole:6.1f} images/s")
    print(f"images_per_s: {whole:.2f}")
    if args.min_rate is not None and whole < args.min_rate:
        sys.exit(1)
    return {"render": render, "in_memory": memory, "generate": whole}


if __name__ == "__main__":
    main(parse_args())
