"""Every check the README holds this code to on a CPU, in one command, each judged by its lines.

    python check_cpu.py                                  # all four: about an hour on 2 cores
    python check_cpu.py --only bench,tests               # some of them
    python check_cpu.py --resume runs/check_cpu/NAME     # the checks a stopped run did not end
    python -m infra.avx2_only python check_cpu.py        # an AVX-512 CPU standing in

The lines are sized for a 2-core CPU with AVX2 and no AVX-512 (``eval/acceptance.py`` holds
them; the README states them). Each check runs as a child process of this interpreter, timed
from outside as ``/usr/bin/time`` would time it, its output shown and kept in the run
folder's ``<check>.log``:

- ``demo``: ``python demo.py``; its run folder (``demo/``) judged by ``eval.acceptance`` with
  the child's wall time: at most 900 s, at least 60 test halves, test mAP at least 0.50 and
  within 0.15 of CV, +0.10 precision from the filter at 0.9x the recall, filter AUC 0.80.
- ``real_size``: pictures of real size (the single-panel phantom, ``--real-size-num`` of
  520-600 x 440-500 px with labelme annotations, the stand-in for the held-out ultrasound),
  ``prepare_data.py --no-crop --no-split``, then ``train_yolo3.py --only final --network
  yolo3_mobilenet1.0_custom --time-budget 30``, every other option its default: the training
  command within 40 minutes, test mAP (VOC12) at least 0.15. Making the pictures and
  preparing them are timed, not judged.
- ``bench``: ``bench/bench_train_loop.py``: the ``ratio:`` it prints last at least 0.90.
- ``tests``: ``python -m pytest -q``: exit 0, no test failed.

The run folder records each check's result in ``checks.json`` (written atomically as each
ends, so a stopped run loses none: ``--resume`` runs only the checks it has not recorded),
then ``summary.json``: every line, the verdict and the CPU it ran on. Exit status 0 when every
line held, 1 when one broke, 2 when one could not be judged, as ``python -m eval.acceptance``
(3: not a run folder to resume). A resumed run keeps its first command's checks and options.
"""
import argparse
import collections
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from datasets.prepared.folder import SPLITS
from eval import acceptance
from infra import runs
from infra.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parent
CHECKS = ("demo", "real_size", "bench", "tests")
#: The real-sized training the README's line names; every other option is the script's default.
REAL_SIZE_TRAIN = ("--only", "final", "--network", "yolo3_mobilenet1.0_custom",
                   "--time-budget", "30")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(CHECKS),
                   help="checks to run, comma-separated, in this order (default: %(default)s)")
    p.add_argument("--real-size-num", type=int, default=400,
                   help="single-panel phantom pictures for real_size, 80 %% of them trained "
                        "on, 20 %% the test split (default: %(default)s)")
    p.add_argument("--real-size-train-args", default="",
                   help="extra train_yolo3.py options for real_size, after the line's, "
                        "so they override it: '--real-size-train-args=--time-budget 1' is a "
                        "smoke run, judged by the same lines (default: none)")
    p.add_argument("--demo-args", default="",
                   help="extra demo.py options, given with '=' as they start with a dash: "
                        "--demo-args=--tiny (default: none)")
    p.add_argument("--bench-args", default="",
                   help="extra bench/bench_train_loop.py options (default: none)")
    p.add_argument("--pytest-args", default="",
                   help="extra pytest arguments, e.g. a test file (default: the whole suite)")
    p.add_argument("--quiet", action="store_true",
                   help="the children's output only in the run folder's logs")
    runs.add_run_arguments(p, "check_cpu")
    args = p.parse_args(argv)
    args.checks = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(args.checks) - set(CHECKS))
    if unknown or not args.checks:
        p.error(f"--only: unknown check(s) {unknown}; choose from {', '.join(CHECKS)}")
    return args


#: What a check's child process did: exit status, wall seconds, peak resident memory (MB, of
#: the largest process of its tree; None where ``os.wait4`` is missing).
Child = collections.namedtuple("Child", "code wall_s peak_rss_mb")


