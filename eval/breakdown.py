"""Recall of ground-truth boxes broken down by an attribute (lesion contrast, size).

A box counts as found when a detection of its class, scoring at least the operating
threshold, overlaps it with IoU >= ``iou`` (any such detection: this is coverage, without the
one-to-one matching of the AP, so duplicates cannot hide a box). numpy only.
"""
import numpy as np

from eval.detection import box_iou


def found_boxes(gt, det, score_threshold, iou=0.5, *, offset):
    """Per image, whether each ground-truth box is found at the operating point.

    Parameters
    ----------
    gt, det : dict
        ``eval.detection`` layouts (``boxes``, ``labels``; ``scores`` for detections).
    score_threshold : float
    iou : float
    offset : {0, 1}
        Box convention (see :func:`eval.detection.box_iou`).

    Returns
    -------
    dict
        ``{id: (N,) bool}`` aligned with ``gt[id]["boxes"]``.
    """
    out = {}
    for sid, g in gt.items():
        gb = np.asarray(g["boxes"], dtype=np.float64).reshape(-1, 4)
        gl = np.asarray(g.get("labels", np.zeros(len(gb))), dtype=np.int64)
        d = det.get(sid)
        hit = np.zeros(len(gb), bool)
        if d is not None and len(d["scores"]):
            keep = np.asarray(d["scores"], dtype=np.float64) >= score_threshold
            db = np.asarray(d["boxes"], dtype=np.float64).reshape(-1, 4)[keep]
            dl = np.asarray(d["labels"], dtype=np.int64)[keep]
            if len(db):
                ious = box_iou(gb, db, offset=offset)
                same = gl[:, None] == dl[None, :]
                hit = ((ious >= iou) & same).any(axis=1)
        out[sid] = hit
    return out


def recall_by_bins(found, values, edges, difficult=None):
    """Recall per bin of an attribute.

    Parameters
    ----------
    found, values : dict
        ``{id: (N,) bool}`` and ``{id: (N,) float}`` over the same boxes.
    edges : sequence of float
        Bin edges, increasing; bins are ``[e_i, e_{i+1})``. The outer bins are open (values
        below the first edge count in the first bin, above the last in the last); nan
        values are not counted.
    difficult : dict, optional
        ``{id: (N,) bool}``: boxes left out (not positives).

    Returns
    -------
    list of dict
        ``{"low", "high", "n", "found", "recall"}`` per bin (recall None when empty).
    """
    f = np.concatenate([np.asarray(found[i], bool) for i in found]) if found else np.zeros(0, bool)
    v = np.concatenate([np.asarray(values[i], float) for i in found]) if found else np.zeros(0)
    if difficult is not None:
        d = np.concatenate([np.asarray(difficult[i], bool) for i in found])
        f, v = f[~d], v[~d]
    edges = np.asarray(edges, dtype=np.float64)
    rows = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        first, last = k == 0, k == len(edges) - 2
        sel = ((v >= lo) | first) & ((v < hi) | last) & ~np.isnan(v)
        n = int(sel.sum())
        rows.append({"low": float(lo), "high": float(hi), "n": n, "found": int(f[sel].sum()),
                     "recall": float(f[sel].mean()) if n else None})
    return rows
