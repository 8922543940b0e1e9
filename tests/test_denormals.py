"""infra/denormals.py: denormals flushed in the main thread, in threads started later and in
MXNet's engine threads (a fresh interpreter each, as the flag is process state), kept with
KEEP_DENORMALS=1, and no numpy warning about it."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"),
    reason="the SSE control register is x86-64's")

PROBE = """
import json, sys, threading
sys.path.insert(0, sys.argv[1])
import infra.openmp  # what every entry point imports before mxnet
import numpy as np
import mxnet as mx
from infra import denormals
a, b = np.float32(1e-37), np.float32(1e3)   # normal / normal = 1e-40, a denormal
out = {"mxcsr": denormals.mxcsr(), "main": float(a / b)}
t = threading.Thread(target=lambda: out.__setitem__("thread", float(a / b)))
t.start(); t.join()
out["mxnet"] = float((mx.nd.array([1e-37]) / 1e3).asnumpy()[0])
np.finfo(np.float32).smallest_subnormal
print(json.dumps(out))
"""


def _probe(keep):
    env = dict(os.environ)
    env.pop("KEEP_DENORMALS", None)
    if keep:
        env["KEEP_DENORMALS"] = "1"
    r = subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def test_denormals_flushed_everywhere_by_default():
    from infra import denormals
    out, err = _probe(keep=False)
    assert out["mxcsr"] & denormals.FTZ and out["mxcsr"] & denormals.DAZ
    assert out["main"] == out["thread"] == out["mxnet"] == 0.0
    assert "smallest subnormal" not in err


def test_keep_denormals_keeps_ieee_behaviour():
    from infra import denormals
    out, _ = _probe(keep=True)
    assert not out["mxcsr"] & (denormals.FTZ | denormals.DAZ)
    for where in ("main", "thread", "mxnet"):
        assert 0.0 < out[where] < 1.2e-38, where  # a denormal, computed
