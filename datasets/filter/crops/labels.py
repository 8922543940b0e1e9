"""Which detections become crops, and their labels: +1 when the box overlaps a ground-truth
box with IoU >= the threshold, else -1."""
import numpy as np

from eval.detection import box_iou


def select_detections(scores, min_score=0.0, top_k=0):
    """Indices of the detections to keep: score >= ``min_score``, best ``top_k`` (0 = all).

    Parameters
    ----------
    scores : array-like of float, shape (N,)
    min_score : float
    top_k : int

    Returns
    -------
    ndarray of int, indices into ``scores`` in decreasing score order (stable for ties).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= min_score]
    if top_k and top_k > 0:
        order = order[:top_k]
    return order


#: Box convention of the crop labels: the detector's scores' (train_yolo3.OFFSET, the VOC
#: devkit's +1), so a crop labelled +1 is a detection the detection metrics count as a hit.
IOU_OFFSET = 1


def label_boxes(boxes, gt_boxes, iou_threshold=0.5):
    """Best IoU of each box with any ground-truth box and its ±1 label.

    Parameters
    ----------
    boxes : array-like, shape (N, 4)
        Detections ``[x1, y1, x2, y2]`` in half pixels.
    gt_boxes : array-like, shape (M, 4)
        Ground truth of the same image (M may be 0: every box is then negative).
    iou_threshold : float
        Positive when the best IoU is >= this.

    Returns
    -------
    ious : ndarray of float, shape (N,)
    labels : ndarray of int, shape (N,), values +1 / −1
    """
    iou = box_iou(boxes, gt_boxes, offset=IOU_OFFSET)
    # + 0.0 turns the -0.0 of empty intersections into 0.0 (cosmetic, in the CSV)
    best = (iou.max(axis=1) if iou.shape[1] else np.zeros(iou.shape[0])) + 0.0
    return best, np.where(best >= iou_threshold, 1, -1).astype(np.int64)
