"""Detection metrics: box IoU, greedy matching, VOC07 11-point and VOC10+ all-point AP, mAP.

Conventions (checked against GluonCV and the VOC devkit in tests/test_eval_detection.py):

- Boxes are ``[x1, y1, x2, y2]`` pixels. ``offset=1`` adds 1 to widths and heights, the VOC
  devkit's integer-pixel convention, used by the Cartucho/mAP tool and also by GluonCV's
  ``VOCMApMetric``/``VOC07MApMetric`` (they add 1 to ``x2, y2`` before ``bbox_iou``,
  gluoncv/utils/metrics/voc_detection.py). ``offset=0`` is the plain continuous IoU. Every
  function that matches boxes takes ``offset`` as a required keyword: the two conventions give
  different numbers, so the caller says which it uses.
- Per image and class, detections are matched in descending score order; each picks the
  ground-truth box of highest IoU (first one on ties) whether or not it is taken; IoU >=
  ``iou`` and box free -> TP, taken -> FP, IoU below -> FP; best box difficult -> ignored
  (neither TP nor FP). Difficult boxes do not count as positives. Cartucho's main.py does the
  same (``ov > ovmax`` keeps the first best box, ``ovmax >= min_overlap`` matches; a matched
  difficult box leaves tp and fp at 0), as do the devkit and GluonCV (``not < iou_thresh``).
- Equal scores: ``ties="stable"`` ranks them in input order (images in order, then
  detections in order), as the Cartucho tool's stable sort does; ``ties="gluoncv"`` reproduces
  ``VOCMApMetric``'s numpy ``argsort()[::-1]`` orders (per image, then over all images).
- A class without non-difficult ground truth has AP ``nan`` and is left out of the mAP.
- Inverted detection boxes (``x2 < x1`` or ``y2 < y1``) are scored with the peers' arithmetic
  and counted (``result["inverted"]``): they overlap nothing, so they are false positives --
  except with ``offset=1`` for a box inverted by less than a pixel, which the ``+ 1`` turns
  into a valid box narrower than a pixel, as in Cartucho and GluonCV. One divergence, kept on
  purpose: GluonCV's ``bbox_iou`` divides 0 by 0 when an inverted box's negative area cancels
  a ground-truth box's, and ``VOCMApMetric`` counts that NaN as a match; Cartucho and we see no
  overlap. Inverted ground truth is an error (eval/detection_io.py).
- Detections of classes outside the class list were dropped by the readers and are counted
  in ``result["ignored"]``; COCO's AP is in eval/coco.py.

Command line (inputs told apart by content, see eval/inputs.py)::

    python -m eval.detection --gt GT --dr DR [--metric voc12|voc07|coco] [--iou 0.5]
        [--offset 0|1] [--ties stable|gluoncv] [--classes a,b] [--json OUT] [--plots DIR]

``GT``: a Cartucho ``ground-truth/`` folder, a folder of VOC XML or a COCO instances JSON;
``DR``: a Cartucho ``detection-results/`` folder, a detections JSON (docs/CONTRACTS.md) or a
COCO results JSON list. Prints ``CLASS: XX.XX%`` per class and, last, ``mAP = XX.XX%``; with
``--metric coco`` the class lines hold AP@[.5:.95], then ``AP50: XX.XX%``, ``AP75: XX.XX%``
and, last, ``mAP@[.5:.95] = XX.XX%``. ``--offset`` defaults to 1 (Cartucho's convention) for
voc12/voc07; coco is always continuous. What was ignored or let through goes to stderr, one
``warning: ...`` line each. numpy only (no MXNet).
"""
import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from eval.pairs import group_pairs
from eval.detection_io import (  # noqa: F401  (re-exported: docs/CONTRACTS.md names them here)
    FormatError, read_cartucho, read_cartucho_detections, read_detections_json, read_voc_dir, read_voc_xml,
    table_from_detections, table_from_ground_truth, write_cartucho, write_detections_json,
    ignored_message, inverted_boxes, tables_from_dicts, _read_cartucho_tables)
