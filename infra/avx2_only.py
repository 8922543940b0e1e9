"""Run a command as on an AVX2-only x86 CPU, on one that has AVX-512.

    python -m infra.avx2_only python demo.py --out DIR
    python -m infra.avx2_only python -m pytest -q

The CPU demo is sized for a 2-core AVX2-only CPU (README). On an AVX-512 machine
``DNNL_MAX_CPU_ISA=AVX2`` holds MKLDNN (the detector's and the filter's convolutions) to its
AVX2 kernels, but NumPy, OpenCV and OpenBLAS also pick their kernels at run time and keep
their AVX-512 ones: the HOG search, the transforms and the metrics then run code the
slower CPU does not have, and a test of theirs could pass here for a summation order that
CPU does not use. Each library has its own switch; this sets all four for the command
(a variable the user already set is kept) and replaces this process with it:

- ``DNNL_MAX_CPU_ISA=AVX2`` (MKLDNN/oneDNN, inside MXNet);
- ``NPY_DISABLE_CPU_FEATURES``: NumPy's AVX-512 dispatch targets, only those this CPU has
  (NumPy warns about naming one it lacks);
- ``OPENCV_CPU_DISABLE=AVX512F,AVX512-SKX``: OpenCV's dispatched AVX-512 code, in opencv-python
  and in the OpenCV built into libmxnet (its image decoding), which reads the same variable
  and knows these two names but not ``AVX512-COMMON`` (it warns about that one; OpenCV 4.11
  dispatches nothing on it alone);
- ``OPENBLAS_CORETYPE=Haswell`` (NumPy's and MXNet's OpenBLAS, both built DYNAMIC_ARCH).

What stays: MXNet's own operators outside MKLDNN are compiled for a fixed baseline (no
run-time choice to make), and the clock, caches and memory of this machine are its own, so
speed is approximated, not reproduced; a run on a real AVX2-only CPU is still the check.
On a CPU without AVX-512 only ``DNNL_MAX_CPU_ISA`` is set, which changes nothing there.

Standard library only.
"""
import os
import sys

from infra.runs import ISA_CAP_VARIABLES, cpu_flags

#: NumPy's AVX-512 dispatch targets and the /proc/cpuinfo flags each needs
#: (numpy/core/src/common/npy_cpu_features.c's groups).
_SKX = {"avx512f", "avx512cd", "avx512vl", "avx512bw", "avx512dq"}
_CLX = _SKX | {"avx512_vnni"}
_CNL = _SKX | {"avx512ifma", "avx512vbmi"}
NUMPY_TARGETS = {
    "AVX512F": {"avx512f"},
    "AVX512CD": {"avx512f", "avx512cd"},
    "AVX512_KNL": {"avx512f", "avx512cd", "avx512er", "avx512pf"},
    "AVX512_KNM": {"avx512f", "avx512cd", "avx512er", "avx512pf", "avx512_4fmaps",
                   "avx512_4vnniw", "avx512_vpopcntdq"},
    "AVX512_SKX": _SKX,
    "AVX512_CLX": _CLX,
    "AVX512_CNL": _CNL,
    "AVX512_ICL": _CLX | _CNL | {"avx512_vbmi2", "avx512_bitalg", "avx512_vpopcntdq"},
}
OPENCV_AVX512 = "AVX512F,AVX512-SKX"
#: The variables this module sets (env.json records them with the other speed variables).
VARIABLES = ISA_CAP_VARIABLES


def caps(flags):
    """The variables that hold every library to AVX2 on a CPU with these /proc/cpuinfo
    ``flags``."""
    flags = set(flags)
    out = {"DNNL_MAX_CPU_ISA": "AVX2"}
    if "avx512f" not in flags:
        return out
    out["NPY_DISABLE_CPU_FEATURES"] = " ".join(
        name for name, needs in NUMPY_TARGETS.items() if needs <= flags)
    out["OPENCV_CPU_DISABLE"] = OPENCV_AVX512
    out["OPENBLAS_CORETYPE"] = "Haswell"
    return out


def environment(environ=None, flags=None):
    """``environ`` (default: this process's) with :func:`caps` added; a variable already set
    there is kept."""
    env = dict(os.environ if environ is None else environ)
    for name, value in caps(cpu_flags() if flags is None else flags).items():
        env.setdefault(name, value)
    return env


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    env = environment()
    held = ", ".join(f"{k}={env[k]}" for k in VARIABLES if k in env)
    print(f"avx2_only: {held}", file=sys.stderr, flush=True)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        print(f"avx2_only: cannot run {argv[0]!r}: {e}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
