"""Package marker.

MXNet on x86 uses half the cores when OMP_NUM_THREADS is unset (1 of 2 on the CI box);
set it to the core count before anything here imports mxnet, unless the user chose.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
