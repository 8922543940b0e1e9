"""infra/openmp.py: OpenMP's defaults, and that every entry point sets them before mxnet loads
(libgomp reads them once, when libmxnet.so loads; set later they do nothing)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra import cpus, openmp

ROOT = Path(__file__).resolve().parent.parent
OMP_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def test_defaults_fill_in_what_the_user_left_unset():
    assert openmp.set_defaults({}, cpus=3) == {
        "OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "300000"}
    # the spin pair goes in together or not at all: ACTIVE without the spin count would
    # spin for minutes, a spin count without ACTIVE would not lift the throttled case
    assert openmp.set_defaults({"OMP_WAIT_POLICY": "PASSIVE"}, cpus=2) == {
        "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2"}
    assert openmp.set_defaults({"GOMP_SPINCOUNT": "0", "OMP_NUM_THREADS": "1"}, cpus=2) == {
        "GOMP_SPINCOUNT": "0", "OMP_NUM_THREADS": "1"}


# Records os.environ's OpenMP variables at the moment something first imports mxnet.
PROBE = """
import importlib.abc, json, os, runpy, sys
seen = {}
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mxnet" and not seen:
            seen.update({k: os.environ.get(k) for k in %r})
        return None
sys.meta_path.insert(0, Probe())
sys.path.insert(0, %r)
target = sys.argv[1]
if target.endswith(".py"):
    runpy.run_path(target, run_name="probe")
else:
    importlib.import_module(target)
print(json.dumps(seen))
""" % (OMP_VARS, str(ROOT))


@pytest.mark.parametrize("target", [
    "train_yolo3", "train_filter", "predict", "find_lr", "demo",
    "bench/bench_train_loop.py", "bench/bench_learning.py", "models.yolo", "datasets.detector.data",
    "im2rec_tools.records"])
def test_entry_points_set_openmp_defaults_before_mxnet_loads(target):
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    out = subprocess.run([sys.executable, "-c", PROBE, target if not target.endswith(".py")
                          else str(ROOT / target)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"OMP_NUM_THREADS": str(cpus.usable_cpus()), "OMP_WAIT_POLICY": "ACTIVE",
                    "GOMP_SPINCOUNT": "300000"}, target


def test_the_thread_count_follows_the_affinity_mask_not_the_host():
    """Pinned to one CPU (taskset, Slurm, docker --cpuset-cpus), the OpenMP team is one
    thread: os.cpu_count() would give the host's count and oversubscribe the CPU (2.9x slower
    training measured, README "Detector on a CPU", rows A1/A2)."""
    one = sorted(os.sched_getaffinity(0))[0]
    code = ("import os; os.sched_setaffinity(0, {%d}); import sys; sys.path.insert(0, %r); "
            "from infra import openmp; "
            "print(os.environ['OMP_NUM_THREADS'], os.cpu_count())" % (one, str(ROOT)))
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    threads, host = out.stdout.split()
    assert threads == "1"
    assert int(host) == os.cpu_count()


@pytest.mark.parametrize("v2, v1, expected", [
    ("max 100000", None, None),          # v2, no quota
    ("200000 100000", None, 2),          # docker --cpus=2
    ("150000 100000", None, 2),          # --cpus=1.5: the part-used CPU still gets a thread
    ("50000 100000", None, 1),
    (None, ("-1", "100000"), None),      # v1, no quota
    (None, ("300000", "100000"), 3),
    (None, None, None),                  # no cgroup files at all
    ("garbage", ("x", "y"), None),
])
def test_cgroup_quota_reads_v2_then_v1(tmp_path, v2, v1, expected):
    files = {"v2_max": tmp_path / "cpu.max", "v1_quota": tmp_path / "quota",
             "v1_period": tmp_path / "period"}
    if v2 is not None:
        files["v2_max"].write_text(v2 + "\n")
    if v1 is not None:
        files["v1_quota"].write_text(v1[0] + "\n")
        files["v1_period"].write_text(v1[1] + "\n")
    assert cpus.cgroup_quota(**files) == expected
    usable = cpus.usable_cpus(**files)
    assert usable == max(1, min(len(os.sched_getaffinity(0)), expected or 10 ** 6))
