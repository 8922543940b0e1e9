"""Benchmark: ``python -m eval.detection`` vs a Cartucho/mAP-style per-detection loop.

Generates N images of random ground truth and detections in the Cartucho layout (a temporary
folder), then times three whole processes on the same files: the eval.detection CLI, the
baseline (the Cartucho tool's algorithm: per-image ground-truth JSON files reloaded for every
detection, one Python IoU loop per ground-truth box), and a process that only reads every
file (the floor). The mAPs must agree before any speed is reported.

The baseline's JSON files go to --tmp (default /dev/shm, memory): the conservative setting.
``--tmp /tmp`` keeps them on disk as the tool does (its .temp_files/ folder); disk writes
make the baseline about 2.5x slower in CPU time here and far slower in wall time when other
jobs use the disk.

Usage: python bench/bench_map.py --n 20000 [--seed 0] [--repeat 3] [--tmp DIR] [--min-ratio 10]
Last line: ``ratio: X`` (baseline wall seconds / CLI wall seconds, medians); the line before
gives the same ratio in CPU seconds, steadier on a shared machine.
"""
import argparse
import glob
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["lesion", "vessel", "cyst"]


# --------------------------------------------------------------------------- data
def generate(root, n, seed=0, classes=CLASSES, size=512):
    """Write ``root/ground-truth`` and ``root/detection-results`` for ``n`` images.

    Per image: Poisson(2.5) ground-truth boxes (integer pixels, 5% difficult), a jittered
    detection for 85% of them, a few duplicates, and Poisson(6) background detections;
    scores with 6 decimals (so equal scores occur, as in real files).

    Returns
    -------
    dict
        Counts: images, ground-truth boxes, detections.
    """
    rng = np.random.RandomState(seed)
    gt_dir = os.path.join(root, "ground-truth")
    dr_dir = os.path.join(root, "detection-results")
    os.makedirs(gt_dir)
    os.makedirs(dr_dir)
    n_gt = n_det = 0
    for i in range(n):
        ng = rng.poisson(2.5)
        xy = rng.uniform(0, size - 80, (ng, 2))
        wh = rng.uniform(8, 80, (ng, 2))
        gb = np.round(np.c_[xy, xy + wh])
        gl = rng.randint(0, len(classes), ng)
        diff = rng.rand(ng) < 0.05
        keep = rng.rand(ng) < 0.85
        dup = rng.rand(ng) < 0.1
        src = np.r_[np.flatnonzero(keep), np.flatnonzero(dup)]
        tb = gb[src] + rng.normal(0, 4, (len(src), 4))
        ts = np.clip(rng.beta(5, 2, len(src)), 0, 1)
        nb = rng.poisson(6)
        xy = rng.uniform(0, size - 60, (nb, 2))
        wh = rng.uniform(6, 60, (nb, 2))
        db = np.r_[tb, np.c_[xy, xy + wh]]
        db = np.c_[np.minimum(db[:, :2], db[:, 2:]), np.maximum(db[:, :2], db[:, 2:])]
        dl = np.r_[gl[src], rng.randint(0, len(classes), nb)]
        ds = np.r_[ts, rng.beta(2, 5, nb)]
        name = f"img_{i:06d}"
        with open(os.path.join(gt_dir, name + ".txt"), "w") as f:
            f.write("".join(f"{classes[c]} {b[0]:.0f} {b[1]:.0f} {b[2]:.0f} {b[3]:.0f}"
                            f"{' difficult' if d else ''}\n" for c, b, d in zip(gl, gb, diff)))
        with open(os.path.join(dr_dir, name + ".txt"), "w") as f:
            f.write("".join(f"{classes[c]} {s:.6f} {b[0]:.1f} {b[1]:.1f} {b[2]:.1f} {b[3]:.1f}\n"
                            for c, s, b in zip(dl, ds, db)))
        n_gt += ng
        n_det += len(dl)
    return {"images": n, "gt_boxes": n_gt, "detections": n_det}


# --------------------------------------------------------------------------- baseline
def _file_lines(path):
    with open(path) as f:
        return [line.strip() for line in f.readlines()]


def _voc_ap(rec, prec):
    """The Cartucho tool's voc_ap (VOC2010+ all-point), as written there."""
    rec = [0.0] + rec + [1.0]
    prec = [0.0] + prec + [0.0]
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    ap = 0.0
    for i in range(1, len(rec)):
        if rec[i] != rec[i - 1]:
            ap += (rec[i] - rec[i - 1]) * prec[i]
    return ap


