"""Pairs of detections and ground-truth boxes that can match: same image and class.

The one grouping both scorers build their IoU tables from (eval.detection's VOC matching and
eval.coco's COCOeval), kept apart so that neither scorer imports the other. numpy only.
"""
import numpy as np


def group_pairs(g_key, d_key, g_order=None):
    """Every (detection, ground truth) pair with equal keys (same image and class), detection-major.

    Parameters
    ----------
    g_key, d_key : ndarray of int
        Group key of each ground-truth / detection row.
    g_order : ndarray of int, optional
        Ground-truth rows sorted by key; within a key, the order pairs of one detection come
        in. Default: input order (stable sort by key).

    Returns
    -------
    d_of_pair, g_of_pair : ndarray of int
        Row indices; the pairs of detection ``j`` are contiguous, in ``g_order`` order.
    counts : ndarray of int
        Pairs per detection.
    """
    if g_order is None:
        g_order = np.argsort(g_key, kind="stable")
    gk = g_key[g_order]
    start = np.searchsorted(gk, d_key, side="left")
    counts = np.searchsorted(gk, d_key, side="right") - start
    P = int(counts.sum())
    seg = np.cumsum(counts) - counts
    off = np.arange(P) - np.repeat(seg, counts)
    g_of_pair = g_order[np.repeat(start, counts) + off]
    d_of_pair = np.repeat(np.arange(len(d_key)), counts)
    return d_of_pair, g_of_pair, counts