from eval.inputs import load_inputs

log = logging.getLogger(__name__)

METRICS = ("voc12", "voc07")
TIES = ("stable", "gluoncv")
# numpy's quicksort (argsort's default) runs insertion sort, which is stable, below 17
# elements (numpy/core/src/npysort/quicksort.cpp, SMALL_QUICKSORT); longer runs need the call.
_NUMPY_STABLE_BELOW = 17


# --------------------------------------------------------------------------- IoU
def box_iou(boxes_a, boxes_b, *, offset):
    """IoU of every box of ``boxes_a`` with every box of ``boxes_b``.

    Parameters
    ----------
    boxes_a : array_like, shape (N, 4)
    boxes_b : array_like, shape (M, 4)
        ``[x1, y1, x2, y2]`` pixels.
    offset : {0, 1}
        Added to widths and heights (1: VOC devkit / GluonCV VOC metrics; 0: continuous).
        Required: the two conventions give different numbers and neither is a safe default.

    Returns
    -------
    ndarray, shape (N, M), float64
        IoU in [0, 1]; pairs whose union is empty or negative (zero-area or inverted boxes)
        get 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ia, ib = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij")
    return _pair_iou(a[ia.ravel()], b[ib.ravel()], offset).reshape(len(a), len(b))


def _pair_iou(a, b, offset):
    """IoU of aligned rows of ``a`` and ``b``. The arithmetic follows gluoncv.utils.bbox_iou
    on boxes whose x2, y2 were shifted by ``offset`` first, so values agree bit for bit."""
    ax2, ay2 = a[:, 2] + offset, a[:, 3] + offset
    bx2, by2 = b[:, 2] + offset, b[:, 3] + offset
    iw = np.minimum(ax2, bx2) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(ay2, by2) - np.maximum(a[:, 1], b[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = (ax2 - a[:, 0]) * (ay2 - a[:, 1]) + (bx2 - b[:, 0]) * (by2 - b[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where(union > 0, iou, 0.0)


# --------------------------------------------------------------------------- matching
def _check_options(iou, offset, ties):
    if not 0 < float(iou) <= 1:
        raise ValueError(f"iou threshold must be in (0, 1], got {iou}")
    if offset not in (0, 1):
        raise ValueError(f"offset must be 0 or 1 (pixels added to widths/heights), got {offset}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")


def _processing_rank(d_img, d_lab, d_score, ties):
    """Rank of each detection in matching order; within one (image, class) group, lower rank is
    matched first. Rows must be in input order (image, then detection index)."""
    n = len(d_score)
    idx = np.arange(n)
    if ties == "stable":
        order = np.lexsort((idx, -d_score, d_lab, d_img))
    else:
        # argsort()[::-1] of a stable ascending sort puts later equal scores first.
        order = np.lexsort((-idx, -d_score, d_lab, d_img))
        key = d_img * (int(d_lab.max()) + 1 if n else 1) + d_lab
        ks = key[order]
        bounds = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1], True])
        for s, e in zip(bounds[:-1], bounds[1:]):
            if e - s >= _NUMPY_STABLE_BELOW:  # non-stable introsort: ask numpy itself
                members = np.sort(order[s:e])  # input order, as GluonCV sees them
                order[s:e] = members[np.argsort(d_score[members])[::-1]]
    rank = np.empty(n, np.int64)
    rank[order] = idx
    return rank


def _match_tables(gt_t, dr_t, iou, offset, ties):
    """Match flags of every detection row: 1 TP, 0 FP, -1 ignored (best box difficult).

    Returns (flags, rank, best_iou)."""
    _check_options(iou, offset, ties)
    g_img, d_img = gt_t.image_index, dr_t.image_index
    n_lab = int(max(gt_t.labels.max(initial=-1), dr_t.labels.max(initial=-1))) + 1
    g_key = g_img * n_lab + gt_t.labels
    d_key = d_img * n_lab + dr_t.labels
    D = len(d_key)
    rank = _processing_rank(d_img, dr_t.labels, dr_t.extra, ties)

    d_of_pair, g_of_pair, counts = group_pairs(g_key, d_key)
    P = len(d_of_pair)
    best = np.full(D, -1, np.int64)
    best_iou = np.zeros(D)
    if P:
        seg = np.cumsum(counts) - counts
        off = np.arange(P) - np.repeat(seg, counts)
        ious = _pair_iou(dr_t.boxes[d_of_pair], gt_t.boxes[g_of_pair], offset)
        has = counts > 0
        seg_nz = seg[has]
        mx = np.maximum.reduceat(ious, seg_nz)
        # first box reaching the maximum, in ground-truth input order (np.argmax's choice)
        first = np.minimum.reduceat(np.where(ious == np.repeat(mx, counts[has]), off, P), seg_nz)
        best[has] = g_of_pair[seg_nz + first]
        best_iou[has] = mx
    matched = np.where(best_iou >= iou, best, -1)
    flags = np.zeros(D, np.int8)
    hit = matched >= 0
    diff = np.zeros(D, bool)
    diff[hit] = gt_t.extra[matched[hit]]
    flags[diff] = -1
    cand = np.flatnonzero(hit & ~diff)
    if len(cand):
        o = np.lexsort((rank[cand], matched[cand]))
        g = matched[cand][o]
        first = np.r_[True, g[1:] != g[:-1]]
        flags[cand[o[first]]] = 1
    return flags, rank, best_iou


def match_detections(gt, det, iou=0.5, *, offset, ties="stable"):
    """Greedy VOC matching; one flag per detection, aligned with ``det[id]["scores"]``.

    Parameters
    ----------
    gt : dict
        ``{id: {"boxes": (N, 4), "labels": (N,) int, "difficult": (N,) bool (optional)}}``.
    det : dict
        ``{id: {"boxes": (M, 4), "scores": (M,), "labels": (M,) int}}``; ids must be in ``gt``
        (a missing id has no detections).
    iou : float
        Minimum IoU for a true positive (``>=``).
    offset : {0, 1}
        Required keyword; see :func:`box_iou`.
    ties : {"stable", "gluoncv"}
        Order of equal scores (module docstring).

    Returns
    -------
    dict
        ``{id: (M,) int8}``: 1 true positive, 0 false positive, -1 ignored (matched a
        difficult box), for every id of ``det``.
    """
    gt_t = table_from_ground_truth(gt)
    dr_t = table_from_detections(det, list(gt))
    flags = _match_tables(gt_t, dr_t, iou, offset, ties)[0]
    parts = np.split(flags, np.cumsum(dr_t.counts)[:-1])
    return {i: f for i, f in zip(dr_t.ids, parts) if i in det}


# --------------------------------------------------------------------------- AP
def average_precision(recall, precision, metric="voc12"):
    """Area under a detection PR curve.

    Parameters
    ----------
    recall, precision : array_like
        Cumulative values over detections sorted by descending score.
    metric : {"voc12", "voc07"}
        ``voc12``: all-point interpolation (VOC2010+); ``voc07``: 11-point (VOC2007). Both
        use GluonCV's expressions, so results agree bit for bit.

    Returns
    -------
    float
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.nan_to_num(np.asarray(precision, dtype=np.float64))
    if metric == "voc12":
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        i = np.where(mrec[1:] != mrec[:-1])[0]
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    if metric == "voc07":
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = rec >= t
            ap += (np.max(prec[above]) if above.any() else 0) / 11.0
        return float(ap)
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _evaluate_tables(gt_t, dr_t, classes, iou, offset, ties):
    flags, rank, _ = _match_tables(gt_t, dr_t, iou, offset, ties)
    n_cls = len(classes)
    if n_cls and max(gt_t.labels.max(initial=-1), dr_t.labels.max(initial=-1)) >= n_cls:
        raise ValueError(f"labels reach beyond the {n_cls} classes {classes}")
    scores = dr_t.extra
    per_class = {}
    for c, name in enumerate(classes):
        n_pos = int(np.sum((gt_t.labels == c) & ~gt_t.extra))
        sel = np.flatnonzero(dr_t.labels == c)
        if ties == "stable":
            ordered = sel[np.argsort(-scores[sel], kind="stable")]
        else:
            # GluonCV appends each image's matches in its per-image order, then argsorts all.
            conc = sel[np.argsort(rank[sel], kind="stable")]
            ordered = conc[np.argsort(scores[conc])[::-1]]
        m = flags[ordered]
        keep = m >= 0
        m = m[keep]
        tp = np.cumsum(m == 1)
        fp = np.cumsum(m == 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = tp / (fp + tp)
            recall = tp / n_pos if n_pos else np.full(len(tp), np.nan)
        n_tp = int(tp[-1]) if len(tp) else 0
        n_fp = int(fp[-1]) if len(fp) else 0
        per_class[name] = {
            "n_pos": n_pos, "n_det": int(len(sel)), "n_ignored": int(np.sum(~keep)),
            "tp": n_tp, "fp": n_fp, "fn": n_pos - n_tp,
            "ap_voc12": average_precision(recall, precision, "voc12") if n_pos else float("nan"),
            "ap_voc07": average_precision(recall, precision, "voc07") if n_pos else float("nan"),
            "precision": precision, "recall": recall, "scores": scores[ordered][keep],
        }
    inv = inverted_boxes(dr_t.boxes)
    result = {"classes": list(classes), "iou": float(iou), "offset": int(offset), "ties": ties,
              "n_images": len(gt_t.ids), "per_class": per_class,
              "ignored": dict(dr_t.notes["ignored"]),
              "inverted": {"n": int(inv.sum()), "tp": int(np.sum(flags[inv] == 1)),
                           "fp": int(np.sum(flags[inv] == 0)),
                           "ignored": int(np.sum(flags[inv] == -1)),
                           "first": dr_t.notes["first_inverted"]}}
    for metric in METRICS:
        aps = np.array([v[f"ap_{metric}"] for v in per_class.values()], dtype=np.float64)
        ok = ~np.isnan(aps)
        result[f"map_{metric}"] = float(np.mean(aps[ok])) if ok.any() else float("nan")
    if not any(v["n_pos"] for v in per_class.values()):
        log.warning("no non-difficult ground-truth box in %d images: mAP is undefined (nan)",
                    len(gt_t.ids))
    return result


def evaluate(gt, det, classes=None, iou=0.5, *, offset, ties="stable"):
    """Per-class AP (VOC07 and VOC12), mAP, PR curves and TP/FP/FN counts.

    Parameters
    ----------
    gt, det : dict
        See :func:`match_detections`. Images are taken in ``gt``'s order.
    classes : list of str, optional
        Names of the label indices; default ``["0", "1", ...]`` up to the largest label.
    iou, offset, ties
        See :func:`match_detections`.

    Returns
    -------
    dict
        ``map_voc12``, ``map_voc07`` (mean over classes with positives; nan if none),
        ``per_class[name]`` = ``{ap_voc12, ap_voc07, n_pos, n_det, n_ignored, tp, fp, fn,
        precision, recall, scores}`` (curves as arrays over the non-ignored detections in
        ranked order; counts at the lowest score), ``inverted`` (``{n, tp, fp, ignored,
        first}``: the inverted detection boxes and what they scored), ``ignored`` (detections
        dropped by a reader, ``{class: count}``; empty here) and the settings used.
    """
    gt_t, dr_t, classes = tables_from_dicts(gt, det, classes)
    return _evaluate_tables(gt_t, dr_t, classes, iou, offset, ties)


def result_summary(result):
    """A result of :func:`evaluate` (or :func:`eval.coco.evaluate`) without its arrays (the
    curves), NaN as None: plain values for strict JSON."""
    def plain(v):
        return None if isinstance(v, float) and np.isnan(v) else v
    out = {k: plain(v) for k, v in result.items()
           if k != "per_class" and not isinstance(v, np.ndarray)}
    out["per_class"] = {name: {k: plain(v) for k, v in d.items() if not isinstance(v, np.ndarray)}
                        for name, d in result["per_class"].items()}
    return out


# --------------------------------------------------------------------------- operating points
def _pooled(gt, det, iou, offset):
    gt_t = table_from_ground_truth(gt)
    dr_t = table_from_detections(det, list(gt))
    flags = _match_tables(gt_t, dr_t, iou, offset, "stable")[0]
    n_pos = int(np.sum(~gt_t.extra))
    keep = flags >= 0
    return dr_t.extra[keep], flags[keep] == 1, n_pos, len(gt_t.ids)


def _prf(tp, fp, n_pos):
    fn = n_pos - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_pos if n_pos else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0
    return fn, float(precision), float(recall), float(f1)


def operating_point(gt, det, score_threshold, iou=0.5, *, offset):
    """Counts and rates of the detections scoring ``>= score_threshold``, all classes pooled.

    Matching is the same greedy matching as the AP (it does not depend on lower-scored
    detections, so thresholding afterwards is exact); detections matched to difficult boxes
    are ignored.

    Parameters
    ----------
    gt, det : dict
        See :func:`match_detections`.
    score_threshold : float
        Keep detections with ``score >= score_threshold`` (any score range).
    iou, offset
        See :func:`match_detections`.

    Returns
    -------
    dict
        ``tp, fp, fn, precision, recall, f1, fp_per_image, n_images, n_pos, score_threshold``;
        a ratio with a zero denominator is 0.0.
    """
    scores, is_tp, n_pos, n_img = _pooled(gt, det, iou, offset)
    sel = scores >= score_threshold
    return _counts(int(np.sum(is_tp & sel)), int(np.sum(~is_tp & sel)), n_pos, n_img,
                   score_threshold)


def _counts(tp, fp, n_pos, n_img, score_threshold):
    """:func:`operating_point`'s dict from the pooled counts at ``score_threshold``."""
    fn, p, r, f1 = _prf(tp, fp, n_pos)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f1,
            "fp_per_image": fp / n_img if n_img else 0.0, "n_images": n_img, "n_pos": n_pos,
            "score_threshold": float(score_threshold)}


