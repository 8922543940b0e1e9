"""COCO box AP (AP@[.5:.95], AP50, AP75, AR@100) exactly as pycocotools' ``COCOeval`` computes it.

The settings of ``COCOeval(gt, dt, "bbox")`` followed by ``summarize()``'s first three lines:
IoU thresholds 0.50:0.05:0.95, 101 recall points, area range "all", at most 100 detections per
image and class. The algorithm is pycocotools/cocoeval.py's, vectorised; the tests in
tests/test_eval_coco.py compare with pycocotools itself. What COCO does differently from VOC
(:mod:`eval.detection`), all reproduced here:

- IoU is continuous (no +1) and computed on ``[x, y, w, h]`` as pycocotools' C code does
  (``x + w`` for the right edge); w = x2 - x1.
- Per image and class, detections are sorted by score (stable) and only the first 100 are
  kept; the rest neither match nor count.
- Matching, per IoU threshold: each detection in score order takes, among the ground-truth
  boxes not yet taken, the one of highest IoU >= the threshold (ties: the later box);
  a regular box is preferred to an ignored one (crowd, or area outside the range). A crowd
  box can be taken any number of times and its IoU is intersection / detection area.
- A detection matched to an ignored box is ignored (neither TP nor FP); so is an unmatched
  detection whose area ``w * h`` falls outside [0, 1e10] -- an inverted box (negative width
  or height, not both) therefore counts nowhere, while a box inverted on both axes has a
  positive area and is a false positive.
- Ranking over images: the per-image lists are concatenated in sorted image-id order and
  stable-sorted by score; precision is made monotone and read at recall 0, 0.01, ..., 1
  (0 past the highest recall reached); a class without non-ignored ground truth is left out.

Difficult boxes are COCO's ``iscrowd`` here: both mean "an object nobody is asked to find,
whose detections are not penalised", and ``iscrowd`` is the only such flag pycocotools reads
(it overwrites an annotation's ``ignore`` key with ``iscrowd``), so a VOC set exported with
difficult -> iscrowd (:func:`eval.coco_io.write_coco_instances`) and scored by pycocotools gives
these numbers. The price: a detection on a difficult box is matched with COCO's crowd IoU
(intersection / detection area), not the VOC IoU. numpy only.
"""
import numpy as np

from eval.pairs import group_pairs
from eval.detection_io import inverted_boxes, tables_from_dicts

# pycocotools' Params.setDetParams, verbatim values (linspace, not arange: see its comment)
IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = 100
AREA_ALL = (0.0, 1e5 ** 2)


def evaluate(gt, det, classes=None, max_dets=MAX_DETS):
    """AP@[.5:.95], AP50, AP75 and AR@max_dets as pycocotools' ``COCOeval`` (bbox, area all).

    Parameters
    ----------
    gt : dict
        ``{id: {"boxes": (N, 4) [x1, y1, x2, y2], "labels": (N,) int, "difficult": (N,) bool
        (optional, read as iscrowd), "area": (N,) (optional; COCO's annotation area, default
        box area)}}``. Image ids must be mutually sortable (pycocotools sorts them).
    det : dict
        ``{id: {"boxes", "scores", "labels"}}``, ids in ``gt``. Inverted boxes are allowed.
    classes : list of str, optional
        Names of the label indices (default ``"0", "1", ...``).
    max_dets : int
        Detections kept per image and class (COCO: 100).

    Returns
    -------
    dict
        ``ap`` (AP@[.5:.95]), ``ap50``, ``ap75``, ``ar`` (AR@max_dets), nan when no class has
        non-ignored ground truth; ``per_class[name]`` with the same keys plus ``n_pos``,
        ``n_det``, ``n_kept`` (after the per-image cap), ``precision50`` (the 101-point
        interpolated precision at IoU 0.5) and ``recall_thresholds``; ``precision``, the
        (10, 101, K) array of pycocotools' ``eval["precision"][..., 0, -1]`` (-1: no ground
        truth); and the settings used.
    """
    gt_t, dr_t, classes = tables_from_dicts(gt, det, classes)
    area = None
    if gt and all("area" in e for e in gt.values()):
        area = np.concatenate([np.asarray(e["area"], np.float64).reshape(-1)
                               for e in gt.values()])
    return evaluate_tables(gt_t, dr_t, classes, area, max_dets)


