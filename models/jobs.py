"""Training jobs across processes: the runner behind ``--folds-parallel``, ``--only`` job
names, and the run folder as a job process or a dist kvstore worker sees it.

A CV grid is a list of independent jobs (set S x fold K). ``run_processes`` starts them as
child processes of the same script, at most N at a time, each on its own device (or its
share of the CPU threads), and each child trains one job into the parent's run folder
(``--resume RUN --only S:K``); the parent then reads the jobs' ``done.json`` back as if it had
trained them itself. Results equal the sequential run's when a child has the same OpenMP
thread count (tests/test_train_yolo3.py).
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from infra import runs
from infra.cpus import usable_cpus


def add_job_arguments(parser):
    """Declare --folds-parallel, --job-processes, --fold-threads, --only (and a job child's
    --job-deadline)."""
    g = parser.add_argument_group("parallelism")
    g.add_argument("--folds-parallel", type=int, default=1,
                   help="train this many set x fold jobs at once, one process and one "
                        "device (--gpus entry) each. Under --time-budget the jobs are "
                        "planned as if trained one at a time and are neither re-planned nor "
                        "cut (a warning says so) (default %(default)s)")
    g.add_argument("--job-processes", action=argparse.BooleanOptionalAction, default=None,
                   help="train the set x fold jobs one at a time in child processes, even "
                        "with --folds-parallel 1 (a few seconds each to start). On a 2-core "
                        "AMD EPYC every model after the first trained in one process ran at "
                        "55 %% of the first's speed, on an Intel Xeon at 70 %% (cause inside "
                        "MXNet/OpenMP not found; the OpenMP spin defaults do not remove it); a "
                        "fresh process per model keeps each at the first's. Recipe: cpu on, "
                        "paper off")
    g.add_argument("--fold-threads", type=int, default=0,
                   help="OpenMP threads per --folds-parallel process on CPU; 0 = CPUs / "
                        "--folds-parallel. Results depend on it: MKLDNN's sums change with "
                        "the thread count (default %(default)s)")
    g.add_argument("--only", default=None, metavar="JOB",
                   help="train one job and stop: 'S:K' (set S, fold K) or 'final'; used by "
                        "--folds-parallel and with a dist kvstore (one model per launch)")
    # A job child's share of a time budget (time.time() it must end by), from the parent's
    # models.budget.JobReplanner: not a user option, so not in --help.
    g.add_argument("--job-deadline", type=float, default=None, help=argparse.SUPPRESS)
    return g


def job_name(job):
    """``'final'`` or ``(set, fold)`` -> the job's folder name."""
    return "final" if job == "final" else "set{}_fold{}".format(*job)