def elapsed_s(start, end):
    """Seconds between two ``(time.monotonic(), time.time())`` readings: the larger of the
    two clocks' readings. A virtual machine paused (a snapshot, a migration) stops its
    monotonic clock and then steps its wall clock forward, which a stopwatch and
    ``/usr/bin/time`` count (18 s of a demo, README "Every check in one command"); a wall
    clock stepped back, or slewed by NTP, cannot shorten the reading below the monotonic one."""
    return max(end[0] - start[0], end[1] - start[1])


def run_child(argv, log_path, quiet=False, cwd=ROOT):
    """Run ``argv`` and return its :class:`Child`: its output (stdout and stderr together)
    appended to ``log_path`` and, unless ``quiet``, to this console as it comes."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log:
        log.write(f"$ {shlex.join(str(a) for a in argv)}\n".encode())
        log.flush()
        start = time.monotonic(), time.time()
        child = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for chunk in iter(lambda: child.stdout.read1(65536), b""):
            log.write(chunk)
            log.flush()  # the log follows the child (tail -f)
            if not quiet:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        peak = None
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            peak = round(usage.ru_maxrss / 1024.0, 1)  # Linux reports KiB
        code = child.wait()
        wall = elapsed_s(start, (time.monotonic(), time.time()))
        log.write(f"\n[exit status {code}, {wall:.1f} s, peak RSS {peak} MB]\n".encode())
    return Child(code, wall, peak)


def new_folder(parent, before):
    """The one folder of ``parent`` not in ``before`` (the run folder a child made), or None."""
    made = sorted(set(p for p in Path(parent).iterdir() if p.is_dir()) - set(before)) \
        if Path(parent).is_dir() else []
    return made[-1] if made else None


def _folders(parent):
    return [p for p in Path(parent).iterdir() if p.is_dir()] if Path(parent).is_dir() else []


def parse_ratio(text):
    """The number of the last ``ratio: X`` line of a benchmark's output, or None."""
    found = re.findall(r"^ratio: ([-+0-9.eE]+|nan|inf)\s*$", text, re.MULTILINE)
    return float(found[-1]) if found else None


def parse_pytest_counts(text):
    """``(passed, failed)`` of pytest's last summary line (failures and errors counted as
    failed); ``(None, None)`` when it printed none."""
    lines = [ln for ln in text.splitlines()
             if re.search(r"\b\d+ (passed|failed|errors?)\b", ln) and " in " in ln]
    if not lines:
        return None, None
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?)\b", lines[-1])}
    return counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0) + \
        counts.get("errors", 0)


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_demo(run, args, child=run_child):
    parent = run.path("demo", ".keep").parent
    before = _folders(parent)
    code, wall, peak = child([sys.executable, "demo.py", "--out", parent, "--seed", args.seed,
                              "--no-progress", *shlex.split(args.demo_args)],
                             run.dir / "demo.log", args.quiet)
    folder = new_folder(parent, before)
    result = {"exit_status": code, "wall_s": round(wall, 1), "peak_rss_mb": peak,
              "run_dir": str(folder) if folder else None}
    summary = _read_json(folder / "summary.json") if folder else None
    env = _read_json(folder / "env.json") if folder else None
    judged = acceptance.judge(summary or {}, env, wall)
    if summary is None:  # no summary: nothing to judge, and the run did not finish
        judged["lines"] = [dict(line, held=False if code else None)
                           for line in judged["lines"]]
    result.update(lines=judged["lines"], precision_note=judged["precision_note"])
    return result


def check_real_size(run, args, child=run_child):
    base = run.path("real_size", ".keep").parent
    raw, data, train_out = base / "raw", base / "data", base / "train"
    log = run.dir / "real_size.log"
    result = {"pictures": args.real_size_num}
    steps = []
    if not (data / SPLITS).is_file():  # prepared by an attempt that was stopped: kept
        steps = [("phantom", [sys.executable, "-m", "datasets.phantom", "--out", raw,
                              "--num", args.real_size_num, "--seed", args.seed,
                              "--single-panel", "--no-progress"]),
                 ("prepare", [sys.executable, "prepare_data.py", "--raw", raw, "--out", data,
                              "--no-crop", "--no-split", "--seed", args.seed, "--no-progress"])]
    for name, argv in steps:
        code, wall, _ = child(argv, log, args.quiet)
        result[f"{name}_s"] = round(wall, 1)
        if code:
            result.update(exit_status=code, failed_step=name)
            result["lines"] = [dict(line, held=False) for line in
                               acceptance.check_real_size(None, None)]
            return result
    before = _folders(train_out)
    code, wall, peak = child([sys.executable, "train_yolo3.py", "--data", data,
                              *REAL_SIZE_TRAIN, "--out", train_out, "--seed", args.seed,
                              "--progress", "off", *shlex.split(args.real_size_train_args)],
                             log, args.quiet)
    folder = new_folder(train_out, before)
    summary = _read_json(folder / "summary.json") if folder else None
    lines = acceptance.check_real_size(summary, wall)
    if code or summary is None:
        lines = [dict(line, held=False) if line["held"] is not True else line for line in lines]
    result.update(exit_status=code, wall_s=round(wall, 1), peak_rss_mb=peak,
                  run_dir=str(folder) if folder else None,
                  epochs=(summary or {}).get("final_epochs"),
                  test_map_voc07=(summary or {}).get("test_map_voc07"), lines=lines)
    return result