def best_fbeta_threshold(gt, det, beta=1.0, iou=0.5, *, offset):
    """Score threshold (one of the detection scores) maximising pooled F-beta.

    ``beta`` > 1 weighs recall ``beta`` times as much as precision: F2 is the usual choice for
    the first stage of a cascade, whose misses nothing later can recover while a second
    stage removes its false positives.

    Returns
    -------
    dict
        :func:`operating_point`'s keys at the best threshold, plus ``beta`` and ``fbeta``;
        on equal F-beta the highest threshold (fewest detections) wins.

    Raises
    ------
    ValueError
        No non-difficult ground-truth box or no detection: F-beta is 0 at every threshold;
        or ``beta`` is not positive.
    """
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")
    scores, is_tp, n_pos, n_img = _pooled(gt, det, iou, offset)
    if n_pos == 0 or len(scores) == 0:
        raise ValueError(f"best F{beta:g} threshold undefined: {n_pos} positive box(es) and "
                         f"{len(scores)} scored detection(s) in {n_img} images")
    o = np.argsort(-scores, kind="stable")
    s = scores[o]
    tp = np.cumsum(is_tp[o])
    fp = np.cumsum(~is_tp[o])
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # all detections of a score included
    b2 = float(beta) ** 2
    # (1 + b2) tp / ((1 + b2) tp + b2 fn + fp), with fn = n_pos - tp
    fbeta = (1 + b2) * tp[last] / (tp[last] + fp[last] + b2 * n_pos)
    k = last[int(np.argmax(fbeta))]
    # the counts at s[k] are the cumulative ones (every detection scoring >= s[k] is in
    # o[:k + 1]), so the matching is not run a second time through operating_point
    out = _counts(int(tp[k]), int(fp[k]), n_pos, n_img, float(s[k]))
    out.update(beta=float(beta), fbeta=float(np.max(fbeta)))
    return out


