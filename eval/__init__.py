"""Evaluation: detection AP/mAP (VOC and COCO, Cartucho/VOC/COCO files), classification metrics,
plots, reports (run folders live in infra/).

Needs only numpy, matplotlib and the standard library (no MXNet), so PyTorch ports score
their outputs with the same code. Import by module: ``from eval import detection``.
"""
