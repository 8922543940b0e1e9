"""Benchmark: fast similar-region search vs the per-window loop (datasets/filter/similar.py).

Builds N realistic cases (grey halves ~500x450 of blurred Rayleigh speckle over bright
fascia lines and dark/bright blobs, the reference half a shifted copy with fresh speckle
and a size differing by up to 2 px; boxes 25-90 px, context 0.5, search radius 24-32 px,
stride 4), runs `find_similar_loop` (scikit-image HOG, or the chosen feature, on every
masked window) and the fast `find_similar` on each, checks that both pick the same
window, then reports total times.

Usage: python bench/bench_search.py [--cases 30] [--features hog,raw,phash,canny,lbp]
       [--seed 0] [--repeat 3] [--clock cpu|wall] [--min-speedup 50]
Last line: ``speedup: N.Nx (identical best window in K/K cases)`` for the first feature
(loop seconds / fast seconds, summed over cases; fast time = median of --repeat runs).
Times are process CPU seconds by default: on a shared machine elapsed time mostly
measures the other jobs (--clock wall for elapsed time).
"""
import argparse
import os
import platform
import statistics
import sys
import time

import cv2
import numpy as np
import skimage

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets.filter import similar  # noqa: E402
from infra.cpus import usable_cpus  # noqa: E402


def make_half(base, rng, shift=(0, 0), crop=(0, 0)):
    """Render a half from `base` shifted by (dx, dy) with fresh speckle, minus `crop` px."""
    dx, dy = shift
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    b = cv2.warpAffine(base, m, base.shape[::-1], borderMode=cv2.BORDER_REFLECT)
    sp = cv2.GaussianBlur(rng.rayleigh(1.0, b.shape).astype(np.float32), (0, 0), 1.2)
    depth = np.linspace(1.0, 0.6, b.shape[0], dtype=np.float32)[:, None]  # attenuation
    img = np.clip((70 + b) * depth * (0.55 + 0.45 * sp), 0, 255).astype(np.uint8)
    return img[:img.shape[0] - crop[0], :img.shape[1] - crop[1]]


def make_base(h, w, rng):
    """Smooth anatomy: layered fascia lines, oriented texture, blobs (float32)."""
    base = np.zeros((h, w), np.float32)
    for _ in range(8):
        y = int(rng.integers(0, h))
        cv2.line(base, (0, y), (w, y + int(rng.integers(-40, 40))), float(rng.uniform(60, 120)),
                 int(rng.integers(2, 5)))
    for _ in range(40):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.ellipse(base, c, (int(rng.integers(4, 25)), int(rng.integers(3, 12))),
                    float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(-60, 70)), -1)
    return cv2.GaussianBlur(base, (0, 0), 2.0)


def make_cases(n, seed):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        h, w = int(rng.integers(480, 521)), int(rng.integers(430, 471))
        base = make_base(h, w, rng)
        lesion = make_half(base, rng)
        shift = (int(rng.integers(-12, 13)), int(rng.integers(-12, 13)))
        reference = make_half(base, rng, shift, crop=tuple(rng.integers(0, 3, 2)))
        bw, bh = rng.uniform(25, 90, 2)
        x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        cases.append(dict(lesion=lesion, reference=reference, box=(x1, y1, x1 + bw, y1 + bh),
                          search_radius=int(rng.integers(24, 33))))
    return cases


def timed(fn, clock):
    t0 = clock()
    out = fn()
    return out, clock() - t0


def run_feature(cases, feature, repeat, clock):
    """Loop and fast times per case (fast: median of `repeat` runs) and the agreement."""
    t_loop, t_fast, same = [], [], 0
    for c in cases:
        kw = dict(context=0.5, search_radius=c["search_radius"], stride=4, feature=feature)
        args = (c["lesion"], c["reference"], c["box"])
        slow, dt = timed(lambda: similar.find_similar_loop(*args, **kw), clock)
        t_loop.append(dt)
        runs = []
        for _ in range(repeat):
            fast, dt = timed(lambda: similar.find_similar(*args, **kw), clock)
            runs.append(dt)
        t_fast.append(statistics.median(runs))
        same += (fast.box, fast.dx, fast.dy) == (slow.box, slow.dx, slow.dy)
    return t_loop, t_fast, same


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--cases", type=int, default=30, help="number of cases (%(default)s)")
    p.add_argument("--features", default="hog",
                   help="comma-separated features; the first one gives the last line (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="case generator seed (%(default)s)")
    p.add_argument("--repeat", type=int, default=3,
                   help="fast-path runs per case, median taken (%(default)s)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="cpu: process CPU time (robust to other jobs sharing the machine); "
                        "wall: elapsed time (%(default)s)")
    p.add_argument("--min-speedup", type=float, default=None,
                   help="exit 1 if the first feature's speed-up is below this")
    return p.parse_args(argv)


def main(args):
    feats = [f.strip() for f in args.features.split(",") if f.strip()]
    for f in feats:
        similar.check_pair(f)
    print(f"python {platform.python_version()}  numpy {np.__version__}  opencv {cv2.__version__}"
          f"  scikit-image {skimage.__version__}  cpus {os.cpu_count()} ({usable_cpus()} usable)")
    print(f"cases {args.cases}  seed {args.seed}  halves ~500x450  boxes 25-90 px  context 0.5"
          f"  radius 24-32 px  stride 4  fast repeat {args.repeat}")
    cases = make_cases(args.cases, args.seed)
    # warm-up: imports (scipy.signal) and caches outside the timed runs
    for f in feats:
        similar.find_similar(cases[0]["lesion"], cases[0]["reference"], cases[0]["box"],
                             feature=f)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"clock: {args.clock}  load average: {os.getloadavg()[0]:.1f}")
    summary = {}
    for f in feats:
        t_loop, t_fast, same = run_feature(cases, f, args.repeat, clock)
        ratio = sum(t_loop) / sum(t_fast)
        per_case = statistics.median(a / b for a, b in zip(t_loop, t_fast))
        summary[f] = dict(speedup=ratio, same=same, n=len(cases), loop_s=sum(t_loop),
                          fast_s=sum(t_fast), median_case_speedup=per_case)
        print(f"{f:6s} loop {sum(t_loop):8.3f} s  fast {sum(t_fast):7.3f} s  "
              f"(per case: loop {1e3 * statistics.median(t_loop):7.1f} ms, "
              f"fast {1e3 * statistics.median(t_fast):6.1f} ms median)  speedup {ratio:6.1f}x  "
              f"median per-case {per_case:5.1f}x  identical {same}/{len(cases)}")
    head = summary[feats[0]]
    print(f"speedup: {head['speedup']:.1f}x (identical best window in {head['same']}/{head['n']} cases)")
    if args.min_speedup is not None and (head["speedup"] < args.min_speedup
                                         or head["same"] != head["n"]):
        sys.exit(1)
    return summary


if __name__ == "__main__":
    main(parse_args())
