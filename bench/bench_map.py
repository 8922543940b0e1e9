"""Benchmark: ``python -m eval.detection`` against Cartucho/mAP's main.py on N images.

Generates N images of random ground truth and detections in the Cartucho layout: Poisson(2.5)
boxes per image (20,000 images: ~50k boxes, 5% difficult), a jittered detection for most,
duplicates, background detections, a share of inverted detection boxes and detections of a
class the ground truth never has (--inverted, --extra-class). Then times whole processes on the
same files, medians of --repeat runs:

- the CLI: ``python -m eval.detection --gt ... --dr ... --offset 1``;
- the baseline, one of (the output says which ran):
  * ``--cartucho-main PATH``: a checkout of Cartucho/mAP's main.py run as shipped,
    ``python main.py -na -np -q``. main.py chdirs to its own folder and reads
    ``input/ground-truth`` and ``input/detection-results`` there, so the checkout is copied
    (without its input/ and output folders) into a temporary folder under --tmp whose input/
    links to the generated data; the user's checkout is never touched. Its ``.temp_files``
    land in that copy, on the disk of --tmp. Its mAP comes from its last output line (or
    output/output.txt, results/results.txt), to its 2 decimals.
  * otherwise (we do not ship Cartucho's code): ``cartucho_loop_map`` below, main.py's
    algorithm -- one ground-truth JSON per image reloaded for every detection and rewritten
    when a box is claimed, detection files re-read once per class -- with its JSON files on
    disk under --tmp as main.py keeps them (not in memory). It leaves out main.py's
    results.txt lists and log-average miss rate, so it is a little faster than main.py.
- the floor: a process that only reads every file.

The mAPs must agree before a speed is reported (exactly for the loop; to main.py's printed
2 decimals, per class too when its results file is there).

Usage: python bench/bench_map.py --n 20000 [--cartucho-main ~/mAP/main.py] [--seed 0]
       [--repeat 3] [--tmp DIR] [--inverted 0.01] [--extra-class refrigerator] [--min-ratio 10]
Last line: ``ratio: X`` (baseline wall seconds / CLI wall seconds, medians); the line before
gives the ratio in CPU seconds, steadier on a shared machine.
"""
import argparse
import glob
import json
import os
import platform
import re
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
def generate(root, n, seed=0, classes=CLASSES, size=512, inverted=0.0, extra_class=None,
             difficult=0.05):
    """Write ``root/ground-truth`` and ``root/detection-results`` for ``n`` images.

    Per image: Poisson(2.5) ground-truth boxes (integer pixels, ``difficult`` of them
    difficult), a jittered detection for 85% of them, a few duplicates, and Poisson(6)
    background detections; scores with 6 decimals (so equal scores occur, as in real files).
    ``inverted``: share of detections written with x1 and x2 swapped (half of them y1, y2
    too). ``extra_class``: a class name the ground truth never has, given to 3% of the
    detections. Every image gets a detection file (main.py stops on a missing one).

    Returns
    -------
    dict
        Counts: images, ground-truth boxes, detections, inverted, extra-class detections.
    """
    rng = np.random.RandomState(seed)
    gt_dir = os.path.join(root, "ground-truth")
    dr_dir = os.path.join(root, "detection-results")
    os.makedirs(gt_dir)
    os.makedirs(dr_dir)
    names = list(classes) + ([extra_class] if extra_class else [])
    n_gt = n_det = n_inv = n_extra = 0
    for i in range(n):
        ng = rng.poisson(2.5)
        xy = rng.uniform(0, size - 80, (ng, 2))
        wh = rng.uniform(8, 80, (ng, 2))
        gb = np.round(np.c_[xy, xy + wh])
        gl = rng.randint(0, len(classes), ng)
        diff = rng.rand(ng) < difficult
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
        # extra draws only when asked, so the default-free sets stay those of earlier runs
        if inverted:
            inv = rng.rand(len(db)) < inverted
            both = inv & (rng.rand(len(db)) < 0.5)
            db[inv] = db[inv][:, [2, 1, 0, 3]]
            db[both] = db[both][:, [0, 3, 2, 1]]
            n_inv += int(inv.sum())
        if extra_class:
            extra = rng.rand(len(db)) < 0.03
            dl = np.where(extra, len(classes), dl)
            n_extra += int(extra.sum())
        name = f"img_{i:06d}"
        with open(os.path.join(gt_dir, name + ".txt"), "w") as f:
            f.write("".join(f"{names[c]} {b[0]:.0f} {b[1]:.0f} {b[2]:.0f} {b[3]:.0f}"
                            f"{' difficult' if d else ''}\n" for c, b, d in zip(gl, gb, diff)))
        with open(os.path.join(dr_dir, name + ".txt"), "w") as f:
            f.write("".join(f"{names[c]} {s:.6f} {b[0]:.1f} {b[1]:.1f} {b[2]:.1f} {b[3]:.1f}\n"
                            for c, s, b in zip(dl, ds, db)))
        n_gt += ng
        n_det += len(dl)
    return {"images": n, "gt_boxes": n_gt, "detections": n_det, "inverted": n_inv,
            "extra_class_detections": n_extra}


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
    As in main.py: only classes with non-difficult ground truth are scored (detections of
    other classes are never read); a detection takes the box of highest IoU (first one on
    ties, ``ov > ovmax``), a match needs ``ovmax >= min_overlap``, a difficult best box makes
    it neither TP nor FP, and boxes are used as written, so an inverted one gets ``iw <= 0``
    (no overlap) except when the ``+ 1`` outweighs the inversion.
    Differences, none of which changes an AP main.py prints: a missing detection file means
    no detections (main.py stops), and precision 0/0 (first-ranked detections on difficult
    boxes) is 0 where main.py raises ZeroDivisionError.

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


