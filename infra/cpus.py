"""How many CPUs this process may use: what sizes the OpenMP team and the job children.

``os.cpu_count()`` counts the host's CPUs, not the ones a process is allowed on. Under an
affinity mask (``taskset``, Slurm, ``docker --cpuset-cpus``) or a cgroup quota
(``docker --cpus``, Kubernetes limits) it over-counts, and MXNet's OpenMP team then runs
more spinning threads than there are CPUs: pinned to one core of the 2-core Intel Xeon, the
demo's detector step ran 37 images/s with 2 threads and 106 with 1 (README "Detector on a
CPU", row A1/A2). Python 3.13's ``os.process_cpu_count()`` reads the mask but not the quota.
"""
import math
import os
from pathlib import Path

#: cgroup v2 and v1 files that hold a CPU quota (the first one that exists is read).
CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _read(path):
    try:
        return path.read_text().split()
    except (OSError, ValueError):
        return None


def cgroup_quota(v2_max=CGROUP_V2_MAX, v1_quota=CGROUP_V1_QUOTA, v1_period=CGROUP_V1_PERIOD):
    """CPUs allowed by this process's cgroup quota, rounded up; None when there is none.

    v2 ``cpu.max`` holds ``"max 100000"`` (no quota) or ``"200000 100000"`` (2 CPUs); v1 holds
    the quota (-1 for none) and the period in two files.
    """
    fields = _read(v2_max)
    if fields and len(fields) == 2:
        quota, period = fields
    else:
        quota, period = (_read(v1_quota) or ["max"])[0], (_read(v1_period) or ["0"])[0]
    try:
        quota, period = int(quota), int(period)
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def usable_cpus(**quota_files):
    """CPUs this process may run on: the affinity mask, capped by a cgroup quota; at least 1."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    quota = cgroup_quota(**quota_files)
    return max(1, min(allowed, quota) if quota else allowed)