def _sorted_positions(ids):
    """Position of each image in pycocotools' order (``np.unique`` of the image ids)."""
    idx = range(len(ids))
    try:
        order = sorted(idx, key=lambda i: ids[i])
    except TypeError:  # mixed int / str ids, which pycocotools cannot sort at all
        order = sorted(idx, key=lambda i: (type(ids[i]).__name__, str(ids[i])))
    pos = np.empty(len(ids), np.int64)
    pos[order] = np.arange(len(ids))
    return pos


def _xywh(boxes):
    return boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]


def _pair_iou(d_box, g_box, crowd):
    """pycocotools' bbIou (maskApi.c) for aligned rows."""
    dx, dy, dw, dh = _xywh(d_box)
    gx, gy, gw, gh = _xywh(g_box)
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    union = np.where(crowd, dw * dh, dw * dh + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


def _rank_in_group(key, score):
    """0-based rank of each row by descending score (stable) within rows of equal key."""
    n = len(key)
    order = np.lexsort((np.arange(n), -score, key))
    k = key[order]
    start = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if n else np.zeros(0, np.int64)
    first = np.repeat(start, np.diff(np.r_[start, n]))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - first
    return rank


def _match(d_rows, rank, pairs, iou, g_ign, g_crowd, n_gt):
    """COCOeval.evaluateImg's greedy matching at every IoU threshold at once.

    Detections of equal rank belong to different (image, class) groups, so one step per rank
    treats all groups together; inside a step nothing competes for the same box.

    Returns ``dtm`` (T, D): matched ground-truth row or -1, and ``dt_ig`` (T, D)."""
    T = len(IOU_THRESHOLDS)
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]
    D = len(rank)
    dtm = np.full((T, D), -1, np.int64)
    dt_ig = np.zeros((T, D), bool)
    gtm = np.zeros((T, n_gt), bool)
    d_of_pair, g_of_pair, counts = pairs
    if not len(d_of_pair):
        return dtm, dt_ig
    # d_rows is sorted by rank, so each step's pairs are one contiguous slice
    r_of_pair = rank[d_rows[d_of_pair]]
    cuts = np.searchsorted(r_of_pair, np.arange(int(r_of_pair[-1]) + 2))
    det_start = np.cumsum(counts) - counts
    for r in range(len(cuts) - 1):
        a, b = cuts[r], cuts[r + 1]
        if a == b:
            continue
        js = np.unique(d_of_pair[a:b])  # detections of this rank with candidate boxes
        seg = det_start[js] - a
        cnt = counts[js]
        g = g_of_pair[a:b]
        ign = g_ign[g]
        valid = (~gtm[:, g] | g_crowd[g]) & (iou[a:b] >= thr)
        # a regular box wins over any ignored one; only without one do ignored boxes compete
        has_reg = np.logical_or.reduceat(valid & ~ign, seg, axis=1)
        sel = valid & (ign == ~np.repeat(has_reg, cnt, axis=1))
        val = np.where(sel, iou[a:b], -1.0)
        best = np.maximum.reduceat(val, seg, axis=1)
        cand = sel & (val == np.repeat(best, cnt, axis=1))
        last = np.maximum.reduceat(np.where(cand, np.arange(b - a), -1), seg, axis=1)
        t_i, j_i = np.nonzero(last >= 0)
        gm = g[last[t_i, j_i]]
        rows = d_rows[js[j_i]]
        dtm[t_i, rows] = gm
        dt_ig[t_i, rows] = g_ign[gm]
        gtm[t_i, gm] = True
    return dtm, dt_ig


def _interpolated_precision(tps, fps, n_pos):
    """COCOeval.accumulate for one class: (T, R) precision and (T,) recall."""
    T, nd = tps.shape
    R = len(RECALL_THRESHOLDS)
    tp_sum = np.cumsum(tps, axis=1).astype(float)
    fp_sum = np.cumsum(fps, axis=1).astype(float)
    rc = tp_sum / n_pos
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    recall = rc[:, -1] if nd else np.zeros(T)
    q = np.zeros((T, R))
    if nd:
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
        for t in range(T):
            inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
            ok = inds < nd
            q[t, ok] = pr[t, inds[ok]]
    return q, recall


def _mean_valid(a):
    a = np.asarray(a)
    ok = a > -1
    return float(np.mean(a[ok])) if ok.any() else float("nan")