def cartucho_loop_map(gt_dir, dr_dir, min_overlap=0.5, offset=1, temp_dir=None):
    """mAP the way the Cartucho/mAP tool's main.py computes it (plots and animation left out).

    Ground truth goes to one JSON file per image; detections to one JSON list per class,
    stable-sorted by score; each detection reloads its image's ground-truth JSON, loops over
    its boxes, and rewrites the file when it claims one. ``offset`` is the tool's ``+ 1``.
    A missing detection file means no detections (the tool itself stops with an error).

    Returns
    -------
    (float, dict)
        mAP and ``{class: AP}`` (classes with non-difficult ground truth).
    """
    own_tmp = temp_dir is None
    tmp = tempfile.mkdtemp(prefix="cartucho_") if own_tmp else temp_dir
    try:
        gt_counter = {}
        for txt in sorted(glob.glob(os.path.join(gt_dir, "*.txt"))):
            file_id = os.path.basename(txt)[:-4]
            boxes = []
            for line in _file_lines(txt):
                if not line:
                    continue
                p = line.split()
                difficult = p[-1] == "difficult"
                if difficult:
                    p = p[:-1]
                class_name, left, top, right, bottom = p
                obj = {"class_name": class_name, "bbox": f"{left} {top} {right} {bottom}",
                       "used": False}
                if difficult:
                    obj["difficult"] = True
                else:
                    gt_counter[class_name] = gt_counter.get(class_name, 0) + 1
                boxes.append(obj)
            with open(os.path.join(tmp, file_id + "_ground_truth.json"), "w") as f:
                json.dump(boxes, f)
        gt_classes = sorted(gt_counter)
        dr_files = sorted(glob.glob(os.path.join(dr_dir, "*.txt")))
        for class_name in gt_classes:
            dets = []
            for txt in dr_files:
                file_id = os.path.basename(txt)[:-4]
                for line in _file_lines(txt):
                    if not line:
                        continue
                    tmp_class, confidence, left, top, right, bottom = line.split()
                    if tmp_class == class_name:
                        dets.append({"confidence": confidence, "file_id": file_id,
                                     "bbox": f"{left} {top} {right} {bottom}"})
            dets.sort(key=lambda x: float(x["confidence"]), reverse=True)
            with open(os.path.join(tmp, class_name + "_dr.json"), "w") as f:
                json.dump(dets, f)
        aps = {}
        for class_name in gt_classes:
            with open(os.path.join(tmp, class_name + "_dr.json")) as f:
                dr_data = json.load(f)
            tp = [0] * len(dr_data)
            fp = [0] * len(dr_data)
            for idx, detection in enumerate(dr_data):
                gt_file = os.path.join(tmp, detection["file_id"] + "_ground_truth.json")
                with open(gt_file) as f:
                    ground_truth_data = json.load(f)
                ovmax, gt_match = -1, -1
                bb = [float(x) for x in detection["bbox"].split()]
                for obj in ground_truth_data:
                    if obj["class_name"] == class_name:
                        bbgt = [float(x) for x in obj["bbox"].split()]
                        bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]),
                              min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
                        iw = bi[2] - bi[0] + offset
                        ih = bi[3] - bi[1] + offset
                        if iw > 0 and ih > 0:
                            ua = ((bb[2] - bb[0] + offset) * (bb[3] - bb[1] + offset)
                                  + (bbgt[2] - bbgt[0] + offset) * (bbgt[3] - bbgt[1] + offset)
                                  - iw * ih)
                            ov = iw * ih / ua
                            if ov > ovmax:
                                ovmax, gt_match = ov, obj
                if ovmax >= min_overlap:
                    if "difficult" not in gt_match:
                        if not gt_match["used"]:
                            tp[idx] = 1
                            gt_match["used"] = True
                            with open(gt_file, "w") as f:
                                f.write(json.dumps(ground_truth_data))
                        else:
                            fp[idx] = 1
                else:
                    fp[idx] = 1
            for i in range(1, len(tp)):
                tp[i] += tp[i - 1]
                fp[i] += fp[i - 1]
            rec = [t / gt_counter[class_name] for t in tp]
            # the tool divides by zero here when its first detections hit difficult boxes
            prec = [t / (t + f) if t + f else 0.0 for t, f in zip(tp, fp)]
            aps[class_name] = _voc_ap(rec, prec)
        return (sum(aps.values()) / len(aps) if aps else float("nan")), aps
    finally:
        if own_tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def read_all(gt_dir, dr_dir):
    """The floor: list both folders and read every file's bytes, nothing else."""
    n = 0
    for d in (gt_dir, dr_dir):
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                n += len(f.read())
    return n


# --------------------------------------------------------------------------- timing
def _cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd, cwd=ROOT):
    """Wall seconds, CPU seconds (user + system of the child) and stdout of one process."""
    c0 = _cpu_children()
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return dt, _cpu_children() - c0, out.stdout


