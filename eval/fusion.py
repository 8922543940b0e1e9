"""Weighted box fusion (WBF) of several detectors' boxes: the k-fold ensemble's predictions.

The detector's operating threshold is chosen on out-of-fold detections, each made by one
fold model. A final model retrained on all training ids scores on another scale (it trains
longer on more images), so the threshold no longer means what it meant. The ensemble of the
fold models keeps the scale: WBF (Solovyev, Wang and Gabruseva, "Weighted boxes fusion",
2021; ZFTurbo's ``ensemble_boxes``) averages the scores of the boxes it fuses and scales the
average by the share of models that voted, so a lesion all k models find keeps about the
score one model gave it, and a box only one model proposes drops to 1/k of its score.

Per image and class: boxes of all models in descending score order; each joins the fused box
of the same class it overlaps most, if that IoU exceeds ``iou_thr`` (continuous IoU, as
``ensemble_boxes``), else starts a new one. A fused box is the score-weighted mean of its
members' corners; its score is the mean member score times ``min(n_models, n_members) /
n_models``. Equal to ``ensemble_boxes.weighted_boxes_fusion(conf_type="avg")`` on normalised
boxes (tests/test_fusion.py). numpy only.
"""
import numpy as np


def _iou_one(boxes, box):
    iw = np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0])
    ih = np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    union = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
             + (box[2] - box[0]) * (box[3] - box[1]) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def weighted_boxes_fusion(boxes_list, scores_list, labels_list, iou_thr=0.55, skip_box_thr=0.0):
    """Fuse the boxes of ``len(boxes_list)`` models on one image.

    Parameters
    ----------
    boxes_list : list of array_like ``(M_i, 4)``
        ``x1, y1, x2, y2`` of each model (any unit; pixels here).
    scores_list, labels_list : list of array_like ``(M_i,)``
    iou_thr : float
        A box joins a fused box when their IoU is strictly above this.
    skip_box_thr : float
        Boxes scoring below this are dropped first.

    Returns
    -------
    boxes ``(F, 4)`` float64, scores ``(F,)`` float64, labels ``(F,)`` int64
        Sorted by descending score. Zero-area boxes are dropped (they cannot overlap).
    """
    n_models = len(boxes_list)
    rows = []
    for b, s, lab in zip(boxes_list, scores_list, labels_list):
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
        s = np.asarray(s, dtype=np.float64).ravel()
        lab = np.asarray(lab).astype(np.int64).ravel()
        if not len(b) == len(s) == len(lab):
            raise ValueError(f"weighted_boxes_fusion: {len(b)} boxes, {len(s)} scores and "
                             f"{len(lab)} labels from one model; want equal counts")
        # corners in order, as ensemble_boxes does before fusing
        b = np.c_[np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                  np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])]
        keep = (s >= skip_box_thr) & ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) > 0)
        rows.append((b[keep], s[keep], lab[keep]))
    all_boxes = np.concatenate([r[0] for r in rows]) if rows else np.zeros((0, 4))
    all_scores = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0)
    all_labels = np.concatenate([r[2] for r in rows]) if rows else np.zeros(0, np.int64)
    out_b, out_s, out_l = [], [], []
    for label in np.unique(all_labels):
        sel = np.flatnonzero(all_labels == label)
        # descending score; ties in input order reversed, as numpy's argsort()[::-1]
        sel = sel[np.argsort(all_scores[sel])[::-1]]
        fused = np.zeros((0, 4))
        members = []  # per fused box: (sum of score * corners, sum of scores, count)
        for i in sel:
            box, score = all_boxes[i], all_scores[i]
            k = -1
            if len(fused):
                ious = _iou_one(fused, box)
                k = int(np.argmax(ious))
                if ious[k] <= iou_thr:
                    k = -1
            if k < 0:
                members.append([score * box, score, 1])
                fused = np.vstack([fused, box])
            else:
                m = members[k]
                m[0] = m[0] + score * box
                m[1] += score
                m[2] += 1
                fused[k] = m[0] / m[1]
        for (wsum, ssum, count), box in zip(members, fused):
            out_b.append(box)
            out_s.append(ssum / count * min(n_models, count) / n_models)
            out_l.append(label)
    if not out_b:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
    boxes, scores, labels = np.array(out_b), np.array(out_s), np.array(out_l, np.int64)
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order], labels[order]


def fuse_detections(dets_list, iou_thr=0.55, skip_box_thr=0.0, top_k=None):
    """Fuse the detections dicts of several models image by image.

    Parameters
    ----------
    dets_list : list of dict
        One ``{id: {"boxes", "scores", "labels"}}`` per model (``eval.detection`` layout);
        an id missing from a model means that model found nothing there.
    iou_thr, skip_box_thr
        See :func:`weighted_boxes_fusion`.
    top_k : int, optional
        Keep at most this many fused boxes per image (highest scores).

    Returns
    -------
    dict
        ``{id: {"boxes", "scores", "labels"}}`` for every id of any model.
    """
    ids = []
    for d in dets_list:
        ids += [i for i in d if i not in ids]
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64)}
    out = {}
    for i in ids:
        parts = [d.get(i, empty) for d in dets_list]
        b, s, lab = weighted_boxes_fusion([p["boxes"] for p in parts],
                                          [p["scores"] for p in parts],
                                          [p["labels"] for p in parts], iou_thr, skip_box_thr)
        if top_k is not None:
            b, s, lab = b[:top_k], s[:top_k], lab[:top_k]
        out[i] = {"boxes": b, "scores": s, "labels": lab}
    return out
