"""The pipeline's data, one sub-package per stage: ``prepared`` (raw annotations -> the
prepared DATA folder, and reading it back), ``phantom`` (synthetic raw sets),
``detector`` (the detector's loaders and augmentation), ``filter`` (similar-region search,
fused crops and their datasets). The imports run one way: phantom and prepared need no
other stage; detector and filter read prepared folders; filter's crop brightness jitter is
the detector's augmentation.

OpenMP's defaults (thread count, spinning) are set before anything here imports mxnet
(``infra.openmp``), unless the user chose.
"""
import infra.openmp  # noqa: F401  (before any import of mxnet)
