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
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
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
    """A run folder. Use :func:`start` to make one."""

    def __init__(self, directory, log):
        self.dir = Path(directory)
        self.log = log
        self.metrics = MetricsCSV(self.dir / "metrics.csv")

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
        self.write_json("summary.json", summary)
        self.log.info("summary written to %s", self.dir / "summary.json")
        self.close()
        return summary

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """Record a failure in log.txt, then stop writing it (the run owns its handler)."""
        if exc is not None:
            self.log.error("run failed", exc_info=(exc_type, exc, tb))
        self.close()
        return False

    def close(self):
        """Stop writing this run's log.txt (the console and outer runs keep logging)."""
        handler = getattr(self, "_log_handler", None)
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
            self._log_handler = None


def setup_logging(log_path=None, level=logging.INFO):
    """Console handler once per process, plus a file handler for ``log_path``.

    Runs nest (demo.py calls the other scripts in-process): an inner run adds its own
    log.txt while the outer one keeps receiving everything; :meth:`Run.finish` removes the
    inner file handler again.
    """
    root = logging.getLogger()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    if not any(getattr(h, "_run_console", False) for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        console._run_console = True
        root.addHandler(console)
    if log_path is not None:
        log_path = str(Path(log_path).resolve())
        for h in root.handlers:
            if getattr(h, "_run_file", None) == log_path:
                return logging.getLogger(LOGGER_NAME)
        handler = logging.FileHandler(log_path, encoding="utf-8")
        handler.setFormatter(fmt)
        handler._run_file = log_path
        root.addHandler(handler)
    return logging.getLogger(LOGGER_NAME)


def _file_handler(log_path):
    log_path = str(Path(log_path).resolve())
    return next((h for h in logging.getLogger().handlers
                 if getattr(h, "_run_file", None) == log_path), None)


def start(script, args, derived=None, rank=0):
    """Create (or, with ``args.resume``, reopen) the run folder and record the run.

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
    """
    resume = getattr(args, "resume", None)
    if resume:
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
    log = setup_logging(directory / log_name)
    run = Run(directory, log)
    run._log_handler = _file_handler(directory / log_name)
    if rank == 0:
        record = {"script": script, "argv": sys.argv, "options": _plain(vars(args)),
                  "derived": derived or {}}
        if resume:
            run.write_json(f"args.resume-{datetime.datetime.now():%Y%m%d-%H%M%S}.json", record)
        else:
            run.write_json("args.json", record)
            run.write_json("env.json", environment())
    log.info("%s run folder: %s%s", script, directory, " (resumed)" if resume else "")
    return run


def record_derived(run, derived):
    """Add derived values to args.json after they are known (iterations per epoch...)."""
    record = run.read_json("args.json", {})
    record.setdefault("derived", {}).update(_plain(derived))
    run.write_json("args.json", record)


def _plain(d):
    return json.loads(json.dumps(d, default=str))
