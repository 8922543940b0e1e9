"""YOLOv3 anchors fitted to the training boxes at the input size.

GluonCV's ``yolo3_*_custom`` networks carry the COCO anchors of the YOLOv3 paper (10x13 ...
373x326 px, for 416 px inputs of everyday scenes). Lesions in a 128-256 px input are 5-60 px,
so most of them are matched to the two or three smallest COCO anchors and the network spends
its first iterations learning large log-scale offsets. Darknet's ``calc_anchors`` and
Ultralytics' autoanchor fit the anchors to the data instead: k-means on the boxes' widths and
heights with the distance ``1 - IoU`` of zero-centred boxes (the YOLOv2 paper, section
"Dimension Clusters"), the same IoU that assigns a box to its anchor in training.

numpy only. ``fit_anchors`` is tested against a per-box loop (tests/test_anchors.py).
:func:`choose_anchors` is the ``--anchors`` option of train_yolo3.py.
"""
import logging

import numpy as np

log = logging.getLogger(__name__)

#: GluonCV's anchors (width, height in input pixels), small to large: strides 8, 16, 32.
COCO_ANCHORS = np.array([[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119],
                         [116, 90], [156, 198], [373, 326]], dtype=np.float64)


def wh_iou(wh_a, wh_b):
    """IoU of zero-centred boxes: ``(N, 2)`` widths/heights against ``(K, 2)`` -> ``(N, K)``."""
    a = np.asarray(wh_a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(wh_b, dtype=np.float64).reshape(-1, 2)
    inter = np.minimum(a[:, None, 0], b[None, :, 0]) * np.minimum(a[:, None, 1], b[None, :, 1])
    union = a[:, None, 0] * a[:, None, 1] + b[None, :, 0] * b[None, :, 1] - inter
    return inter / np.maximum(union, 1e-12)


def boxes_at_input(boxes, image_sizes, data_shape):
    """Widths and heights of boxes after the train transform's resize to ``data_shape``.

    GluonCV's YOLOv3 transforms resize each image to a square input without keeping the
    aspect ratio, so a ``w x h`` box of a ``W x H`` image becomes ``w*S/W x h*S/H``.

    Parameters
    ----------
    boxes : list of ndarray
        Per image ``(N_i, 4)`` ``x1, y1, x2, y2`` pixels.
    image_sizes : list of (width, height)
    data_shape : int

    Returns
    -------
    ndarray, ``(sum N_i, 2)`` float64
    """
    out = [np.zeros((0, 2))]
    for b, (w, h) in zip(boxes, image_sizes):
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
        out.append(np.c_[(b[:, 2] - b[:, 0]) * data_shape / float(w),
                         (b[:, 3] - b[:, 1]) * data_shape / float(h)])
    return np.concatenate(out)


def fit_anchors(wh, n=9, seed=0, iters=300, min_size=2.0, n_init=8):
    """k-means with the ``1 - IoU`` distance on box widths and heights.

    Parameters
    ----------
    wh : array_like, ``(N, 2)``
        Box widths and heights in input pixels (``boxes_at_input``); sizes below
        ``min_size`` are raised to it.
    n : int
        Number of anchors (9 for YOLOv3: three per output layer).
    seed : int
        Seeds the k-means++ initialisations (the same seed gives the same anchors).
    iters : int
        Upper bound on Lloyd iterations per start; stops earlier when assignments settle.
    n_init : int
        Starts; the result with the highest mean best IoU wins (k-means stops in local
        optima, e.g. two centres on one cluster).

    Returns
    -------
    ndarray, ``(n, 2)`` float64
        Anchors sorted by area, small to large (the order ``set_anchors`` takes); each
        cluster centre is the median of its members (darknet and Ultralytics use the mean
        or median; the median is robust to a few outsized boxes).

    Raises
    ------
    ValueError
        Fewer boxes than anchors.
    """
    wh = np.maximum(np.asarray(wh, dtype=np.float64).reshape(-1, 2), min_size)
    if len(wh) < n:
        raise ValueError(f"fit_anchors: {len(wh)} boxes cannot make {n} anchors; give more "
                         f"training boxes or use the default anchors")
    rng = np.random.RandomState(seed)
    best, best_fit = None, -1.0
    for _ in range(max(1, n_init)):
        centres = _lloyd(wh, _kmeanspp(wh, n, rng), iters)
        fit = wh_iou(wh, centres).max(axis=1).mean()
        if fit > best_fit:
            best, best_fit = centres, fit
    return best[np.argsort(best.prod(axis=1), kind="stable")]


def _kmeanspp(wh, n, rng):
    """k-means++ seeding with the IoU distance: spread the first centres over the sizes."""
    centres = [wh[rng.randint(len(wh))]]
    for _ in range(1, n):
        p = (1.0 - wh_iou(wh, np.array(centres)).max(axis=1)) ** 2
        total = p.sum()
        centres.append(wh[rng.randint(len(wh)) if total <= 0 else
                          rng.choice(len(wh), p=p / total)])
    return np.array(centres)


def _lloyd(wh, centres, iters):
    centres = centres.copy()
    assign = None
    for _ in range(iters):
        new = np.argmax(wh_iou(wh, centres), axis=1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for k in range(len(centres)):
            members = wh[assign == k]
            if len(members):
                centres[k] = np.median(members, axis=0)
    return centres


def anchor_fitness(wh, anchors, ratio_threshold=4.0):
    """How well ``anchors`` cover boxes ``wh``.

    Returns ``mean_best_iou`` (the IoU GluonCV's target generator assigns by) and
    ``best_possible_recall``, Ultralytics' autoanchor metric: the share of boxes whose
    width and height are both within a factor ``ratio_threshold`` of some anchor's.
    """
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    if not len(wh):
        return {"mean_best_iou": float("nan"), "best_possible_recall": float("nan")}
    r = wh[:, None, :] / anchors[None, :, :]
    worst_side = np.minimum(r, 1.0 / r).min(axis=2)
    return {"mean_best_iou": float(wh_iou(wh, anchors).max(axis=1).mean()),
            "best_possible_recall": float((worst_side.max(axis=1) > 1.0 / ratio_threshold)
                                          .mean())}


def check_anchors(wh, anchors=COCO_ANCHORS, min_recall=0.98, seed=0):
    """Ultralytics' autoanchor rule: keep ``anchors`` unless they cover fewer than
    ``min_recall`` of the boxes (ratio rule of :func:`anchor_fitness`); then fit new ones.

    Fitting is the exception, not the default: GluonCV assigns each box to ONE anchor over
    all three output layers, and anchors fitted to a narrow size range (lesions of 7-21 px at
    a 128 px input) interleave across the strides, so neighbouring sizes land on different
    layers and the objectness barely learns (measured: fold mAP 0.001 against 0.37 with
    GluonCV's anchors after 770 iterations). Ultralytics can fit freely because it assigns a
    box to every anchor within the ratio.

    Returns
    -------
    (anchors or None, dict)
        The fitted anchors, or None to keep ``anchors``; the fitness of the kept ones.
    """
    fit = anchor_fitness(wh, anchors)
    if not len(wh) or fit["best_possible_recall"] >= min_recall:
        return None, fit
    new = fit_anchors(wh, len(np.asarray(anchors).reshape(-1, 2)), seed=seed)
    return new, anchor_fitness(wh, new)


def layers(anchors):
    """Anchors ``(9, 2)`` small to large -> GluonCV's per-layer lists ``[[w, h, w, h, w, h],
    ...]`` small to large (strides 8, 16, 32)."""
    a = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    if len(a) % 3:
        raise ValueError(f"want a multiple of 3 anchors (3 output layers), got {len(a)}")
    per = len(a) // 3
    return [a[i * per:(i + 1) * per].ravel().tolist() for i in range(3)]


def parse_anchors(text):
    """``--anchors`` as 9 ``WxH`` pairs (``10x13,16x30,...``) -> ``[[w, h], ...]``."""
    try:
        pairs = [[float(v) for v in item.lower().split("x")] for item in text.split(",")]
        if len(pairs) != 9 or any(len(wh) != 2 or min(wh) <= 0 for wh in pairs):
            raise ValueError
    except ValueError:
        raise ValueError(f"--anchors wants 'auto', 'coco' or 9 positive 'WxH' pairs separated by "
                         f"commas (e.g. 10x13,16x30,...), got {text!r}") from None
    return pairs


def choose_anchors(spec, wh, data_shape):
    """The anchors of a model trained on boxes ``wh``, by ``--anchors`` ``spec``.

    Parameters
    ----------
    spec : str
        'auto' (GluonCV's unless :func:`check_anchors` refits them), 'fit' (k-means always),
        'coco' (GluonCV's) or 9 'WxH' pairs.
    wh : np.ndarray
        ``(N, 2)`` training box sizes at the input size (:func:`boxes_at_input`).
    data_shape : int
        The input size (for the log).

    Returns
    -------
    list or None
        ``(9, 2)`` anchors small to large, rounded to 0.01 px; None keeps the network's.
    """
    if spec == "coco":
        return None
    if spec not in ("auto", "fit"):
        return parse_anchors(spec)
    if len(wh) < 9:
        log.warning("%d training boxes: too few to fit 9 anchors, keeping GluonCV's", len(wh))
        return None
    if spec == "fit":
        return fit_anchors(wh, 9, seed=0).round(2).tolist()
    fitted, _ = check_anchors(wh)
    log.info("anchors: GluonCV's cover %.3f of the training boxes at %d px (ratio 4)%s",
             anchor_fitness(wh, COCO_ANCHORS)["best_possible_recall"], data_shape,
             "; refitted" if fitted is not None else "; kept")
    return None if fitted is None else fitted.round(2).tolist()