def best_f1_threshold(gt, det, iou=0.5, *, offset):
    """:func:`best_fbeta_threshold` at ``beta`` = 1: the threshold maximising pooled F1."""
    out = best_fbeta_threshold(gt, det, 1.0, iou, offset=offset)
    del out["beta"], out["fbeta"]
    return out


# --------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m eval.detection", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--gt", required=True,
                   help="ground truth: Cartucho 'ground-truth' folder of NAME.txt, a folder of "
                        "VOC NAME.xml, or a COCO instances .json")
    p.add_argument("--dr", required=True,
                   help="detections: Cartucho 'detection-results' folder of NAME.txt, a "
                        "detections .json (docs/CONTRACTS.md) or a COCO results .json list "
                        "(told apart by content; COCO results need COCO instances --gt)")
    p.add_argument("--metric", choices=METRICS + ("coco",), default="voc12",
                   help="voc12: all-point AP per class (VOC2010+); voc07: 11-point; coco: "
                        "pycocotools' AP@[.5:.95] per class, then AP50, AP75 "
                        "(default: %(default)s)")
    p.add_argument("--iou", type=float, default=None,
                   help="IoU for a match, voc12/voc07 (default: 0.5; coco averages 0.50:0.95)")
    p.add_argument("--offset", type=int, choices=(0, 1), default=None,
                   help="pixels added to widths/heights, voc12/voc07: 1 = VOC devkit, "
                        "Cartucho/mAP and GluonCV VOCMApMetric; 0 = continuous (default: 1; "
                        "coco is always continuous, 0)")
    p.add_argument("--ties", choices=TIES, default=None,
                   help="order of equal scores, voc12/voc07: stable (input order, as "
                        "Cartucho/mAP) or gluoncv (as VOCMApMetric) (default: stable; coco "
                        "sorts as pycocotools, stable)")
    p.add_argument("--classes", default=None,
                   help="comma-separated class names (index order) for Cartucho/VOC ground "
                        "truth; default: the names in the ground truth. Detections of other "
                        "classes are ignored and counted")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    p.add_argument("--plots", default=None, metavar="DIR", help="write PR curves (PNG) here")
    return p.parse_args(argv)