def _map_of(stdout):
    last = stdout.strip().splitlines()[-1]
    if not last.startswith("mAP = "):
        raise RuntimeError(f"unexpected last line {last!r}")
    return last


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--n", type=int, default=20000, help="images (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each process; medians reported (default: %(default)s)")
    p.add_argument("--offset", type=int, choices=(0, 1), default=1,
                   help="pixel offset for both (default: %(default)s)")
    p.add_argument("--min-ratio", type=float, default=None,
                   help="exit 1 if the ratio is below this")
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="generate into DIR and keep it (default: a temporary folder)")
    p.add_argument("--tmp", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None,
                   help="parent of the temporary folders, inputs and the baseline's JSON files; "
                        "memory-backed by default so disk contention does not slow the "
                        "baseline's many writes (default: %(default)s)")
    # internal: what the timed child processes run
    p.add_argument("--run-baseline", nargs=2, metavar=("GT", "DR"), help=argparse.SUPPRESS)
    p.add_argument("--run-floor", nargs=2, metavar=("GT", "DR"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(args):
    if args.run_baseline:
        tmp = tempfile.mkdtemp(prefix="cartucho_", dir=args.tmp)
        try:
            m, aps = cartucho_loop_map(*args.run_baseline, offset=args.offset, temp_dir=tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"exact {m!r}")
        for name, ap in aps.items():
            print(f"{name}: {100 * ap:.2f}%")
        print(f"mAP = {100 * m:.2f}%")
        return {"map": m}
    if args.run_floor:
        print(read_all(*args.run_floor))
        return {}

    py = sys.executable
    print(f"bench_map: n={args.n} seed={args.seed} repeat={args.repeat} offset={args.offset} "
          f"classes={CLASSES} tmp={args.tmp or tempfile.gettempdir()}")
    print(f"python {platform.python_version()} numpy {np.__version__} on {platform.machine()}, "
          f"{os.cpu_count()} cpus")
    root = args.keep or tempfile.mkdtemp(prefix="bench_map_", dir=args.tmp)
    try:
        t0 = time.perf_counter()
        counts = generate(root, args.n, args.seed)
        print(f"generated {counts} in {time.perf_counter() - t0:.1f} s under {root}")
        gt_dir = os.path.join(root, "ground-truth")
        dr_dir = os.path.join(root, "detection-results")
        cli = [py, "-m", "eval.detection", "--gt", gt_dir, "--dr", dr_dir,
               "--offset", str(args.offset), "--json", os.path.join(root, "result.json")]
        base = [py, os.path.abspath(__file__), "--offset", str(args.offset),
                "--run-baseline", gt_dir, dr_dir] + (["--tmp", args.tmp] if args.tmp else [])
        floor = [py, os.path.abspath(__file__), "--run-floor", gt_dir, dr_dir]
        _timed(floor)  # warm the page cache so every contender reads from memory
        times = {"cli": [], "baseline": [], "floor": []}
        cpu = {"cli": [], "baseline": [], "floor": []}
        outs = {}
        for _ in range(args.repeat):
            for name, cmd in (("floor", floor), ("cli", cli), ("baseline", base)):
                dt, ct, outs[name] = _timed(cmd)
                times[name].append(dt)
                cpu[name].append(ct)
        cli_map, base_map = _map_of(outs["cli"]), _map_of(outs["baseline"])
        with open(os.path.join(root, "result.json")) as f:
            cli_exact = json.load(f)["map_voc12"]
        base_exact = float(outs["baseline"].split("exact ", 1)[1].split()[0])
        same = cli_map == base_map and abs(cli_exact - base_exact) <= 1e-12
        print(f"cli:      {cli_map}  ({cli_exact!r})")
        print(f"baseline: {base_map}  ({base_exact!r})")
        if not same:
            print("MISMATCH: the two mAPs differ; no ratio reported")
            sys.exit(2)
        med = {k: statistics.median(v) for k, v in times.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        # where the CLI's time goes, in this process (imports are not counted)
        sys.path.insert(0, ROOT)
        from eval import detection
        t0 = time.perf_counter()
        gt_t, dr_t, classes = detection._read_cartucho_tables(gt_dir, dr_dir)
        t1 = time.perf_counter()
        detection._evaluate_tables(gt_t, dr_t, classes, 0.5, args.offset, "stable")
        t2 = time.perf_counter()
        load = os.getloadavg()[0]
        print(f"load average (1 min) {load:.2f} on {os.cpu_count()} cpus: wall times of a "
              f"shared machine vary; CPU seconds (user + system) vary less")
        for name, label in (("floor", "floor (read every file)"), ("cli", "cli"),
                            ("baseline", "baseline")):
            print(f"{label + ', whole process:':34s} wall {med[name]:7.3f} s  cpu "
                  f"{med_cpu[name]:7.3f} s  wall runs {['%.2f' % t for t in times[name]]}")
        print(f"cli in-process (wall): read+parse {t1 - t0:.3f} s, match+AP {t2 - t1:.3f} s")
        print(f"cli / floor: wall {med['cli'] / med['floor']:.2f}, "
              f"cpu {med_cpu['cli'] / med_cpu['floor']:.2f}")
        print(f"cpu ratio: {med_cpu['baseline'] / med_cpu['cli']:.2f}")
        ratio = med["baseline"] / med["cli"]
        print(f"ratio: {ratio:.2f}")
        if args.min_ratio is not None and ratio < args.min_ratio:
            sys.exit(1)
        return {"ratio": ratio, "cpu_ratio": med_cpu["baseline"] / med_cpu["cli"], **med}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(parse_args())
