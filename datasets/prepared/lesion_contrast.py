"""How visible an annotated lesion is: its contrast against the same place on the other side.

A strain lesion is darker than the muscle around it, and the contralateral half shows that
muscle without the lesion at the same position (the panels are translation-symmetric). The
contrast of a box is ``1 - mean(lesion) / mean(reference)`` over the ellipse inscribed in the
box (the lesion's own shape, without the corners of muscle a box also holds), on grey levels:
0 is invisible, 0.5 means half as bright. Used to read the detector's recall by contrast and
size (eval.breakdown), so that a reader sees whether the faint lesions cap what any detector
could reach.
"""
from pathlib import Path

import cv2
import numpy as np


def ellipse_mask(box, shape):
    """Boolean mask of the ellipse inscribed in ``box`` (x1, y1, x2, y2 pixels), clipped to
    ``shape`` (H, W)."""
    h, w = shape
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    ax, ay = max((x2 - x1) / 2.0, 0.5), max((y2 - y1) / 2.0, 0.5)
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2 <= 1.0


def box_contrast(half_gray, reference_gray, box):
    """``1 - mean(half) / mean(reference)`` inside the box's inscribed ellipse.

    The reference half may differ in size by a few pixels (the panels are cropped
    separately); both are read over their common area. Returns nan when the ellipse falls
    outside it or the reference is black there.
    """
    h = min(half_gray.shape[0], reference_gray.shape[0])
    w = min(half_gray.shape[1], reference_gray.shape[1])
    mask = ellipse_mask(box, (h, w))
    if not mask.any():
        return float("nan")
    ref = float(reference_gray[:h, :w][mask].mean())
    if ref <= 0:
        return float("nan")
    return 1.0 - float(half_gray[:h, :w][mask].mean()) / ref


def data_contrasts(data_dir, gt):
    """Contrast of every ground-truth box of a prepared dual-panel DATA folder.

    Parameters
    ----------
    data_dir : str or Path
        ``prepare_data.py`` output with ``JPEGImages/`` and ``Reference/``.
    gt : dict
        ``{id: {"boxes": (N, 4), ...}}`` (``eval.detection`` layout) of ids in ``data_dir``.

    Returns
    -------
    dict
        ``{id: (N,) float64}``; nan for halves without a reference (single-panel data).
    """
    data_dir = Path(data_dir)
    out = {}
    for sid, g in gt.items():
        boxes = np.asarray(g["boxes"], dtype=np.float64).reshape(-1, 4)
        ref_path = data_dir / "Reference" / f"{sid}.jpg"
        if not ref_path.exists():
            out[sid] = np.full(len(boxes), np.nan)
            continue
        half = cv2.imread(str(data_dir / "JPEGImages" / f"{sid}.jpg"), cv2.IMREAD_GRAYSCALE)
        ref = cv2.imread(str(ref_path), cv2.IMREAD_GRAYSCALE)
        out[sid] = np.array([box_contrast(half, ref, b) for b in boxes])
    return out