def _settings(args):
    """(iou, offset, ties) for the metric; options that do not apply to COCO are refused."""
    if args.metric == "coco":
        wrong = [f"--{k} {v}" for k, v, ok in (("iou", args.iou, None), ("offset", args.offset, 0),
                                               ("ties", args.ties, "stable"))
                 if v is not None and v != ok]
        if wrong:
            raise ValueError(f"--metric coco fixes IoU 0.50:0.95, continuous boxes (offset 0) "
                             f"and stable ties as pycocotools does; drop {' '.join(wrong)}")
        return None, 0, "stable"
    return (0.5 if args.iou is None else args.iou, 1 if args.offset is None else args.offset,
            args.ties or "stable")


def _pct(v):
    return "n/a (no ground truth)" if np.isnan(v) else f"{100 * v:.2f}%"


def format_lines(result, metric="voc12"):
    """The CLI's output lines: ``CLASS: XX.XX%`` per class, then ``mAP = XX.XX%``; with
    ``metric="coco"`` (a result of :func:`eval.coco.evaluate`) the class lines hold
    AP@[.5:.95], then ``AP50: XX.XX%``, ``AP75: XX.XX%`` and ``mAP@[.5:.95] = XX.XX%``."""
    if metric == "coco":
        lines = [f"{name}: {_pct(d['ap'])}" for name, d in result["per_class"].items()]
        return lines + [f"AP50: {_pct(result['ap50'])}", f"AP75: {_pct(result['ap75'])}",
                        f"mAP@[.5:.95] = {_pct(result['ap'])}"]
    lines = [f"{name}: {_pct(d[f'ap_{metric}'])}" for name, d in result["per_class"].items()]
    lines.append(f"mAP = {_pct(result[f'map_{metric}'])}")
    return lines


