"""One folder per run: arguments, environment, log, per-epoch metrics, summary.

Every script writes into ``runs/<script>/<name>/`` (see docs/CONTRACTS.md). A new run never
lands in a taken folder (``name-2``, ``name-3`` …); only ``--resume RUN_DIR`` writes into an
existing one. Standard library only, so PyTorch ports can record their runs the same way.
"""
import csv
import datetime
import importlib.metadata
import io
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

from infra.atomic import atomic_write_json, atomic_write_text
from infra.cpus import cgroup_quota, usable_cpus

LOGGER_NAME = "run"
_PACKAGES = ("mxnet", "mxnet-cu112", "gluoncv", "numpy", "opencv-python", "scikit-image",
             "scikit-learn", "matplotlib", "scipy")


def add_run_arguments(parser, script):
    """Declare the run-folder options shared by every script (--out, --name, --resume, --seed)."""
    g = parser.add_argument_group("run folder")
    g.add_argument("--out", default=os.path.join("runs", script),
                   help="parent folder of the run folders (default: %(default)s)")
    g.add_argument("--name", default=None,
                   help="run folder name (default: a timestamp); a taken name gets a -2, -3 suffix")
    g.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return g


def _free_folder(root, name):
    candidate = root / name
    n = 2
    while candidate.exists():
        candidate = root / f"{name}-{n}"
        n += 1
    return candidate