def check_bench(run, args, child=run_child):
    log = run.dir / "bench.log"
    start = log.stat().st_size if log.exists() else 0
    code, wall, _ = child([sys.executable, "bench/bench_train_loop.py",
                           *shlex.split(args.bench_args)], log, args.quiet)
    ratio = parse_ratio(log.read_bytes()[start:].decode(errors="replace"))
    lines = acceptance.check_loop_ratio(ratio)
    if code and lines[0]["held"] is None:
        lines = [dict(lines[0], held=False)]
    return {"exit_status": code, "wall_s": round(wall, 1), "lines": lines}


def check_tests(run, args, child=run_child):
    log = run.dir / "tests.log"
    start = log.stat().st_size if log.exists() else 0
    code, wall, _ = child([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *shlex.split(args.pytest_args)], log, args.quiet)
    passed, failed = parse_pytest_counts(log.read_bytes()[start:].decode(errors="replace"))
    return {"exit_status": code, "wall_s": round(wall, 1), "passed": passed, "failed": failed,
            "lines": acceptance.check_suite(code, passed, failed)}


RUNNERS = {"demo": check_demo, "real_size": check_real_size, "bench": check_bench,
           "tests": check_tests}


def judge(checks, env):
    """Every recorded check's lines in ``CHECKS`` order, the verdict over them, the CPU note."""
    lines = [line for name in CHECKS if name in checks for line in checks[name]["lines"]]
    return {"lines": lines, "verdict": acceptance.verdict(lines),
            "cpu": acceptance.cpu_note(env)}


#: What a resumed run takes from its args.json: it finishes the run that was started.
RESUMED_OPTIONS = ("only", "real_size_num", "real_size_train_args", "demo_args", "bench_args",
                   "pytest_args", "seed")


def main(args, child=run_child):
    if args.resume:
        record = Path(args.resume) / "args.json"
        if not record.is_file():
            raise FileNotFoundError(f"--resume {args.resume}: no args.json there; not a "
                                    "check_cpu.py run folder")
        stored = json.loads(record.read_text(encoding="utf-8"))
        for key in RESUMED_OPTIONS:
            setattr(args, key, stored["options"][key])
        args.checks = [c for c in args.only.split(",") if c]
    with runs.start("check_cpu", args) as run:
        checks = run.read_json("checks.json", {}) if args.resume else {}
        for name in args.checks:
            if name in checks:
                run.log.info("check %s: recorded by the run being resumed, not run again", name)
                continue
            run.log.info("check %s: started (output in %s)", name, run.dir / f"{name}.log")
            checks[name] = RUNNERS[name](run, args, child)
            atomic_write_json(run.dir / "checks.json", checks)
            held = acceptance.verdict(checks[name]["lines"])
            run.log.info("check %s: %s in %.0f s", name, held, checks[name].get("wall_s") or 0)
        env = run.read_json("env.json", {})
        judged = judge(checks, env)
        print("\n" + acceptance.format_judged(judged, label="check_cpu verdict"), flush=True)
        return run.finish({"checks": checks, **judged})


if __name__ == "__main__":
    try:
        outcome = main(parse_args())
    except (OSError, ValueError) as e:  # --resume of a folder that is not a run of this script
        print(f"check_cpu.py: {e}", file=sys.stderr)
        sys.exit(3)
    sys.exit({"held": 0, "broken": 1, "incomplete": 2}[outcome["verdict"]])