def warning_lines(result, metric="voc12"):
    """What the score let through or left out, one line each: detections of classes without
    ground truth (dropped) and inverted detection boxes (scored as the peers score them)."""
    lines = [ignored_message(result["ignored"])]
    inv = result["inverted"]
    if inv["n"]:
        if metric == "coco":
            peer = "pycocotools does"
            parts = (("false positive(s)", inv["fp"]),
                     ("ignored (negative area: inverted on one axis)", inv["ignored"]),
                     (f"not scored (past {result['max_dets']} per image)", inv["over_cap"]))
        else:
            peer = "Cartucho/mAP and GluonCV do"
            # tp > 0 only with offset 1 and boxes inverted by less than a pixel, which the
            # peers' +1 arithmetic turns into tiny valid boxes
            parts = (("false positive(s)", inv["fp"]), ("true positive(s)", inv["tp"]),
                     ("ignored (on difficult boxes)", inv["ignored"]))
        outcome = ", ".join(f"{n} {what}" for what, n in parts if n)
        lines.append(f"{inv['n']} inverted detection box(es) (x2 < x1 or y2 < y1; first: "
                     f"{inv['first']}) scored as {peer}: {outcome}")
    return [line for line in lines if line]


def _curves(result, metric):
    from eval import plots
    if metric != "coco":
        return plots.detection_pr_curves(result, metric), f"{metric}, IoU {result['iou']:g}"
    curves = [{"label": name, "recall": d["recall_thresholds"], "precision": d["precision50"],
               "ap": d["ap50"]} for name, d in result["per_class"].items() if d["n_pos"]]
    return curves, "COCO 101-point interpolated, IoU 0.50"


