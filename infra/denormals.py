"""Flush denormal floats to zero on x86 (the SSE control register's FTZ and DAZ bits), set on
import, before mxnet starts its threads: Linux threads copy their creator's floating-point
state, so MXNet's engine and OpenMP threads, made later, flush too.

Why: a from-scratch detector's weights drift towards zero where weight decay outweighs the
gradient (dead channels), and once some of them are denormal every multiply on them takes a
slow microcode path. On real-sized single-panel pictures the CPU recipe's mobilenet1.0 went
from 57 to 27 images/s between epochs 60 and 100 (110,000 denormal weights, 104,000 in one
convolution), and a fresh process resumed from that checkpoint ran at the same 27: the cost
is in the numbers, not the process. TensorFlow flushes denormals in its CPU thread pools by
default and PyTorch offers ``torch.set_flush_denormal``; MXNet has neither. Flushing changes
only values below 1.2e-38 (float32). ``KEEP_DENORMALS=1`` in the environment keeps IEEE
behaviour.
"""
import ctypes
import ctypes.util
import os
import platform
import sys
import warnings

FTZ = 1 << 15  # flush-to-zero: denormal results become 0
DAZ = 1 << 6   # denormals-are-zero: denormal inputs read as 0
#: glibc's x86-64 ``fenv_t``: 32 bytes, the SSE control/status register last.
_FENV_BYTES, _MXCSR_OFFSET = 32, 28


def _libm():
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    except OSError:
        return None


def _fenv():
    """``(libm, fenv_t buffer, SSE register)`` of this thread, or None where unreadable."""
    libm = _libm()
    buf = ctypes.create_string_buffer(_FENV_BYTES)
    if libm is None or libm.fegetenv(buf) != 0:
        return None
    return libm, buf, int.from_bytes(buf.raw[_MXCSR_OFFSET:_MXCSR_OFFSET + 4], "little")


def mxcsr():
    """This thread's SSE control/status register, or None where it cannot be read."""
    env = _fenv()
    return None if env is None else env[2]


def set_flush(on=True):
    """Set (``on``) or clear FTZ and DAZ in this thread; threads it starts later inherit
    them. Returns whether the register now says so (False off x86-64 Linux)."""
    env = _fenv()
    if env is None:
        return False
    libm, buf, reg = env
    reg = reg | FTZ | DAZ if on else reg & ~(FTZ | DAZ)
    ctypes.memmove(ctypes.addressof(buf) + _MXCSR_OFFSET, reg.to_bytes(4, "little"), 4)
    if libm.fesetenv(buf) != 0:
        return False
    now = mxcsr()
    return now is not None and bool(now & FTZ and now & DAZ) == bool(on)


if os.environ.get("KEEP_DENORMALS", "") in ("", "0"):
    # numpy computes a float type's smallest subnormal on first use of np.finfo: flushed,
    # it is 0, which is true in this mode and not worth a warning on every run
    warnings.filterwarnings("ignore", message="The value of the smallest subnormal for")
    set_flush(True)