# --------------------------------------------------------------------------- Cartucho main.py
_SKIP = ("input", "output", "results", ".temp_files", "tmp_files", ".git", "ground-truth",
         "predicted", "detection-results", "images")


def cartucho_copy(main_py, gt_dir, dr_dir, parent):
    """A temporary copy of the folder of ``main_py`` (its inputs and outputs left out) whose
    ``input/`` links to ``gt_dir`` and ``dr_dir``. Returns the path of the copied main.py."""
    src = os.path.dirname(os.path.abspath(main_py))
    dst = os.path.join(tempfile.mkdtemp(prefix="cartucho_main_", dir=parent), "mAP")
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if d == src and
                                                       n in _SKIP])
    os.makedirs(os.path.join(dst, "input"))
    os.symlink(os.path.abspath(gt_dir), os.path.join(dst, "input", "ground-truth"))
    os.symlink(os.path.abspath(dr_dir), os.path.join(dst, "input", "detection-results"))
    # main.py before its input/ layout read ground-truth/ and predicted/ next to itself
    os.symlink(os.path.abspath(gt_dir), os.path.join(dst, "ground-truth"))
    os.symlink(os.path.abspath(dr_dir), os.path.join(dst, "predicted"))
    return os.path.join(dst, os.path.basename(main_py))


_AP_LINE = re.compile(r"^([0-9.]+)% = (.+) AP\s*$")