def main(args):
    """Score a ground-truth / detections pair (eval/inputs.py); print per-class AP, the mAP last.

    Returns
    -------
    dict
        :func:`result_summary` of the evaluation plus ``metric``, ``gt``, ``dr``.
    """
    iou, offset, ties = _settings(args)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    gt_t, dr_t, classes, gt_area = load_inputs(args.gt, args.dr, classes)
    if args.metric == "coco":
        from eval import coco
        result = coco.evaluate_tables(gt_t, dr_t, classes, gt_area)
    else:
        result = _evaluate_tables(gt_t, dr_t, classes, iou, offset, ties)
    summary = {**result_summary(result), "metric": args.metric, "gt": str(args.gt),
               "dr": str(args.dr)}
    if args.json:
        from infra.atomic import atomic_write_json
        atomic_write_json(args.json, summary)
    if args.plots:
        from eval import plots
        curves, what = _curves(result, args.metric)
        plots.plot_pr_curves(curves, Path(args.plots) / f"pr_{args.metric}.png",
                             title=f"PR curves ({what})")
    # This is the command's output (the module functions above never print).
    for line in warning_lines(result, args.metric):
        sys.stderr.write(f"warning: {line}\n")
    sys.stdout.write("\n".join(format_lines(result, args.metric)) + "\n")
    return summary


if __name__ == "__main__":
    try:
        main(parse_args())
    except (FormatError, FileNotFoundError, FileExistsError, ValueError) as e:
        sys.exit(f"error: {e}")
