"""OpenMP defaults for MXNet's CPU kernels, set on import, before anything imports mxnet:
libgomp reads them once, when ``libmxnet.so`` loads. A variable the user set is kept.

- ``OMP_NUM_THREADS`` = the CPUs this process may use (``infra.cpus.usable_cpus``: the
  affinity mask and a cgroup quota, not the host's count): MXNet on x86 uses half the cores
  when it is unset (1 of 2 on the CI box).
- ``OMP_WAIT_POLICY=ACTIVE`` with ``GOMP_SPINCOUNT=300000`` (both, and only when the user set
  neither). The spin count is libgomp's default, so an idle thread still sleeps after the
  same few milliseconds; what changes is the throttled case, when libgomp manages more
  threads than there are CPUs (2 cores: the OpenMP team besides the Python and loader
  threads): it then spins 1000 turns instead of 100 before a futex sleep. On a 2-core AMD
  EPYC the CPU recipe's small net fell into that case on some data and then trained at
  95-105 instead of 170-180 images/s, both OpenMP threads sleeping and waking around every
  tiny parallel region (20x the context switches), also in the first model of a fresh
  process. A larger GOMP_SPINCOUNT alone does not help (the throttled count is capped at
  100 unless the policy is ACTIVE). ACTIVE alone would spin 30e9 turns, minutes, in a process
  that waits for its children. Same threads and the same split of the work: the same models
  (README "Detector on a CPU", rows W0-W3).
"""
import os

from infra import denormals  # noqa: F401  (flush denormals before mxnet starts its threads)
from infra.cpus import usable_cpus

#: Set together, and only when the user set neither.
SPIN = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "300000"}


def set_defaults(environ=None, cpus=None):
    """Fill in ``environ`` (default ``os.environ``) as the module docstring says; returns it."""
    environ = os.environ if environ is None else environ
    environ.setdefault("OMP_NUM_THREADS", str(cpus or usable_cpus()))
    if not any(k in environ for k in SPIN):
        environ.update(SPIN)
    return environ


set_defaults()
