"""Package marker.

OpenMP's defaults (thread count, spinning) are set before anything here imports mxnet
(``infra.openmp``), unless the user chose.
"""
import infra.openmp  # noqa: F401  (before any import of mxnet)
