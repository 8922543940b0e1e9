"""How many CPUs this process may use: what sizes the OpenMP team and the job children.

``os.cpu_count()`` counts the host's CPUs, not the ones a process is allowed on. Under an
affinity mask (``taskset``, Slurm, ``docker --cpuset-cpus``) or a cgroup quota
(``docker --cpus``, Kubernetes limits, a systemd slice's ``CPUQuota=``) it over-counts, and
MXNet's OpenMP team then runs more spinning threads than there are CPUs: pinned to one core
of the 2-core Intel Xeon, the demo's detector step ran 37 images/s with 2 threads and 106
with 1 (README "Detector on a CPU", rows A1/A2). Python 3.13's ``os.process_cpu_count()``
reads the mask but not the quota.

A quota is set on a cgroup and caps everything below it, so the limit is the smallest quota
on the path from this process's own cgroup (``/proc/self/cgroup``) up to the hierarchy's
root, as the JDK and Go runtimes read it. Inside a container without a cgroup namespace
that path names the host's hierarchy, which is not mounted there; the levels that do not
exist are skipped, and the mount's root, which is then the container's own cgroup, is read.
"""
import math
import os
from pathlib import Path, PurePosixPath

#: Where cgroup hierarchies are mounted, and this process's place in them.
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _read(path):
    try:
        return path.read_text().split()
    except (OSError, ValueError):
        return None


def _v2_quota(directory):
    """CPUs of a cgroup v2 ``cpu.max`` (``"max 100000"``: none; ``"150000 100000"``: 1.5)."""
    fields = _read(directory / "cpu.max")
    return _ratio(*fields) if fields and len(fields) == 2 else None


def _v1_quota(directory):
    """CPUs of a cgroup v1 ``cpu.cfs_quota_us`` (-1: none) over ``cpu.cfs_period_us``."""
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    return _ratio(quota[0], period[0]) if quota and period else None


def _ratio(quota, period):
    try:
        quota, period = int(quota), int(period)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def own_cgroups(proc_cgroup=PROC_SELF_CGROUP):
    """This process's cgroup paths: ``{"v2": "/a/b", "v1": "/a/b"}`` (v1: the hierarchy
    holding the ``cpu`` controller), for the hierarchies it is in."""
    paths = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)  # "ID:controllers:path"
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths["v2"] = path
        elif "cpu" in controllers.split(","):
            paths["v1"] = path
    return paths


def _levels(mount, path):
    """The directories from cgroup ``path`` under ``mount`` up to ``mount`` itself, those
    that exist (``mount`` always; skipped when it does not exist either)."""
    rel = PurePosixPath("/", path).relative_to("/")  # "/a/b" -> "a/b", "/" -> "."
    return [mount / p for p in [rel, *rel.parents] if (mount / p).is_dir()]


def cgroup_quota(root=CGROUP_ROOT, proc_cgroup=PROC_SELF_CGROUP):
    """CPUs allowed by the cgroup quotas over this process, rounded up; None when there is
    none: the smallest quota of its cgroup and every ancestor, in the v2 hierarchy (mounted
    at ``root``, or at ``root/unified`` beside v1) and the v1 ``cpu`` one (``root/cpu``)."""
    paths = own_cgroups(proc_cgroup)
    quotas = []
    for mount in (root, root / "unified"):
        quotas += [_v2_quota(d) for d in _levels(mount, paths.get("v2", "/"))]
    quotas += [_v1_quota(d) for d in _levels(root / "cpu", paths.get("v1", "/"))]
    quotas = [q for q in quotas if q is not None]
    return max(1, math.ceil(min(quotas))) if quotas else None


def usable_cpus(**cgroup_files):
    """CPUs this process may run on: the affinity mask, capped by a cgroup quota; at least 1.
    ``cgroup_files``: :func:`cgroup_quota`'s ``root`` and ``proc_cgroup`` (for tests)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    quota = cgroup_quota(**cgroup_files)
    return max(1, min(allowed, quota) if quota else allowed)