def parse_job(text, n_sets, n_folds):
    """``--only``: 'S:K' -> ``(S, K)`` (checked against the grid), or 'final'."""
    if text == "final":
        return "final"
    try:
        s, k = (int(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--only wants 'S:K' (set, fold) or 'final', got {text!r}") from None
    if not (0 <= s < n_sets and 0 <= k < n_folds):
        raise ValueError(f"--only {text}: sets are 0..{n_sets - 1}, folds 0..{n_folds - 1}")
    return s, k


def run_parallel(script, run, args, cv_jobs, before_start=None):
    """Train the CV jobs of ``run`` that have no ``done.json`` yet in child processes of
    ``script``, ``args.folds_parallel`` at a time (``--gpus``, ``--fold-threads``); each
    writes its console output to ``<job>/console.txt``. ``before_start(job name)`` runs
    just before each child starts (the time budget's re-planning); a list it returns is added
    to the child's command line."""
    todo = [j for j in cv_jobs if not (run.dir / job_name(j) / "done.json").exists()]
    thread = "--loader-thread" if args.loader_thread else "--no-loader-thread"
    commands = [(job_name(j), [sys.executable, script, "--data", args.data,
                               "--resume", str(run.dir), "--only", "{}:{}".format(*j),
                               "--progress", "off", "--num-workers", str(args.num_workers),
                               thread, "--loader-burst", str(args.loader_burst)],
                 run.path(job_name(j), "console.txt")) for j in todo]
    run_processes(commands, args.folds_parallel, args.gpus, args.fold_threads, run.log,
                  before_start=before_start)


def run_processes(commands, parallel, gpus="", threads=0, log=None, poll_s=0.5,
                  before_start=None):
    """Run commands as child processes, ``parallel`` at a time, one device each.

    Parameters
    ----------
    commands : list of (str, list of str, Path)
        ``(name, argv, console)``: the child's command line (``--gpus`` is appended) and the
        file its stdout and stderr go to (appended).
    parallel : int
        Children at once; slot ``i`` runs on GPU ``gpus[i % len(gpus)]``.
    gpus : str
        ``--gpus`` of the parent ('0,1'); '' for CPU, where each child gets
        ``OMP_NUM_THREADS`` = ``threads`` or CPUs // ``parallel``.
    log : logging.Logger, optional
    before_start : callable, optional
        Called with a command's name just before its child starts; the arguments it returns
        (a list, or None) are appended to the child's ``argv``.

    Raises
    ------
    RuntimeError
        Some children failed (after all have ended); names them and their exit codes.
    """
    gpu_ids = [g for g in (gpus or "").split(",") if g.strip()]
    threads = threads or max(1, usable_cpus() // parallel)
    pending, running, failed = list(commands), [], []
    free = list(range(parallel))
    while pending or running:
        while pending and free:
            (name, argv, console_path), slot = pending.pop(0), free.pop(0)
            extra = (before_start(name) if before_start is not None else None) or []
            argv = list(argv) + list(extra) + [
                "--gpus", gpu_ids[slot % len(gpu_ids)] if gpu_ids else ""]
            env = dict(os.environ) if gpu_ids else dict(os.environ, OMP_NUM_THREADS=str(threads))
            console = open(console_path, "ab")
            proc = subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT, env=env)
            running.append((proc, slot, name, console))
            if log is not None:
                log.info("started %s in process %d", name, proc.pid)
        time.sleep(poll_s)
        for item in list(running):
            proc, slot, name, console = item
            if proc.poll() is not None:
                running.remove(item)
                free.append(slot)
                console.close()
                if proc.returncode != 0:
                    failed.append((name, proc.returncode))
    if failed:
        raise RuntimeError(f"job(s) failed (name, exit code): {failed}; see their console.txt")


def open_run(script, args, kv, derived):
    """The run folder: new, resumed, a ``--folds-parallel`` child's view (logging into its
    job's folder) or a dist worker's (rank > 0 logs to ``log.txt.rank<N>``).

    ``kv`` is ``models.yolo_train.KVInfo``; ``derived`` goes to args.json. A child's or a
    worker's view is a process of its own, whose log handler ends with it."""
    if args.only and args.resume and not kv.distributed:  # a --folds-parallel child
        run_dir = Path(args.resume)
        only = "final" if args.only == "final" else tuple(args.only.split(":"))
        return runs.Run(run_dir, log_file=run_dir / job_name(only) / "log.txt")
    if not kv.distributed:
        return runs.start(script, args, derived=derived)
    if not args.only:
        raise ValueError("with a dist kvstore each launch trains one model: add --only final "
                         "(or --only S:K); the kvstore servers keep one optimizer state per "
                         "parameter key, which a second model in the same launch would reuse")
    if args.resume:
        raise ValueError("--resume is not supported with a dist kvstore: MXNet cannot save "
                         "trainer states there (MXNET_TRAPS 36); start a new run")
    if not args.name:
        raise ValueError("a dist kvstore needs --name, so that every worker uses the same run "
                         "folder")
    # Every worker must use ROOT/NAME exactly (runs.start would pick NAME-2 if a worker had
    # created it first): check, wait, rank 0 creates it, wait, the others log into it.
    run_dir = Path(args.out) / args.name
    if run_dir.exists():
        raise FileExistsError(f"{run_dir} exists; a dist run needs a fresh --name")
    kv.kv._barrier()
    run = runs.start(script, args, derived=derived) if kv.rank == 0 else None
    kv.kv._barrier()
    if run is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        run = runs.Run(run_dir, log_file=run_dir / f"log.txt.rank{kv.rank}")
    return run
