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
def test_cgroup_quota_reads_v2_and_v1_at_the_mount(tmp_path, v2, v1, expected):
    """A container's own cgroup (a cgroup namespace): /proc/self/cgroup says "/"."""
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("1:cpu,cpuacct:/\n0::/\n")
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(v1[0] + "\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(v1[1] + "\n")
    files = {"root": tmp_path, "proc_cgroup": proc}
    assert cpus.cgroup_quota(**files) == expected
    usable = cpus.usable_cpus(**files)
    assert usable == max(1, min(len(os.sched_getaffinity(0)), expected or 10 ** 6))


def _cgroup_tree(root, quotas, v1=False):
    """Directories under ``root`` with a quota each (``{"a/b": "100000 100000"}``, v2
    ``cpu.max`` format; v1: written as cfs_quota_us / cfs_period_us under root/cpu)."""
    for rel, quota in quotas.items():
        d = (root / "cpu" if v1 else root) / rel
        d.mkdir(parents=True, exist_ok=True)
        if quota is None:
            continue
        if v1:
            q, period = quota.split()
            (d / "cpu.cfs_quota_us").write_text(("-1" if q == "max" else q) + "\n")
            (d / "cpu.cfs_period_us").write_text(period + "\n")
        else:
            (d / "cpu.max").write_text(quota + "\n")


@pytest.mark.parametrize("v1", [False, True], ids=["v2", "v1"])
@pytest.mark.parametrize("quotas, own, expected", [
    # a systemd slice's CPUQuota=100% on the process's own cgroup, none above it
    ({".": None, "work.slice": "max 100000", "work.slice/job": "100000 100000"},
     "/work.slice/job", 1),
    # a parent's quota caps a child that has none (or a larger one)
    ({".": None, "work.slice": "200000 100000", "work.slice/job": "max 100000"},
     "/work.slice/job", 2),
    ({".": None, "a": "100000 100000", "a/b": "400000 100000", "a/b/c": "300000 100000"},
     "/a/b/c", 1),
    # a sibling's quota is not ours
    ({".": None, "other": "100000 100000", "mine": "max 100000"}, "/mine", None),
    # a container without a cgroup namespace: the host path is not mounted here, and the
    # mount's root is the container's own cgroup
    ({".": "100000 100000"}, "/docker/0123abcd", 1),
])
def test_cgroup_quota_is_the_smallest_on_the_path_from_the_own_cgroup(tmp_path, v1, quotas,
                                                                        own, expected):
    _cgroup_tree(tmp_path, quotas, v1)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"4:memory:/elsewhere\n2:cpu,cpuacct:{own}\n0::/\n" if v1
                    else f"0::{own}\n")
    assert cpus.cgroup_quota(root=tmp_path, proc_cgroup=proc) == expected


def test_cgroup_paths_are_read_from_proc_self_cgroup(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("12:pids:/x\n3:cpu,cpuacct:/user.slice/job\n1:name=systemd:/y\n"
                    "0::/user.slice/job\n")
    assert cpus.own_cgroups(proc) == {"v1": "/user.slice/job", "v2": "/user.slice/job"}
    assert cpus.own_cgroups(tmp_path / "missing") == {}


def _new_cgroup_with_one_cpu():
    """A fresh cgroup below this process's hierarchy root with a quota of one CPU, or None
    when this machine does not let us make one (not root, no writable cpu controller)."""
    root = Path("/sys/fs/cgroup")
    name = f"omp-test-{os.getpid()}"
    v2 = (root / "cgroup.controllers").exists()
    parent = root if v2 else root / "cpu"
    try:
        if v2 and "cpu" not in (root / "cgroup.subtree_control").read_text().split():
            return None
        d = parent / name
        d.mkdir()
    except OSError:
        return None
    try:
        if v2:
            (d / "cpu.max").write_text("100000 100000")
        else:
            (d / "cpu.cfs_period_us").write_text("100000")
            (d / "cpu.cfs_quota_us").write_text("100000")
    except OSError:
        d.rmdir()
        return None
    return d


# Moves itself into a cgroup ("0" is the writer), then sets OpenMP's defaults.
JOIN_AND_PROBE = """
import os, sys
try:
    with open(%r, "w") as f:
        f.write("0")
except OSError as e:
    print("cannot-join the cgroup:", e)
    sys.exit(0)
sys.path.insert(0, %r)
from infra import openmp
print(os.environ["OMP_NUM_THREADS"], open("/proc/self/cgroup").read())
"""


def test_the_thread_count_follows_a_cgroup_quota_below_the_mount_root():
    """A process moved into a cgroup of its own with a one-CPU quota (what a systemd slice's
    CPUQuota=100% or a batch system's job cgroup makes) gets a one-thread team, where reading
    the quota at the mount's root alone saw none and gave one thread per host CPU."""
    d = _new_cgroup_with_one_cpu()
    if d is None:
        pytest.skip("cannot create a cgroup with a CPU quota here (needs root and a "
                    "writable cpu controller)")
    try:
        env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
        out = subprocess.run([sys.executable, "-c", JOIN_AND_PROBE % (
            str(d / "cgroup.procs"), str(ROOT))], env=env, capture_output=True, text=True,
            timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        if out.stdout.startswith("cannot-join"):
            pytest.skip(out.stdout.strip())
        assert out.stdout.split()[0] == "1", out.stdout
    finally:
        d.rmdir()  # the child has ended, so the cgroup is empty
