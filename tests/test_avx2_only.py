"""infra.avx2_only: every library that picks its kernels at run time held to AVX2, checked
by asking NumPy, OpenCV and MKLDNN themselves in a child process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra import avx2_only
from infra.runs import cpu_flags

ROOT = Path(__file__).resolve().parents[1]
SKX_FLAGS = {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512vl", "avx512bw",
             "avx512dq"}
ICL_FLAGS = SKX_FLAGS | {"avx512_vnni", "avx512ifma", "avx512vbmi", "avx512_vbmi2",
                         "avx512_bitalg", "avx512_vpopcntdq"}


def test_an_avx2_only_cpu_gets_mkldnn_cap_alone():
    assert avx2_only.caps({"sse4_2", "avx", "avx2", "fma"}) == {"DNNL_MAX_CPU_ISA": "AVX2"}


@pytest.mark.parametrize("flags, targets", [
    (SKX_FLAGS, "AVX512F AVX512CD AVX512_SKX"),
    (SKX_FLAGS | {"avx512_vnni"}, "AVX512F AVX512CD AVX512_SKX AVX512_CLX"),
    (ICL_FLAGS, "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL"),
])
def test_numpy_is_told_only_the_targets_the_cpu_has(flags, targets):
    env = avx2_only.caps(flags)
    assert env["NPY_DISABLE_CPU_FEATURES"] == targets
    assert env["OPENBLAS_CORETYPE"] == "Haswell" and "AVX512F" in env["OPENCV_CPU_DISABLE"]


def test_a_variable_the_user_set_is_kept():
    env = avx2_only.environment({"DNNL_MAX_CPU_ISA": "AVX512_CORE", "PATH": "/bin"},
                                flags=SKX_FLAGS)
    assert env["DNNL_MAX_CPU_ISA"] == "AVX512_CORE" and env["PATH"] == "/bin"
    assert env["OPENBLAS_CORETYPE"] == "Haswell"


def test_the_exit_status_and_a_missing_command(capfd):
    run = subprocess.run([sys.executable, "-m", "infra.avx2_only", sys.executable, "-c",
                          "raise SystemExit(3)"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 3 and "avx2_only: DNNL_MAX_CPU_ISA=AVX2" in run.stderr
    assert avx2_only.main([]) == 2
    assert avx2_only.main(["no-such-command-here"]) == 127
    assert "cannot run" in capfd.readouterr().err


PROBE = """
import json, cv2, numpy
import mxnet as mx
from numpy.core._multiarray_umath import __cpu_features__ as f
x = mx.nd.ones((1, 3, 8, 8))
mx.nd.Convolution(x, mx.nd.ones((4, 3, 3, 3)), no_bias=True, kernel=(3, 3), num_filter=4).wait_to_read()
print(json.dumps({"numpy_avx512": [k for k in ("AVX512F", "AVX512_SKX") if f.get(k)],
                  "cv2_avx512f": cv2.checkHardwareSupport(13),
                  "cv2_avx512_skx": cv2.checkHardwareSupport(256)}))
"""


def _probe(wrapped):
    cmd = [sys.executable, "-c", PROBE]
    if wrapped:
        cmd = [sys.executable, "-m", "infra.avx2_only"] + cmd
    # the caps the wrapper sets are left out of the control's environment
    env = dict({k: v for k, v in os.environ.items() if k not in avx2_only.VARIABLES},
               DNNL_VERBOSE="1")
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, check=True)
    isa = [line for line in run.stdout.splitlines() if "isa:" in line]
    return json.loads(run.stdout.strip().splitlines()[-1]), isa, run.stderr


@pytest.mark.slow
@pytest.mark.skipif("avx512f" not in cpu_flags(), reason="needs a CPU with AVX-512")
def test_numpy_opencv_and_mkldnn_leave_their_avx512_kernels():
    plain, plain_isa, _ = _probe(wrapped=False)
    # the control: on this CPU every library would pick AVX-512 unwrapped
    assert plain["numpy_avx512"] and plain["cv2_avx512f"] and plain["cv2_avx512_skx"]
    assert "AVX2" not in plain_isa[0]
    held, held_isa, stderr = _probe(wrapped=True)
    assert held == {"numpy_avx512": [], "cv2_avx512f": False, "cv2_avx512_skx": False}
    assert "AVX2" in held_isa[0] and "512" not in held_isa[0]
    # no library complained about a feature it was told to drop (libmxnet's own OpenCV
    # reads OPENCV_CPU_DISABLE too, and knows fewer names than opencv-python)
    assert "cannot disable" not in stderr and "unknown CPU feature" not in stderr
