"""infra/openmp.py: OpenMP's defaults, and that every entry point sets them before mxnet loads
(libgomp reads them once, when libmxnet.so loads; set later they do nothing)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra import openmp

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
    assert seen == {"OMP_NUM_THREADS": str(os.cpu_count()), "OMP_WAIT_POLICY": "ACTIVE",
                    "GOMP_SPINCOUNT": "300000"}, target