def evaluate_tables(gt_t, dr_t, classes, gt_area=None, max_dets=MAX_DETS):
    """:func:`evaluate` on flat tables (eval.detection_io); ``gt_area`` per ground-truth row."""
    K = len(classes)
    if K and max(gt_t.labels.max(initial=-1), dr_t.labels.max(initial=-1)) >= K:
        raise ValueError(f"labels reach beyond the {K} classes {classes}")
    lo, hi = AREA_ALL
    g_img, d_img = gt_t.image_index, dr_t.image_index
    _, _, gw, gh = _xywh(gt_t.boxes)
    g_area = gw * gh if gt_area is None else np.asarray(gt_area, np.float64)
    g_crowd = gt_t.extra.astype(bool)
    g_ign = g_crowd | (g_area < lo) | (g_area > hi)
    _, _, dw, dh = _xywh(dr_t.boxes)
    d_area = dw * dh
    d_lab, score = dr_t.labels, dr_t.extra.astype(np.float64)
    n_key = max(K, 1)
    d_key = d_img * n_key + d_lab
    rank = _rank_in_group(d_key, score)

    # kept detections, ordered by rank so that _match takes one slice per rank
    kept = np.flatnonzero(rank < max_dets)
    d_rows = kept[np.lexsort((kept, rank[kept]))]
    g_key = g_img * n_key + gt_t.labels
    # per detection, candidate boxes regular first, then ignored (cocoeval's gtind order)
    g_order = np.lexsort((np.arange(len(g_key)), g_ign, g_key))
    pairs = group_pairs(g_key, d_key[d_rows], g_order)
    d_of_pair, g_of_pair, _ = pairs
    iou = _pair_iou(dr_t.boxes[d_rows[d_of_pair]], gt_t.boxes[g_of_pair], g_crowd[g_of_pair])
    dtm, dt_ig = _match(d_rows, rank, pairs, iou, g_ign, g_crowd, len(g_key))
    dt_ig |= (dtm < 0) & ((d_area < lo) | (d_area > hi))[None, :]

    img_pos = _sorted_positions(gt_t.ids)
    T, R = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
    precision = -np.ones((T, R, K))
    recall = -np.ones((T, K))
    per_class = {}
    for k, name in enumerate(classes):
        n_pos = int(np.sum(~g_ign & (gt_t.labels == k)))
        sel = kept[d_lab[kept] == k]
        # cocoeval: per-image lists in sorted image order, then a stable sort by score
        sel = sel[np.lexsort((rank[sel], img_pos[d_img[sel]], -score[sel]))]
        entry = {"n_pos": n_pos, "n_det": int(np.sum(d_lab == k)), "n_kept": int(len(sel))}
        if n_pos:
            ig = dt_ig[:, sel]
            q, rec = _interpolated_precision((dtm[:, sel] >= 0) & ~ig, (dtm[:, sel] < 0) & ~ig,
                                             n_pos)
            precision[:, :, k] = q
            recall[:, k] = rec
        entry.update(_summary(precision[:, :, k:k + 1], recall[:, k:k + 1]))
        entry["precision50"] = precision[0, :, k].copy() if n_pos else np.zeros(0)
        entry["recall_thresholds"] = RECALL_THRESHOLDS.copy() if n_pos else np.zeros(0)
        per_class[name] = entry
    # inverted boxes overlap nothing, so their fate is the same at every IoU threshold
    inv = inverted_boxes(dr_t.boxes)
    in_cap = np.zeros(len(inv), bool)
    in_cap[kept] = True
    return {"classes": list(classes), **_summary(precision, recall), "per_class": per_class,
            "precision": precision, "n_images": len(gt_t.ids), "max_dets": int(max_dets),
            "iou_thresholds": IOU_THRESHOLDS.tolist(),
            "ignored": dict(dr_t.notes["ignored"]),
            "inverted": {"n": int(inv.sum()), "fp": int(np.sum(inv & in_cap & ~dt_ig[0])),
                         "ignored": int(np.sum(inv & in_cap & dt_ig[0])),
                         "over_cap": int(np.sum(inv & ~in_cap)),
                         "first": dr_t.notes["first_inverted"]}}


def _summary(precision, recall):
    """summarize()'s AP, AP50, AP75, AR lines: means over entries > -1 (nan instead of -1)."""
    t50 = np.where(IOU_THRESHOLDS == .5)[0]
    t75 = np.where(IOU_THRESHOLDS == .75)[0]
    return {"ap": _mean_valid(precision), "ap50": _mean_valid(precision[t50]),
            "ap75": _mean_valid(precision[t75]), "ar": _mean_valid(recall)}