def cartucho_result(stdout, folder):
    """main.py's mAP line (``mAP = XX.XX%``) and ``{class: "XX.XX%"}`` from its results file.

    main.py reports errors by printing and exiting 0, so a missing mAP line is an error."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip().startswith("mAP = ")]
    per_class = {}
    for name in ("output/output.txt", "results/results.txt"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    m = _AP_LINE.match(line.strip())
                    if m:
                        per_class[m.group(2)] = f"{m.group(1)}%"
                    elif line.startswith("mAP = ") and not lines:
                        lines.append(line.strip())
            break
    if not lines:
        raise RuntimeError(f"Cartucho main.py printed no 'mAP = ' line; its output ends with:\n"
                           f"{stdout[-2000:]}")
    return lines[-1], per_class


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
    p.add_argument("--cartucho-main", default=None, metavar="PATH",
                   help="Cartucho/mAP's main.py (a checkout of github.com/Cartucho/mAP) to time "
                        "as the baseline; default: its algorithm re-written here")
    p.add_argument("--offset", type=int, choices=(0, 1), default=1,
                   help="pixel offset for the CLI and the loop; main.py always adds 1 "
                        "(default: %(default)s)")
    p.add_argument("--inverted", type=float, default=0.01,
                   help="share of detection boxes written inverted (default: %(default)s)")
    p.add_argument("--extra-class", default="refrigerator",
                   help="a detection-only class (3%% of detections); '' for none "
                        "(default: %(default)s)")
    p.add_argument("--difficult", type=float, default=0.05,
                   help="share of difficult ground-truth boxes; main.py divides by zero when a "
                        "class's first-ranked detection sits on one: lower it (or change "
                        "--seed) if it does (default: %(default)s)")
    p.add_argument("--min-ratio", type=float, default=None,
                   help="exit 1 if the ratio is below this")
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="generate into DIR and keep it (default: a temporary folder)")
    p.add_argument("--tmp", default=tempfile.gettempdir(),
                   help="parent of the temporary folders: inputs, the baseline's JSON files "
                        "or main.py copy. Keep it on disk, as main.py's .temp_files are; a "
                        "memory file system (/dev/shm) flatters the baseline "
                        "(default: %(default)s)")
    # internal: what the timed child processes run
    p.add_argument("--run-baseline", nargs=2, metavar=("GT", "DR"), help=argparse.SUPPRESS)
    p.add_argument("--run-floor", nargs=2, metavar=("GT", "DR"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _fs_type(path):
    """File system type of ``path`` from /proc/mounts (Linux), or '?'."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1:3] for line in f]
    except OSError:
        return "?"
    path = os.path.realpath(path)
    best = max((m for m in mounts if path == m[0] or path.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=None)
    return best[1] if best else "?"


def _run_child(args):
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
    print(read_all(*args.run_floor))
    return {}


def _check_same(outs, root, cartucho_dir):
    """Compare the CLI's mAP with the baseline's; returns the lines to print."""
    with open(os.path.join(root, "result.json")) as f:
        cli = json.load(f)
    cli_map = _map_of(outs["cli"])
    lines = [f"cli:      {cli_map}  ({cli['map_voc12']!r})"]
    if cartucho_dir is None:
        base_map = _map_of(outs["baseline"])
        base_exact = float(outs["baseline"].split("exact ", 1)[1].split()[0])
        lines.append(f"baseline: {base_map}  ({base_exact!r})")
        return lines, cli_map == base_map and abs(cli["map_voc12"] - base_exact) <= 1e-12
    base_map, per_class = cartucho_result(outs["baseline"], cartucho_dir)
    ours = {c: f"{100 * d['ap_voc12']:.2f}%" for c, d in cli["per_class"].items()
            if d["ap_voc12"] is not None}
    lines.append(f"baseline: {base_map}  (main.py; per class {per_class or 'not found'})")
    return lines, cli_map == base_map and (not per_class or per_class == ours)


def main(args):
    if args.run_baseline or args.run_floor:
        return _run_child(args)
    sys.path.insert(0, ROOT)
    from infra.cpus import usable_cpus
    py = sys.executable
    tmp = os.path.abspath(args.tmp)
    baseline = ("Cartucho/mAP main.py as shipped: " + os.path.abspath(args.cartucho_main)
                if args.cartucho_main else
                "Cartucho main.py's algorithm re-written here (bench.bench_map.cartucho_loop_map; "
                "no --cartucho-main given)")
    print(f"bench_map: n={args.n} seed={args.seed} repeat={args.repeat} offset={args.offset} "
          f"inverted={args.inverted} extra_class={args.extra_class or None} classes={CLASSES}")
    print(f"baseline: {baseline}; temporary files under {tmp} ({_fs_type(tmp)})")
    print(f"python {platform.python_version()} numpy {np.__version__} on {platform.machine()}, "
          f"{os.cpu_count()} cpus ({usable_cpus()} usable)")
    if args.cartucho_main and args.offset != 1:
        sys.exit("main.py always adds 1 to widths and heights: use --offset 1 with it")
    root = args.keep or tempfile.mkdtemp(prefix="bench_map_", dir=tmp)
    cartucho_main = None
    try:
        t0 = time.perf_counter()
        counts = generate(root, args.n, args.seed, inverted=args.inverted,
                          extra_class=args.extra_class or None, difficult=args.difficult)
        print(f"generated {counts} in {time.perf_counter() - t0:.1f} s under {root}")
        gt_dir = os.path.join(root, "ground-truth")
        dr_dir = os.path.join(root, "detection-results")
        cli = [py, "-m", "eval.detection", "--gt", gt_dir, "--dr", dr_dir,
               "--offset", str(args.offset), "--json", os.path.join(root, "result.json")]
        if args.cartucho_main:
            cartucho_main = cartucho_copy(args.cartucho_main, gt_dir, dr_dir, tmp)
            base, base_cwd = [py, cartucho_main, "-na", "-np", "-q"], os.path.dirname(cartucho_main)
        else:
            base = [py, os.path.abspath(__file__), "--offset", str(args.offset), "--tmp", tmp,
                    "--run-baseline", gt_dir, dr_dir]
            base_cwd = ROOT
        floor = [py, os.path.abspath(__file__), "--run-floor", gt_dir, dr_dir]
        _timed(floor)  # warm the page cache so every contender reads from memory
        times = {"cli": [], "baseline": [], "floor": []}
        cpu = {"cli": [], "baseline": [], "floor": []}
        outs = {}
        for _ in range(args.repeat):
            for name, cmd, cwd in (("floor", floor, ROOT), ("cli", cli, ROOT),
                                   ("baseline", base, base_cwd)):
                dt, ct, outs[name] = _timed(cmd, cwd)
                times[name].append(dt)
                cpu[name].append(ct)
        lines, same = _check_same(outs, root, cartucho_main and os.path.dirname(cartucho_main))
        print("\n".join(lines))
        if not same:
            print("MISMATCH: the two mAPs differ; no ratio reported")
            sys.exit(2)
        med = {k: statistics.median(v) for k, v in times.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        # where the CLI's time goes, in this process (imports are not counted)
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
        if cartucho_main:
            shutil.rmtree(os.path.dirname(os.path.dirname(cartucho_main)), ignore_errors=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(parse_args())
