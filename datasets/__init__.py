"""The pipeline's data, one sub-package per stage: ``prepared`` (raw annotations -> the
prepared DATA folder, and reading it back), ``phantom`` (synthetic raw sets),
``detector`` (the detector's loaders and augmentation), ``filter`` (similar-region search,
fused crops and their datasets). The imports run one way: phantom and prepared need no
other stage; detector and filter read prepared folders; filter's crop brightness jitter is
the detector's augmentation.

MXNet on x86 uses half the cores when OMP_NUM_THREADS is unset (1 of 2 on the CI box);
set it to the core count before anything here imports mxnet, unless the user chose.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