def git_state(cwd=None):
    """Commit hash and dirty flag of the repository holding this file, or None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


#: Environment variables that change a CPU run's speed or kernels (infra/openmp.py sets the
#: first three when the user did not), recorded in env.json as they were at the run's start.
#: The last four hold MKLDNN, NumPy, OpenCV and OpenBLAS to AVX2 (python -m infra.avx2_only).
ISA_CAP_VARIABLES = ("DNNL_MAX_CPU_ISA", "NPY_DISABLE_CPU_FEATURES", "OPENCV_CPU_DISABLE",
                     "OPENBLAS_CORETYPE")
SPEED_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                   "MXNET_USE_OPERATOR_TUNING", "KEEP_DENORMALS") + ISA_CAP_VARIABLES


def _cpuinfo_field(name, path="/proc/cpuinfo"):
    """The value of the first ``name : value`` line of /proc/cpuinfo; None where there is
    none (not Linux, or no such field)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model():
    """The CPU's model name (Linux /proc/cpuinfo; else ``platform.processor()``): runs on
    different CPUs buy different epochs under a time budget."""
    return _cpuinfo_field("model name") or platform.processor() or None


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (Linux /proc/cpuinfo's first ``flags`` line); empty elsewhere."""
    return set((_cpuinfo_field("flags", path) or "").split())


def cpu_vector_isa(flags=None):
    """The widest x86 vector extension the CPU has ("AVX-512 + AMX", "AVX-512", "AVX2", "AVX",
    "SSE4.2"), None when no flags are known: the demo's budget is sized for an AVX2-only CPU,
    and the model name alone does not say which (AMD EPYCs of one name differ)."""
    flags = cpu_flags() if flags is None else set(flags)
    if "avx512f" in flags:
        return "AVX-512 + AMX" if "amx_tile" in flags else "AVX-512"
    for flag, name in (("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2")):
        if flag in flags:
            return name
    return None


def environment():
    """Versions, git state and host facts recorded in env.json."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        "cpu_quota": cgroup_quota(),  # CPUs a cgroup quota allows (None: no quota)
        "cpu_model": cpu_model(),
        "cpu_vector_isa": cpu_vector_isa(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "speed_variables": {k: os.environ.get(k) for k in SPEED_VARIABLES},
        "packages": versions,
        "git": git_state(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }


class MetricsCSV:
    """Per-epoch metrics, one row per epoch, header once, flushed per row.

    Columns come from the rows in order of first appearance (a new column rewrites the file
    with a wider header); missing values stay empty. Rewrites are atomic, appends flushed.
    """

    def __init__(self, path):
        self.path = Path(path)

    def rows(self):
        if not self.path.exists():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def _fields(self):
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with open(self.path, newline="", encoding="utf-8") as f:
            return next(csv.reader(f), None)

    def append(self, row):
        fields = self._fields()
        if fields is None:
            fields = list(row)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, ",".join(fields) + "\n")
        unknown = [k for k in row if k not in fields]
        if unknown:
            # A column first seen now (validation every N epochs): rewrite with a wider header.
            fields = fields + unknown
            self._rewrite(fields, self.rows())
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=fields, lineterminator="\n").writerow(
            {k: _fmt(v) for k, v in row.items()})
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def truncate_after(self, epoch):
        """Drop rows whose epoch is greater than ``epoch`` (rows written after the checkpoint
        a resumed run restarts from), so each epoch keeps exactly one row."""
        fields = self._fields()
        if fields is None:
            return 0
        rows = self.rows()
        keep = [r for r in rows if int(float(r["epoch"])) <= epoch]
        self._rewrite(fields, keep)
        return len(rows) - len(keep)

    def _rewrite(self, fields, rows):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


class Run:
    """A run folder and, while it is open, its own ``log.txt``.

    Make one with :func:`start` and use it as a context manager::

        with runs.start("find_lr", args) as run:
            ...
            run.finish(summary)

    The run owns the file handler that writes its ``log.txt``: leaving the block (or
    :meth:`finish`) detaches it, so a later run in the same process no longer writes into
    this folder's log, and an exception that leaves the block is recorded in this
    ``log.txt`` first. Runs nest (``demo.py`` calls every stage in-process): the handlers
    of enclosing runs stay attached meanwhile, so the demo's ``log.txt`` holds every
    stage's lines (it encloses them) and each stage's ``log.txt`` only its own.

    Parameters
    ----------
    directory : str or Path
    log : logging.Logger, optional
        Logger for the run's own messages (default: the ``"run"`` logger).
    log_file : str or Path, optional
        Write the root logger's records to this file while the run is open (the run owns
        the handler). Without it the run keeps no log of its own (a :meth:`subrun` logs into
        its parent's).
    """

    def __init__(self, directory, log=None, log_file=None):
        self.dir = Path(directory)
        self.log = log or logging.getLogger(LOGGER_NAME)
        self.metrics = MetricsCSV(self.dir / "metrics.csv")
        self._log_handler = None
        if log_file is not None:
            _add_console()
            handler, created = _add_file_handler(log_file)
            # A handler another open run attached to the same file stays that run's.
            self._log_handler = handler if created else None

    def path(self, *parts):
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name, obj):
        return atomic_write_json(self.path(name), obj)

    def read_json(self, name, default=None):
        p = self.dir / name
        if not p.exists():
            return default
        with open(p, encoding="utf-8") as f:
            return json.load(f)

    def subrun(self, name):
        """A child folder (own metrics.csv and checkpoints) that logs to the same log."""
        child = Run(self.dir / name, self.log)
        child.dir.mkdir(parents=True, exist_ok=True)
        return child

    def finish(self, summary):
        """Write ``summary.json``, then stop writing this run's log (see :meth:`close`)."""
        self.write_json("summary.json", summary)
        self.log.info("summary written to %s", self.dir / "summary.json")
        self.close()
        return summary

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """Record a failure in this run's log.txt, then stop writing it."""
        if exc is not None:
            record = self.log.makeRecord(self.log.name, logging.ERROR, __file__, 0, "run failed",
                                         (), (exc_type, exc, tb))
            if self._log_handler is not None:
                # Into this run's log only: the exception goes on to the enclosing run (or
                # the interpreter), which records or prints it once more for its own log.
                self._log_handler.handle(record)
            else:
                self.log.handle(record)
        self.close()
        return False

    def close(self):
        """Stop writing this run's log.txt (the console and enclosing runs keep logging).
        Safe to call twice."""
        handler, self._log_handler = self._log_handler, None
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")


def _add_console(level=logging.INFO):
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(h, "_run_console", False) for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(_FORMAT)
        console._run_console = True
        root.addHandler(console)


def _add_file_handler(log_path):
    """The root logger's file handler for ``log_path``: (handler, True) if added now,
    (handler, False) if one was attached already."""
    log_path = str(Path(log_path).resolve())
    root = logging.getLogger()
    for h in root.handlers:
        if getattr(h, "_run_file", None) == log_path:
            return h, False
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(_FORMAT)
    handler._run_file = log_path
    root.addHandler(handler)
    return handler, True


def setup_logging(log_path=None, level=logging.INFO):
    """Console handler once per process, plus a file handler for ``log_path``.

    The file handler stays attached until the process ends; a run that should stop
    writing its log when it ends is ``Run(directory, log_file=log_path)`` (or
    :func:`start`), which owns its handler.
    """
    _add_console(level)
    if log_path is not None:
        _add_file_handler(log_path)
    return logging.getLogger(LOGGER_NAME)


def start(script, args, derived=None, rank=0, directory=None):
    """Create (or, with ``args.resume``, reopen) the run folder and record the run.

    Use the returned :class:`Run` in a ``with`` block: it writes ``log.txt`` until the
    block ends.

    Parameters
    ----------
    script : str
        Script name, used for the default parent folder.
    args : argparse.Namespace
        Parsed options; must carry ``out``, ``name``, ``resume`` (see add_run_arguments).
    derived : dict, optional
        Values computed from the options (iterations per epoch, CLR step...), stored in
        args.json under "derived".
    rank : int
        Worker rank under distributed training; only rank 0 writes args/env, the others log
        to ``log.txt.rank<N>``.
    directory : str or Path, optional
        Record the run in exactly this folder (created if missing) instead of a new folder
        under ``args.out``: ``prepare_data.py`` builds its output in a staging folder.
    """
    resume = getattr(args, "resume", None)
    if directory is not None:
        directory, resume = Path(directory), None
    elif resume:
        directory = Path(resume)
        if not (directory / "args.json").exists():
            raise FileNotFoundError(f"--resume {resume}: no args.json there; not a run folder")
    else:
        root = Path(getattr(args, "out", None) or os.path.join("runs", script))
        name = getattr(args, "name", None) or datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        root.mkdir(parents=True, exist_ok=True)
        directory = _free_folder(root, name)
        if rank == 0:
            directory.mkdir(parents=True)
    directory.mkdir(parents=True, exist_ok=True)
    log_name = "log.txt" if rank == 0 else f"log.txt.rank{rank}"
    run = Run(directory, log_file=directory / log_name)
    try:
        if rank == 0:
            record = {"script": script, "argv": sys.argv, "options": _plain(vars(args)),
                      "derived": derived or {}}
            if resume:
                run.write_json(f"args.resume-{datetime.datetime.now():%Y%m%d-%H%M%S}.json",
                               record)
            else:
                run.write_json("args.json", record)
                run.write_json("env.json", environment())
        run.log.info("%s run folder: %s%s", script, directory, " (resumed)" if resume else "")
    except BaseException:
        run.close()  # a run that fails while starting is never returned: detach its log
        raise
    return run


def record_derived(run, derived):
    """Add derived values to args.json after they are known (iterations per epoch...)."""
    record = run.read_json("args.json", {})
    record.setdefault("derived", {}).update(_plain(derived))
    run.write_json("args.json", record)


def _plain(d):
    return json.loads(json.dumps(d, default=str))
